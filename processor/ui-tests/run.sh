#!/usr/bin/env bash
# The web UI in a real browser: starts a processor on a fresh temporary store,
# loads the recorded spike of fixtures/spike/lock_contention into it through
# POST /v1/ingest, then drives headless Debian Chromium with playwright-core
# through scenario.mjs (sign in, timeline, spike, top suspect, one of its
# requests with its flame graph and SQL, and project isolation).
#
# Needs: the processor binary (cargo build --workspace --bins; PROCESSOR_BIN or
# $CARGO_TARGET_DIR/debug/processor), Node.js 20+, and /usr/bin/chromium
# (Debian package `chromium`; CHROMIUM overrides the path).
# Screenshots go to $UI_SCREENSHOTS or a new temporary folder, printed at the end.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${PROCESSOR_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/processor}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[[ -x "$bin" ]] || { echo "run.sh: processor binary $bin is missing: run cargo build --workspace --bins first" >&2; exit 1; }
[[ -x "$CHROMIUM" ]] || { echo "run.sh: no Chromium at $CHROMIUM: install the Debian package chromium" >&2; exit 1; }

work="$(mktemp -d)"
shots="${UI_SCREENSHOTS:-$(mktemp -d "${TMPDIR:-/tmp}/bitville-ui-screenshots.XXXXXX")}"
mkdir -p "$shots"
pid=""
cleanup() {
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Two projects: the fixture belongs to shop; blog's token must see none of it.
# The fixture is dated, so retention and the future-time check are widened.
SHOP_TOKEN="shop-ui-test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
BLOG_TOKEN="blog-ui-test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
cat >"$work/processor.toml" <<TOML
[server]
listen = "127.0.0.1:0"
udp_listen = ""
shutdown_grace_s = 5
[store]
path = "$work/store/bitville.duckdb"
[retention]
days = 36500
[limits]
requests_per_minute = 0
max_future_s = 3153600000
[[tokens]]
token = "$SHOP_TOKEN"
project = "shop"
[[tokens]]
token = "$BLOG_TOKEN"
project = "blog"
TOML

"$bin" --config "$work/processor.toml" >"$work/processor.out" 2>"$work/processor.err" &
pid=$!
addr=""
for _ in $(seq 1 600); do
    addr="$(sed -n 's/^processor: http on \([^ ]*\).*/\1/p' "$work/processor.out")"
    [[ -n "$addr" ]] && break
    kill -0 "$pid" 2>/dev/null || { echo "run.sh: the processor exited at start:" >&2; cat "$work/processor.err" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$addr" ]] || { echo "run.sh: the processor did not report its address within 60 s" >&2; cat "$work/processor.err" >&2; exit 1; }
echo "processor on http://$addr (store $work/store)"

cd "$here"
if [[ ! -d node_modules/playwright-core ]]; then
    npm ci --no-audit --no-fund --loglevel=error
fi

status=0
BASE_URL="http://$addr" SHOP_TOKEN="$SHOP_TOKEN" BLOG_TOKEN="$BLOG_TOKEN" \
    FIXTURE_DIR="$root/fixtures/spike/lock_contention" SCREENSHOT_DIR="$shots" \
    node scenario.mjs || status=$?
if ((status != 0)); then
    echo "--- processor log" >&2
    tail -n 40 "$work/processor.err" >&2
fi
echo "screenshots: $shots"
exit "$status"
