#!/usr/bin/env bash
# Renders /atlas in headless Chromium with no network but loopback (run inside `unshare -n`,
# as scripts/docs_browser.sh): the page as loaded, with a bucket chosen (#b=LABEL, what a
# click on its tile does), and with the filter box holding TERM (#q=TERM). Writes to OUT_DIR:
# dom.html, dom-chosen.html, dom-filtered.html, atlas.png (a screenshot of the chosen bucket)
# and netlog.json (every request of the first load).
#
#   unshare -n bash scripts/atlas_browser.sh BIN OUT_DIR LABEL TERM
set -euo pipefail
BIN=$1
OUT=$2
LABEL=$3
TERM_=$4
ip link set lo up
# shellcheck source=scripts/serve_bg.sh
source "$(dirname "$0")/serve_bg.sh"
start_server "$BIN" "$OUT"
echo "$url" >"$OUT/url"
chrome() {
  /usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --no-pings \
    --user-data-dir="$OUT/profile-$1" --virtual-time-budget=15000 "${@:2}" 2>>"$OUT/chromium.log"
}
chrome a --log-net-log="$OUT/netlog.json" --dump-dom "$url/atlas" >"$OUT/dom.html"
chrome b --dump-dom "$url/atlas#b=$LABEL" >"$OUT/dom-chosen.html"
chrome c --dump-dom "$url/atlas#q=$TERM_" >"$OUT/dom-filtered.html"
chrome d --window-size=1400,900 --screenshot="$OUT/atlas.png" "$url/atlas#b=$LABEL" >/dev/null
