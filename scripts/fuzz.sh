#!/usr/bin/env bash
# `make fuzz`: runs every fuzz target of fuzz/ for SECONDS each (default 600), one after the
# other, then merges what each found that adds coverage into its committed corpus
# (fuzz/corpus/<target>/), which `make test` replays (tests/fuzz_corpora.rs).
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
# (`cargo install cargo-fuzz`, from crates.io). Targets run without a sanitizer (-s none):
# hermes is safe Rust, so panics, hangs (-timeout) and over-allocation (-rss_limit_mb,
# -malloc_limit_mb) are what there is to find, and the runs go three times faster.
# A finding stops the script; its input is in fuzz/artifacts/<target>/. Fix it, then copy the
# input into fuzz/regressions/<target>/ so the replay test keeps it fixed.
#
# The report (executions, coverage, corpus size per target) is target/fuzz/report.md.
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: needs the nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: needs cargo-fuzz: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi
out=target/fuzz
mkdir -p "$out"
report=$out/report.md
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
flags=$(grep -m1 -o -w -E 'avx512f|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')
{
    echo "# hermes fuzz run, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "CPU: $cpu ($(nproc) cores; ${flags:-no AVX2}); ${seconds} s per target, one at a time, no sanitizer."
    echo
    echo "| target | seconds | executions | exec/s | coverage (edges) | features | new corpus inputs | finding |"
    echo "|---|---|---|---|---|---|---|---|"
} >"$report"
(cd fuzz && cargo +nightly fuzz build -s none)
for t in "${targets[@]}"; do
    work=$out/corpus/$t
    mkdir -p "$work" "fuzz/corpus/$t"
    log=$out/$t.log
    echo "fuzz: $t for ${seconds} s (log: $log)"
    status=0
    # The first corpus folder receives new inputs; the committed one is read only.
    (cd fuzz && cargo +nightly fuzz run -s none "$t" "../$work" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -max_len=65536 -print_final_stats=1) >"$log" 2>&1 || status=$?
    execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'cov: [0-9]*' | awk '{print $2}')
    ft=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'ft: [0-9]*' | awk '{print $2}')
    new=$(find "$work" -type f | wc -l)
    finding=none
    if [ "$status" -ne 0 ]; then
        finding="exit $status: $(grep -m1 -E 'ERROR|panicked|deadly signal|Timeout|out-of-memory' "$log" | head -c 160)"
    fi
    rate=$(( ${execs:-0} / seconds ))
    echo "| $t | $seconds | ${execs:-?} | $rate | ${cov:-?} | ${ft:-?} | $new | $finding |" >>"$report"
    if [ "$status" -ne 0 ]; then
        echo "fuzz: $t found something; see $log and fuzz/artifacts/$t/" >&2
        cat "$report"
        exit 1
    fi
    # Keep only what adds coverage (a set cover), in the committed corpus.
    (cd fuzz && cargo +nightly fuzz run -s none "$t" "corpus/$t" "../$work" -- -set_cover_merge=1) >>"$log" 2>&1
done
cat "$report"
