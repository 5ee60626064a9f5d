#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (what .ci/test does), or some
# targets for longer by hand:
#
#   bash fuzz/run.sh                                        # each target 20 s
#   BITVILLE_FUZZ_SECONDS=3600 bash fuzz/run.sh pg_log_stderr
#
# The build goes to $CARGO_TARGET_DIR/fuzz, the growing corpus and any crash
# to $CARGO_TARGET_DIR/fuzz/{corpus,artifacts}/<target>: nothing is written
# inside the clone. The seeds in fuzz/seeds/<target> are read, never changed.
# A crash fails the run and names the file to replay with
#
#   cargo +nightly fuzz run --fuzz-dir fuzz --target-dir "$CARGO_TARGET_DIR/fuzz" <target> <file>
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
seconds="${BITVILLE_FUZZ_SECONDS:-20}"
out="$CARGO_TARGET_DIR/fuzz"
all=(pg_log_stderr pg_log_csvlog pg_log_jsonlog envelope)
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")

# The fuzz crate is a workspace of its own, never the main one, and depends
# on no crate that links DuckDB (a sanitizer build of it takes 30+ minutes).
fuzz=(cargo +nightly fuzz)
cargo fmt --manifest-path fuzz/Cargo.toml --check
for t in "${targets[@]}"; do
    "${fuzz[@]}" build --fuzz-dir fuzz --target-dir "$out" "$t"
done

failed=()
for t in "${targets[@]}"; do
    mkdir -p "$out/corpus/$t" "$out/artifacts/$t"
    log="$out/artifacts/$t/last-run.log"
    status=0
    "${fuzz[@]}" run --fuzz-dir fuzz --target-dir "$out" "$t" "$out/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -artifact_prefix="$out/artifacts/$t/" -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    runs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
    corpus=$(find "$out/corpus/$t" -type f | wc -l)
    echo "fuzz $t: ${seconds}s, $runs runs, corpus $corpus inputs, exit $status"
    if ((status != 0)); then
        failed+=("$t")
        grep -E 'panicked|SUMMARY|Test unit written|ERROR' "$log" | head -20 || true
        echo "(whole log: $log)"
    fi
done
if ((${#failed[@]})); then
    echo "fuzz targets that crashed: ${failed[*]}; keep each crash as a regression test in its crate"
    exit 1
fi
