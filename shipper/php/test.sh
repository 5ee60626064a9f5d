#!/usr/bin/env bash
# Runs every test of the PHP agent: PHPUnit on the host PHP (with Excimer,
# pgsql, a throwaway PostgreSQL cluster and the built-in web server), then
# lint and the extension-free tests on real PHP 7.4 (WebAssembly build from
# npm). Exits non-zero on any failure.
#
# BITVILLE_VALIDATE, when set, is the command that validates spool files
# against the schemas (the Rust validator); the tests append file paths to it.
# BITVILLE_REQUIRE_ALL=1 (set by .ci/test) turns every skipped test into a
# failure: CI never passes by skipping.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
status=0

echo "== PHP agent: PHPUnit ($(php -r 'echo PHP_VERSION;'), Excimer $(php -r 'echo phpversion("excimer") ?: "none";'))"
strict=()
[ "${BITVILLE_REQUIRE_ALL:-}" = 1 ] && strict=(--fail-on-skipped --fail-on-incomplete)
phpunit -c phpunit.xml "${strict[@]}" || status=1

echo "== PHP agent: PHP 7.4 checks"
if [ ! -d tests/node_modules/@php-wasm/node-7-4 ]; then
    (cd tests && npm ci --no-audit --no-fund --loglevel=error) || { echo "npm ci failed"; exit 1; }
fi
php74() { (cd tests && PHP=7.4 npx --no-install php-wasm-cli "$@"); }
for f in bitville-apm.php src/*.php; do
    out="$(php74 -l "$here/$f" 2>&1)"
    if ! grep -q "No syntax errors detected" <<<"$out"; then
        echo "PHP 7.4 lint failed: $f"; echo "$out"; status=1
    fi
done
echo "PHP 7.4 lint: $(ls bitville-apm.php src/*.php | wc -l) files checked"
out="$(php74 "$here/tests/php74/run.php" 2>&1)"
echo "$out"
if [ "${BITVILLE_REQUIRE_ALL:-}" = 1 ] && grep -q "(skipped" <<<"$out"; then
    echo "PHP 7.4 tests skipped a check (BITVILLE_REQUIRE_ALL=1: a skip is a failure)"; status=1
fi
grep -Eq '^[0-9]+ passed, 0 failed$' <<<"$out" || { echo "PHP 7.4 tests failed"; status=1; }

if [ "$status" -ne 0 ]; then
    echo "PHP agent tests: FAILED"
fi
exit "$status"
