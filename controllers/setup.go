package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// Setup registers the field indexes and every reconciler with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &ilpv1.Account{}, fieldConnectorRef, func(o client.Object) []string {
		return []string{o.(*ilpv1.Account).Spec.ConnectorRef}
	}); err != nil {
		return fmt.Errorf("index accounts: %w", err)
	}
	if err := idx.IndexField(ctx, &ilpv1.Route{}, fieldConnectorRef, func(o client.Object) []string {
		return []string{o.(*ilpv1.Route).Spec.ConnectorRef}
	}); err != nil {
		return fmt.Errorf("index routes: %w", err)
	}
	c := mgr.GetClient()
	steps := []struct {
		name  string
		setup func(ctrl.Manager) error
	}{
		{"connector", (&ConnectorReconciler{Client: c, Recorder: mgr.GetEventRecorder("connector-controller")}).SetupWithManager},
		{"account", (&AccountReconciler{Client: c, Recorder: mgr.GetEventRecorder("account-controller")}).SetupWithManager},
		{"route", (&RouteReconciler{Client: c, Recorder: mgr.GetEventRecorder("route-controller")}).SetupWithManager},
	}
	for _, s := range steps {
		if err := s.setup(mgr); err != nil {
			return fmt.Errorf("set up %s controller: %w", s.name, err)
		}
	}
	return nil
}

// connectorOf maps an Account to the Connector it names.
func connectorOf(_ context.Context, o client.Object) []reconcile.Request {
	a := o.(*ilpv1.Account)
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: a.Namespace, Name: a.Spec.ConnectorRef}}}
}

// referrers maps a Connector to the objects of list's kind that name it in spec.connectorRef.
func referrers(c client.Client, list client.ObjectList) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		l := list.DeepCopyObject().(client.ObjectList)
		if err := c.List(ctx, l, client.InNamespace(o.GetNamespace()), client.MatchingFields{fieldConnectorRef: o.GetName()}); err != nil {
			log.FromContext(ctx).Error(err, "list referrers", "connector", o.GetName())
			return nil
		}
		return requestsFor(l)
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
