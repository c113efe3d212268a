package controllers

import (
	"context"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/version"
)

// Options are the operator-wide settings of the reconcilers.
type Options struct {
	// ConnectorImage is the image of connector pods whose Connector sets no spec.image: the
	// operator's own image, since one binary runs both.
	ConnectorImage string
}

// EnvImage is the environment variable that carries the operator's own image.
const EnvImage = "ILPFLEET_IMAGE"

// OptionsFromEnv reads Options from the environment: ILPFLEET_IMAGE, else ilpfleet:<version>.
func OptionsFromEnv() Options {
	img := os.Getenv(EnvImage)
	if img == "" {
		img = "ilpfleet:" + version.Version
	}
	return Options{ConnectorImage: img}
}

// Setup registers the field indexes and every reconciler with mgr, with OptionsFromEnv.
func Setup(ctx context.Context, mgr ctrl.Manager) error {
	return SetupWithOptions(ctx, mgr, OptionsFromEnv())
}

// SetupWithOptions registers the field indexes and every reconciler with mgr.
func SetupWithOptions(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if err := setupIndexes(ctx, mgr); err != nil {
		return err
	}
	c, reader := mgr.GetClient(), mgr.GetAPIReader()
	steps := []struct {
		name  string
		setup func(ctrl.Manager) error
	}{
		{"connector", (&ConnectorReconciler{Client: c, Reader: reader, Recorder: mgr.GetEventRecorder("connector-controller"), Options: opts}).SetupWithManager},
		{"account", (&AccountReconciler{Client: c, Reader: reader, Recorder: mgr.GetEventRecorder("account-controller")}).SetupWithManager},
		{"route", (&RouteReconciler{Client: c, Recorder: mgr.GetEventRecorder("route-controller")}).SetupWithManager},
		{"settlementengine", (&SettlementEngineReconciler{Client: c, Reader: reader, Recorder: mgr.GetEventRecorder("settlementengine-controller")}).SetupWithManager},
	}
	for _, s := range steps {
		if err := s.setup(mgr); err != nil {
			return fmt.Errorf("set up %s controller: %w", s.name, err)
		}
	}
	return nil
}

// setupIndexes registers the field indexes the map functions and reconcilers list by.
func setupIndexes(ctx context.Context, mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	indexes := []struct {
		obj   client.Object
		field string
		fn    client.IndexerFunc
	}{
		{&ilpv1.Account{}, fieldConnectorRef, func(o client.Object) []string { return []string{o.(*ilpv1.Account).Spec.ConnectorRef} }},
		{&ilpv1.Route{}, fieldConnectorRef, func(o client.Object) []string { return []string{o.(*ilpv1.Route).Spec.ConnectorRef} }},
		{&ilpv1.Account{}, fieldSecretNames, func(o client.Object) []string { return refNames(accountSecretRefs(o.(*ilpv1.Account))) }},
		{&ilpv1.Connector{}, fieldSecretNames, func(o client.Object) []string { return connectorCheckedSecretNames(o.(*ilpv1.Connector)) }},
		{&ilpv1.SettlementEngine{}, fieldSecretNames, func(o client.Object) []string { return engineSecretNames(o.(*ilpv1.SettlementEngine)) }},
		{&ilpv1.Account{}, fieldSettlementEngineRef, func(o client.Object) []string {
			if ref := o.(*ilpv1.Account).Spec.SettlementEngineRef; ref != "" {
				return []string{ref}
			}
			return nil
		}},
	}
	for _, ix := range indexes {
		if err := idx.IndexField(ctx, ix.obj, ix.field, ix.fn); err != nil {
			return fmt.Errorf("index %T by %s: %w", ix.obj, ix.field, err)
		}
	}
	return nil
}

// connectorOf maps an Account to the Connector it names.
func connectorOf(_ context.Context, o client.Object) []reconcile.Request {
	a := o.(*ilpv1.Account)
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: a.Namespace, Name: a.Spec.ConnectorRef}}}
}

// allConnectors maps any object to every Connector (the cache's, in every namespace).
func allConnectors(c client.Client) handler.MapFunc {
	return func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list ilpv1.ConnectorList
		if err := c.List(ctx, &list); err != nil {
			log.FromContext(ctx).Error(err, "listing Connectors")
			return nil
		}
		return requestsFor(&list)
	}
}

// referrers maps a Connector to the objects of list's kind that name it in spec.connectorRef.
func referrers(c client.Client, list client.ObjectList) handler.MapFunc {
	return byIndex(c, list, fieldConnectorRef)
}

// byIndex maps an object to the objects of list's kind, in its namespace, whose field index
// holds the object's name.
func byIndex(c client.Client, list client.ObjectList, field string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		l := list.DeepCopyObject().(client.ObjectList)
		if err := c.List(ctx, l, client.InNamespace(o.GetNamespace()), client.MatchingFields{field: o.GetName()}); err != nil {
			log.FromContext(ctx).Error(err, "list referrers", "name", o.GetName(), "field", field)
			return nil
		}
		return requestsFor(l)
	}
}

// connectorsOfSecret maps a Secret to the Connectors that use it, directly or through an Account.
func connectorsOfSecret(c client.Client) handler.MapFunc {
	direct := byIndex(c, &ilpv1.ConnectorList{}, fieldSecretNames)
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		reqs := direct(ctx, o)
		var accounts ilpv1.AccountList
		if err := c.List(ctx, &accounts, client.InNamespace(o.GetNamespace()), client.MatchingFields{fieldSecretNames: o.GetName()}); err != nil {
			log.FromContext(ctx).Error(err, "list accounts of secret", "secret", o.GetName())
			return reqs
		}
		for i := range accounts.Items {
			reqs = append(reqs, connectorOf(ctx, &accounts.Items[i])...)
		}
		return reqs
	}
}

// routesViaAccount maps an Account to the Routes of its Connector, any of which may use it as next hop.
func routesViaAccount(c client.Client) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		var routes ilpv1.RouteList
		a := o.(*ilpv1.Account)
		if err := c.List(ctx, &routes, client.InNamespace(a.Namespace), client.MatchingFields{fieldConnectorRef: a.Spec.ConnectorRef}); err != nil {
			log.FromContext(ctx).Error(err, "list routes", "account", a.Name)
			return nil
		}
		return requestsFor(&routes)
	}
}

func requestsFor(l client.ObjectList) []reconcile.Request {
	var reqs []reconcile.Request
	_ = meta.EachListItem(l, func(item runtime.Object) error {
		o := item.(client.Object)
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
		return nil
	})
	return reqs
}

// quietWhenNamespaceGoes wraps a reconciler so that a reconcile that fails only because its
// namespace is being deleted ends without an error. The namespace controller deletes the
// objects in any order, so a Connector still there recreates a Service just deleted, and the
// API server refuses it (NamespaceTerminating): logged as a "Reconciler error" and retried with
// backoff until the Connector too is gone, for every object of the namespace. Its deletion
// brings the reconciles that remain to be done.
func quietWhenNamespaceGoes(r reconcile.Reconciler) reconcile.Reconciler {
	return reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
		res, err := r.Reconcile(ctx, req)
		if err != nil && apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			log.FromContext(ctx).V(1).Info("namespace is being deleted; reconcile ended", "error", err.Error())
			return reconcile.Result{}, nil
		}
		return res, err
	})
}
