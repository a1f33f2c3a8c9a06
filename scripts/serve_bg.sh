# Sourced, not run: start_server BIN OUT_DIR starts `BIN serve --port 0` in the background,
# waits until /readyz answers 200, and sets $pid and $url. The server is stopped on exit.
start_server() {
  local bin=$1 out=$2
  "$bin" serve --port 0 --log-format json >"$out/server.out" 2>"$out/server.log" &
  pid=$!
  trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
  for _ in $(seq 1 600); do
    grep -q "listening on" "$out/server.out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { echo "server died:"; cat "$out/server.log"; exit 1; }
    sleep 0.1
  done
  url=$(sed -n 's/^hermes listening on //p' "$out/server.out" | head -n 1)
  for _ in $(seq 1 600); do
    curl -fs "$url/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { echo "server died:"; cat "$out/server.log"; exit 1; }
    sleep 0.1
  done
  echo "server not ready after 60 s"; cat "$out/server.log"; exit 1
}
