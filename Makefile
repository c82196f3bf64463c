# Postern — see README.md. `make test` is what CI runs (through .ci/run).
GO          ?= go
BIN         := bin/postern
# sshd's AuthorizedKeysCommand helper, slim and static (no cgo, so no
# dynamic loader on every login attempt) so that it starts fast; agent
# install uses it when it sits next to bin/postern.
HELPER_BIN  := bin/postern-authorized-keys
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck
STATICCHECK_VERSION := v0.8.2

.PHONY: build test unit lint fmt bench tools clean demo web

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/postern
	CGO_ENABLED=0 $(GO) build -trimpath -o $(HELPER_BIN) ./cmd/postern-authorized-keys

# The console's front end: web/src built by npm into web/dist, which is
# committed and embedded (package web), so go build never needs npm.
web:
	cd web && npm ci && npm run build

# The README's first command: server, agent and a demo instance in one
# process, then a login through postern ssh. As root the instance is a real
# sshd (openssh-server is installed when missing); otherwise a built-in SSH
# server with a real shell on a PTY.
demo: build
	./$(BIN) dev

# Everything CI checks: formatting, vet, staticcheck, module tidiness, and
# every test (unit, store conformance, SigV4 oracle and vectors, policy
# tables, audit tamper tests, end-to-end tests against a real server with
# the AWS SDK for Go v2, boto3 and the aws CLI).
test: lint build
	$(GO) test -count=1 -timeout 15m ./...

unit:
	$(GO) test -count=1 -short ./...

lint: tools
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	@cp go.mod go.mod.tidy-check && cp go.sum go.sum.tidy-check; \
	  $(GO) mod tidy; \
	  if ! cmp -s go.mod go.mod.tidy-check || ! cmp -s go.sum go.sum.tidy-check; then \
	    echo "go mod tidy changed go.mod/go.sum; run it and commit"; \
	    mv go.mod.tidy-check go.mod; mv go.sum.tidy-check go.sum; exit 1; fi; \
	  rm -f go.mod.tidy-check go.sum.tidy-check

fmt:
	gofmt -w $$(git ls-files '*.go')

tools:
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Benchmarks, never timed tests: the go test micro-benchmarks, then the
# keyless SSH figures (bench/keyless: a real server, agent and sshd on
# loopback; its sustained pushes again on PostgreSQL, one replica and two,
# on the database POSTERN_BENCH_POSTGRES names, default the local one the
# tests use) and the Instance Connect Endpoint tunnel figures (bench/tunnels:
# server, endpoint, target, an sshd bastion and websockify in network
# namespaces; installs Debian's websockify when missing). Both need root,
# like demo. Every table goes to BENCHMARKS.md with the command and the
# machine. About ten minutes; every loop is bounded.
bench: build
	$(GO) build -trimpath -o bin/postern-bench ./bench/keyless
	$(GO) build -trimpath -o bin/postern-bench-tunnels ./bench/tunnels
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/postern-bench-gofloor ./bench/gofloor
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./... > bin/bench-micro.txt || { cat bin/bench-micro.txt; exit 1; }
	@cat bin/bench-micro.txt
	@if [ "$$(id -u)" = 0 ]; then run=; else run='sudo --preserve-env=POSTERN_BENCH_POSTGRES'; fi; \
	  $$run ./bin/postern-bench-tunnels -postern $(BIN) > bin/bench-tunnels.md && \
	  $$run ./bin/postern-bench -postern $(BIN) -micro bin/bench-micro.txt -go-floor bin/postern-bench-gofloor -sections bin/bench-tunnels.md -command 'make bench' > bin/BENCHMARKS.md.new
	mv bin/BENCHMARKS.md.new BENCHMARKS.md
	@echo "bench: wrote BENCHMARKS.md"

clean:
	rm -rf bin
