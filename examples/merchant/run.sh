#!/usr/bin/env bash
# Runs the example merchant (merchant.py) against a fresh demo of wechat-checkout: the app in
# simulator mode on a free local port with its own SQLite file, webhooks signed and allowed to a
# local address, and the merchant's own webhook endpoint on another port. CI runs it; so can you:
#   bash examples/merchant/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${WECHAT_CHECKOUT_BIN:-$root/target/debug/wechat-checkout}"
if [ ! -x "$bin" ]; then
  (cd "$root" && cargo build)
fi
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
token="example-token-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
secret="whsec-example-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

# The app writes its data/ (database, keys, bills) under the working directory.
cd "$work"
API_TOKEN="$token" WEBHOOK_SECRET="$secret" WEBHOOK_ALLOW_PRIVATE=on \
  ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT="$port" "$bin" serve >"$work/app.log" 2>&1 &
app=$!
cleanup() {
  kill "$app" 2>/dev/null || true
  wait "$app" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/livez', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$app" 2>/dev/null; then
    cat "$work/app.log" >&2
    echo "the app did not start" >&2
    exit 1
  fi
  sleep 0.2
done

if ! python3 "$root/examples/merchant/merchant.py" --base "http://127.0.0.1:$port" --token "$token" --secret "$secret"; then
  echo "---- the app's log ----" >&2
  tail -n 80 "$work/app.log" >&2
  exit 1
fi
