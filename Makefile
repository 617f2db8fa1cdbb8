# Orderflow — the two commands: `make dev` and `make test`.
.DEFAULT_GOAL := help
SHELL := /bin/bash
SCENARIO ?= smoke

.PHONY: help dev down deps token hydra test build fmt vet fuzz logs bench-read observe observe-down dashboard overhead test-faults test-rolling scale-bench bench bench-compare loadtest k6

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

dev: ## start everything natively in the background (components, migrations, demo data, services)
	@scripts/dev.sh

down: ## stop what make dev started
	@scripts/down.sh

token: ## a customer's access token on the last line (EMAIL=… PASSWORD=…; default the demo customer)
	@scripts/token.sh

hydra: ## build the pinned Ory Hydra v2.3.0 into bin/ (make dev and make test do it when missing)
	@scripts/hydra.sh build

deps: ## start PostgreSQL, Redis, fauxqs (SQS) and maildev (SMTP) when they are not running
	@scripts/deps.sh --mail

test: ## run every test with -race against the real local components (starts what it needs)
	@scripts/test.sh

build: ## build every binary into bin/
	@mkdir -p bin && go build -o bin/ ./services/order ./services/inventory ./services/payment ./services/payment/provider ./services/notification ./services/identity ./tools/token

fmt: ## gofmt the tree
	@gofmt -w $$(git ls-files '*.go')

vet: ## gofmt check and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	@go vet ./...

fuzz: ## run each fuzz target for FUZZTIME (default 20s)
	@for pkg in $$(go list ./...); do \
	  for f in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; go test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-20s} $$pkg || exit 1; \
	  done; \
	done

logs: ## follow the logs of make dev's processes
	@tail -F .dev/logs/*.log

test-faults: ## the fault suite: 13 faults under load (Toxiproxy, SIGKILL) with invariants and money conservation (~4 min), then each fault's alert proven in Prometheus and Alertmanager (~16 min); PHASE=invariants|alerts runs one
	@scripts/test-faults.sh $(if $(filter invariants,$(PHASE)),-run '^TestFaults$$')$(if $(filter alerts,$(PHASE)),-run '^TestFaultAlerts$$')

test-rolling: ## 3 order + 3 inventory replicas behind HAProxy, restarted one by one under load: zero failed requests (~90 s)
	@scripts/deps.sh && go test -tags rolling -count=1 -run TestRollingRestart -v ./test/rolling/

scale-bench: ## order and product-read throughput through HAProxy, 1 vs 3 replicas side by side (~2 min)
	@scripts/deps.sh && go test -tags scaling -count=1 -run TestThroughput -v ./test/rolling/

bench-read: ## read-path benchmark: uncached vs cached vs 304 vs a bare go-redis handler (needs make deps)
	@scripts/bench-read.sh

observe: ## start Prometheus (:9090, with the alert rules), Alertmanager (:9093, mails maildev) and Jaeger (UI :16686, OTLP :4318) natively
	@scripts/observability.sh start

observe-down: ## stop Prometheus, Alertmanager and Jaeger
	@scripts/observability.sh stop

dashboard: ## render the dashboard's queries against the native Prometheus into docs/dashboard.html
	@scripts/render-dashboard.sh

overhead: ## order throughput with tracing at 100% vs off, side by side
	@go run ./loadtest/overhead -duration 15s -rounds 4 -concurrency 8

bench: ## the benchmark report: baselines, read path, orders, the floor of one order, seed 000 off vs on, provider outage, the cost of trust, the remote-database profile -> docs/benchmarks.md and docs/bench-history.jsonl (~14 min)
	@scripts/bench.sh
bench-compare: ## two runs of docs/bench-history.jsonl side by side: A=, B= a commit prefix or line number (default: the last two)
	@go run ./loadtest/bench -compare "$(A)" -with "$(B)"

.PHONY: chaos
chaos: ## switch a fault on in make dev: FAULT=db-latency|db-down|redis-down|sqs-down|provider-outage|provider-latency|inventory-kill|off (no FAULT: the state; docs/game-days.md)
	@scripts/chaos.sh $(FAULT)

loadtest: ## one k6 scenario against make dev (SCENARIO=smoke|load|stress|spike|soak|breaker)
	@SCENARIO=$(SCENARIO) scripts/loadtest.sh

k6: ## install the pinned k6 (v1.8.1) into bin/
	@GOBIN=$(CURDIR)/bin go install go.k6.io/k6@v1.8.1
