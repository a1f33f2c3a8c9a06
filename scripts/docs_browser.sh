#!/usr/bin/env bash
# Renders /docs in headless Chromium with no network but loopback: run inside a fresh network
# namespace (`unshare -n`, needs root) holding only `lo`, so nothing the browser tries can
# leave the machine. Starts `hermes serve` in the same namespace, then writes to OUT_DIR:
# dom.html (the DOM after scripts ran), netlog.json (every request the browser made).
#
#   unshare -n bash scripts/docs_browser.sh BIN OUT_DIR
set -euo pipefail
BIN=$1
OUT=$2
ip link set lo up
# shellcheck source=scripts/serve_bg.sh
source "$(dirname "$0")/serve_bg.sh"
start_server "$BIN" "$OUT"
echo "$url" >"$OUT/url"
/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --no-pings \
  --user-data-dir="$OUT/profile" --log-net-log="$OUT/netlog.json" \
  --virtual-time-budget=15000 --dump-dom "$url/docs" >"$OUT/dom.html" 2>"$OUT/chromium.log"
