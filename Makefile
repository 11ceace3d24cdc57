# agora: the two commands a new user needs are `make run` and `make test`.
GO       ?= go
BIN      ?= bin/agora
PKGS     ?= ./...
BUF      ?= $(shell command -v buf 2>/dev/null || ls $$(go env GOPATH)/bin/buf 2>/dev/null)
GOBIN    := $(shell $(GO) env GOPATH)/bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: docker docs test-docker
.PHONY: all build run test test-short test-services demo fuzz lint proto proto-tools bench bench-go chaos clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/agora

## docker: the agora:dev image (FROM scratch: the static binary and /bin/sh for tasks), built locally.
docker:
	IMAGE=$${IMAGE:-agora:dev} VERSION=$(VERSION) sh deploy/build-image.sh

## run: 3 masters + 2 agents on loopback (HTTP on 7100-7102); Ctrl-C stops it.
run:
	$(GO) run ./cmd/agora dev $(ARGS)

## test: vet, buf lint (where buf is installed) and the whole test suite under the race detector.
test:
	$(GO) vet $(PKGS)
	@if [ -n "$(BUF)" ]; then (cd rpc && $(BUF) lint) && echo "buf lint: ok"; else echo "buf lint: skipped (buf not installed; make proto-tools installs it)"; fi
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

## test-docker: the Docker tier of deploy/ (the compose cluster survives a leader stop; skips loudly without Docker or compose).
test-docker:
	$(GO) test -tags docker -count=1 -v -timeout 15m ./deploy/

## test-services: the real-services tier (Redis, NATS JetStream on agora service; needs redis-server and nats-server, skips loudly without).
test-services:
	cd realservices && $(GO) test -count=1 -v ./...

## demo: the whole story on an in-process cluster, narrated (DEMO_SHORT=1: the CI form, under 2 minutes).
demo: build
	$(BIN) demo $(if $(DEMO_SHORT),--short,)

## fuzz: every go test -fuzz target for FUZZTIME each (CI runs FUZZTIME=5000x, a count; the seed corpora
## also run in make test). New crashers land in the package's testdata/fuzz: commit them.
FUZZTIME ?= 60s
FUZZ_TARGETS = FuzzDecode:./fsm FuzzApply:./fsm FuzzRestore:./fsm FuzzAccept:./fsm FuzzDecodeCommand:./fsm FuzzDecodeAcceptRequest:./fsm FuzzDecodeUpdateStatusRequest:./fsm FuzzTaskDecode:./fsm \
	FuzzParse:./resources FuzzArithmetic:./resources FuzzParse:./service FuzzDecodeEntries:./examples/kvservice \
	FuzzParseAuthFile:./auth FuzzParseACL:./auth \
	FuzzVerify:./backup
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t%%:*} $${t#*:} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) $${t#*:} || exit 1; \
	done

## lint: gofmt, go vet and staticcheck.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 $(PKGS)

proto-tools:
	$(GO) install github.com/bufbuild/buf/cmd/buf@v1.75.0
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install connectrpc.com/connect/cmd/protoc-gen-connect-go@v1.21.1

## proto: regenerate rpc/gen from rpc/proto with local plugins only (developers only; the output is committed).
proto: proto-tools
	cd rpc && PATH="$(GOBIN):$$PATH" buf lint && PATH="$(GOBIN):$$PATH" buf generate

## docs: regenerate docs/api.md from rpc/proto (buf build, then tools/apidoc); the output is committed.
docs:
	@test -n "$(BUF)" || { echo "make docs needs buf: make proto-tools"; exit 1; }
	mkdir -p tmp && cd rpc && $(BUF) build -o ../tmp/agora.binpb
	$(GO) run ./tools/apidoc -in tmp/agora.binpb -out docs/api.md

## bench: every `agora bench` benchmark at the issue-13 sizes; rewrites the generated section of
## BENCHMARKS.md and the SVG plots in docs/bench (under 20 minutes). bench-go: the Go micro-benchmarks.
bench: build
	$(BIN) bench report --out BENCHMARKS.md --plots docs/bench

bench-go:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./allocator/ ./fsm/ ./resources/

## chaos: the soak (many seeds, both tiers where Docker answers) with a summary table.
## SEEDS=100 DURATION=60s JOBS=4 make chaos is the full goal; RELIABILITY.md records the last figures.
chaos:
	SEEDS=$${SEEDS:-20} DURATION=$${DURATION:-30s} sh chaos/soak.sh

clean:
	rm -rf bin tmp
