# hermes: the two commands are `make serve` and `make test`; both run set-up first.
CARGO ?= cargo
BIN := target/release/hermes

.PHONY: setup setup-test build serve test fuzz soak search-demo bench bench-mix bench-tokens bench-static bench-consume bench-micro bench-encoder bench-quantize bench-fit fmt lint bundle eval openapi conformance

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

build: setup
	$(CARGO) build --release --locked

# Serve the default bundle on 127.0.0.1:8080 (flags: `hermes serve --help`, or HERMES_* env vars).
serve: build
	$(BIN) serve

# Tests run in release mode: one build serves tests, benches and serve, and k-means is fast.
# Then the API conformance run (schemathesis against the committed spec).
test: setup-test
	$(CARGO) test --release --locked --no-fail-fast
	bash scripts/conformance.sh $(BIN)

# serve (Redis store) and consume (Redis stream) under mixed load for 10 minutes, with a Redis
# restart and a kill -9 of the consumer; checks nothing was lost and memory stayed flat
# (target/bench/soak.md; HERMES_SOAK_SECONDS to change the length).
soak: build setup-test
	$(CARGO) bench --locked --bench soak

# Mixture search end to end on the wiki corpus with a unigram proxy: label with token counts,
# a depth-1 swarm, fit-mix, the proposal against the natural mixture, then a depth-2 swarm
# inside the pinned proposal (scripts/search_loop.py; report in target/search-demo/report.md).
search-demo: build
	rm -rf target/search-demo
	.cache/venv/bin/python scripts/search_loop.py --hermes $(BIN) --work target/search-demo

# Every fuzz target for FUZZ_SECONDS each (nightly + cargo-fuzz; scripts/fuzz.sh says how),
# growing fuzz/corpus/, which `make test` replays. Report: target/fuzz/report.md.
FUZZ_SECONDS ?= 600
fuzz:
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

# schemathesis against openapi/openapi.json on a live server; non-zero on any violation.
conformance: build
	bash scripts/conformance.sh $(BIN)

# The service against the in-process ceiling, then 1 vs 2 replicas behind haproxy sharing Redis,
# mix, the cost of label --count-tokens, the static tier against model2vec, and consume vs label (reports in target/bench/; setup.sh --test brings redis-server,
# haproxy and tansu).
bench: build setup-test
	$(CARGO) bench --locked --bench service
	$(CARGO) bench --locked --bench replicas
	$(CARGO) bench --locked --bench mix
	$(CARGO) bench --locked --bench tokens
	$(CARGO) bench --locked --bench static_tier
	$(CARGO) bench --locked --bench consume

# hermes consume against hermes label, both tiers, both brokers, and lag at a fixed rate
# (target/bench/consume.md; needs setup.sh --test for tansu and redis-server).
bench-consume: build setup-test
	$(CARGO) bench --locked --bench consume

# hermes mix alone: plan and selection over 1M and 4M synthetic rows, with peak RSS.
bench-mix:
	$(CARGO) bench --locked --bench mix

# What `label --count-tokens` costs: docs/s with and without token counts (static tier,
# WordPiece and a byte-level BPE), and the peak RSS of one 10 MB document counted whole
# (target/bench/tokens.md).
bench-tokens: build
	$(CARGO) bench --locked --bench tokens

# The static tier: `hermes label --encoder static` over the wiki corpus x10 against model2vec
# with the bundle's own table and tokenizer, and hermes' tokenization, gather and
# quantization timed apart (target/bench/static_tier.md).
bench-static: build
	$(CARGO) bench --locked --bench static_tier

# Micro-benchmarks: encoder (criterion), quantizer (criterion), fit (timed runs).
bench-micro: bench-encoder bench-quantize bench-fit

bench-encoder: build
	$(CARGO) bench --locked --bench encoder

bench-quantize:
	$(CARGO) bench --locked --bench quantize

bench-fit:
	$(CARGO) bench --locked --bench fit

# Regenerate the committed OpenAPI document from the code.
openapi: build
	$(BIN) openapi > openapi/openapi.json

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets --locked -- -D warnings

# Refit the default bundle from scratch (embeds the whole wiki corpus: ~8 minutes on 2 cores).
# Same machine + seed → byte-identical codebooks.safetensors and manifest.json.
bundle: build
	$(BIN) fit --input .cache/data/wiki.jsonl --out models/minilm-wiki --name minilm-wiki \
		--save-embeddings .cache/data/wiki.npy
	$(BIN) eval --bundle models/minilm-wiki --input .cache/data/wiki.jsonl \
		--embeddings .cache/data/wiki.npy --json target/eval-minilm-wiki.json

# Evaluate the default bundle on the wiki corpus (reuses the embeddings `make bundle` saved).
eval: build
	@test -f .cache/data/wiki.npy || $(BIN) fit --input .cache/data/wiki.jsonl --out target/scratch-bundle \
		--save-embeddings .cache/data/wiki.npy
	$(BIN) eval --bundle models/minilm-wiki --input .cache/data/wiki.jsonl \
		--embeddings .cache/data/wiki.npy --json target/eval-minilm-wiki.json
