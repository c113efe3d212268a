# ilpfleet — build, generate, test, demo. Every target provisions what it needs (cached in bin/).
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LOCALBIN        := $(CURDIR)/bin
CONTROLLER_GEN  := $(LOCALBIN)/controller-gen-v0.23.0
K8S_VERSION     := 1.36.3
ENVTEST_ASSETS  := $(LOCALBIN)/k8s/$(K8S_VERSION)-linux-amd64
export KUBEBUILDER_ASSETS ?= $(ENVTEST_ASSETS)

GO_TEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: all
all: build

##@ Build

.PHONY: build
build: ## Build the ilpfleet binary into bin/.
	go build -o $(LOCALBIN)/ilpfleet .

##@ Generate

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs, the manager's RBAC role and the CRD field tables of docs/user-guide.md.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths=./api/... paths=./controllers/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	go run ./hack/crddoc

BUNDLE_VERSION ?= 0.1.0
BUNDLE_IMAGE   ?=

.PHONY: bundle
bundle: manifests ## Generate the OLM bundle in bundle/ (BUNDLE_VERSION, BUNDLE_IMAGE; default image: config/manager's).
	go run ./hack/bundle --version $(BUNDLE_VERSION) $(if $(BUNDLE_IMAGE),--image $(BUNDLE_IMAGE))

.PHONY: verify-generated
verify-generated: $(CONTROLLER_GEN) ## Fail when checked-in generated files are stale.
	hack/verify-generated.sh

$(CONTROLLER_GEN):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
	mv $(LOCALBIN)/controller-gen $@

##@ Test

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver and etcd for tests (once; cached in bin/k8s).
	hack/envtest-assets.sh >/dev/null

.PHONY: lint
lint: ## gofmt and go vet.
	@files="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*'))"; \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi
	go vet ./...

.PHONY: test-deps
test-deps: envtest-assets ## Provision what the tests run against: control plane, redis-server, promtool, pinned npm packages.
	hack/redis-server.sh >/dev/null
	hack/promtool.sh >/dev/null
	hack/npm-deps.sh >/dev/null

# As root, test ends with the end-to-end test on a real node (hack/cluster/e2e.sh, what make e2e
# runs). Called directly, not through $(MAKE): make -n runs recipe lines that name $(MAKE).
.PHONY: test
test: test-deps lint verify-generated ## Everything CI runs: lint, generated-file drift, all tests with -race, short fuzzing.
	go test $(GO_TEST_FLAGS) ./...
	$(MAKE) --no-print-directory fuzz
	if [ "$$(id -u)" = 0 ]; then hack/cluster/e2e.sh; fi

# An execution count, not a duration: with a duration, Go 1.26's fuzz coordinator can report a
# spurious "context deadline exceeded" failure when the time runs out while a worker is busy
# (go.dev/issue/75804, fixed in Go 1.27); a count has no deadline to race.
FUZZ_TIME ?= 50000x
FUZZ_TARGETS := \
	./runtime/ilp:FuzzParsePrepare \
	./runtime/ilp:FuzzParseResponse \
	./runtime/ilp:FuzzAddress \
	./runtime/btp:FuzzParseFrame \
	./runtime/btp/internal/ws:FuzzRead \
	./runtime/ccp:FuzzParseControlRequest \
	./runtime/ccp:FuzzParseUpdateRequest \
	./runtime/ildcp:FuzzParseResponse \
	./runtime/ildcp:FuzzHandler \
	./runtime/settlement:FuzzQuantityJSON \
	./runtime/settlement:FuzzToScale \
	./runtime/config:FuzzParseJSNumber \
	./runtime/config:FuzzEnvSetting \
	./runtime/config:FuzzParseAccount \
	./runtime/config:FuzzExcerpt

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZ_TIME (default 50000 executions) on top of its seed corpus.
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZ_TIME)"; \
		go test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZ_TIME) $$pkg || exit 1; \
	done

##@ Run

.PHONY: demo
demo: build ## Operator + sample fleet, a payment, an Account changed live. Root: on a fresh real local node (hack/cluster/demo.sh); others: a local control plane. Cleans up on exit.
	@if [ "$$(id -u)" = 0 ]; then exec hack/cluster/demo.sh; fi; \
	echo "make demo: local control plane, connectors as local processes (as root, make demo runs on a real single-node cluster)"; \
	hack/envtest-assets.sh >/dev/null; \
	echo "go run ./hack/demo --binary $(LOCALBIN)/ilpfleet --assets $(KUBEBUILDER_ASSETS)"; \
	go run ./hack/demo --binary $(LOCALBIN)/ilpfleet --assets $(KUBEBUILDER_ASSETS)

.PHONY: bench
bench: ## Compare ilpfleet's connector with the JS ilp-connector (throughput, latency, RSS); writes bin/bench/.
	hack/bench/run.sh

##@ Local cluster

CLUSTER_BIN := $(LOCALBIN)/cluster/$(K8S_VERSION)-linux-amd64

.PHONY: cluster-up
cluster-up: ## Start a real single-node cluster on this machine (root; builds its binaries once); prints its kubeconfig.
	hack/cluster/build.sh >/dev/null
	hack/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove everything it created.
	hack/cluster/down.sh

.PHONY: deploy
deploy: ## Build and import the local image, then install the operator (hack/cluster/overlay) into the current kubeconfig's cluster.
	hack/cluster/build.sh >/dev/null
	hack/cluster/image.sh >/dev/null
	$(CLUSTER_BIN)/kubectl apply --server-side --force-conflicts -k hack/cluster/overlay

.PHONY: e2e
e2e: ## As root: fresh local node, operator, test/e2e (a fleet paid through, hot reloads, a killed pod); always tears the node down.
	hack/cluster/e2e.sh

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)
