# pushring — the two commands that matter: `make run` and `make test`.
GO        ?= go
BIN       := bin
FUZZTIME  ?= 5s
LONGFUZZ  ?= 5m

.PHONY: all build run cluster test test-unit testrace testallocs fuzz fuzz-smoke bench chaos lint deps clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

## run: build and start one node with the embedded defaults, on loopback only (MQTT
## 127.0.0.1:1883, HTTP 127.0.0.1:8080, gossip 127.0.0.1:7946, state and secrets in ./data)
run: build
	./$(BIN)/pushring --data-dir ./data --mqtt-addr 127.0.0.1:1883 --http-addr 127.0.0.1:8080

## cluster: build and start a local 3-node cluster on 127.0.0.1 (Ctrl-C stops it)
cluster: build
	./scripts/cluster.sh

## test: install test dependencies, vet, run every test with the race detector, the allocation
## tests without it (the race detector allocates), then a short fuzz pass
test: deps lint testrace testallocs fuzz-smoke

deps:
	./scripts/deps.sh

test-unit:
	$(GO) test -count=1 ./...

testallocs:
	$(GO) test -count=1 -run 'Alloc|ZeroAllocs' ./...

## testrace: every package with -race; e2e/ in its own verbose run, so the
## CI log shows what it measures (grep "failover:" for the kill -9 numbers);
## the chaos test in a run of its own without -race (its 300 clients run in
## the test process; grep "chaos:"); router/ once more on the
## goroutine-per-connection transport (the default run uses the epoll event
## loop)
testrace:
	$(GO) test -race -count=1 -timeout 10m $$($(GO) list ./... | grep -v '/e2e$$')
	$(GO) test -race -count=1 -timeout 10m -v ./e2e/
	$(GO) test -count=1 -timeout 10m -v -run '^TestChaos$$' ./e2e/
	ROUTER_TEST_GOROUTINES=1 $(GO) test -race -count=1 -timeout 10m ./router/

## chaos: the chaos test (3 nodes over a 3-server NATS cluster; kill -9, a NATS server
## killed, SIGTERM + restart, SIGSTOP) with its artifacts (chaos.tsv, every server's log)
## under bench/results/latest/chaos; grep "chaos:" for the numbers (about 2 min)
chaos:
	mkdir -p bench/results/latest/chaos
	$(GO) test -count=1 -timeout 15m -v -run '^TestChaos$$' -artifacts -outputdir $(CURDIR)/bench/results/latest/chaos ./e2e/

## fuzz-smoke: every fuzz target for $(FUZZTIME) (part of make test)
fuzz-smoke:
	./scripts/fuzz.sh $(FUZZTIME)

## fuzz: every fuzz target for $(LONGFUZZ)
fuzz:
	./scripts/fuzz.sh $(LONGFUZZ)

## bench: Go micro-benchmarks with allocations, then pushbench's standard suite (bench/suite.sh:
## fanout, direct, idle, churn against pushring, mosquitto and the NATS server's MQTT, medians of 3
## alternating runs, and cluster; JSON per entry and report.html in bench/results/latest/; < 10 min)
bench: build
	./scripts/deps.sh bench
	$(GO) build -o $(BIN)/ ./bench/cmd/pushbench ./bench/cmd/pushreport
	mkdir -p bench/results/latest
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./... | tee bench/results/latest/micro.txt
	BIN=$(BIN) ./bench/suite.sh bench/results/latest

lint:
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt needed"; exit 1)
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
