# hermes: the two commands are `make serve` and `make test`; both run set-up first.
CARGO ?= cargo
BIN := target/release/hermes

.PHONY: setup build serve test bench bench-encoder fmt lint

setup:
	bash scripts/setup.sh

build: setup
	$(CARGO) build --release --locked

# Serve the default bundle (smoke embedding until the service lands).
serve: build
	$(BIN) embed "hello world"

# Tests run in release mode: one build serves tests, benches and serve, and k-means is fast.
test: setup
	$(CARGO) test --release --locked

bench: bench-encoder

bench-encoder: setup
	$(CARGO) bench --locked --bench encoder

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets --locked -- -D warnings
