#!/usr/bin/env bash
# The agent on the PHP its users run (issue #20 §4): Debian 11 "bullseye"
# (PHP 7.4.33 with Excimer 1.0.0, the users' runtime) and Debian "sid"
# (Excimer 1.2.5, the fixed timer backend), each in a root made with
# debootstrap and cached outside the clone.
#
#   bash shipper/php/platforms/test.sh [bullseye] [sid]      (default: both)
#
# For each root: the agent's PHPUnit-free tests (tests/php74/run.php) on that
# PHP; an end-to-end check through that PHP's php-fpm against a throwaway
# PostgreSQL cluster on the host, reached over TCP loopback (a slow request,
# its SQL tagged with application_name, its Excimer profile, a record that
# validates); and the Excimer stress harness under that php-fpm, small.
#
# BITVILLE_APM_ROOTS: where roots are cached (default
#   $HOME/.cache/bitville-apm/roots). A missing root is built (debootstrap
#   and Debian's packages; several minutes), never skipped.
# BITVILLE_VALIDATE: the Rust validator command; required (a record that is
#   not validated is not a pass).
# BITVILLE_APM_STRESS_N: requests per mode and period for the stress run
#   (default 2000; the README's figures come from 100000 on the host).
# Needs root (debootstrap, chroot, mount) and PostgreSQL on the host, as
# the agent's own tests do. Any missing tool is a failure, never a pass.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
agent="$(cd "$here/.." && pwd)"
repo="$(cd "$agent/../.." && pwd)"
roots="${BITVILLE_APM_ROOTS:-$HOME/.cache/bitville-apm/roots}"
mirror="${BITVILLE_APM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
stress_n="${BITVILLE_APM_STRESS_N:-2000}"
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(bullseye sid)

fail() { echo "platforms: FAILED: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "must run as root (debootstrap, chroot, mount)"
[ -n "${BITVILLE_VALIDATE:-}" ] || fail "BITVILLE_VALIDATE must name the Rust validator"
command -v php >/dev/null || fail "php is missing on the host (it drives php-fpm and checks records)"
pg_bin="${BITVILLE_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
[ -x "$pg_bin/initdb" ] || fail "PostgreSQL's server is missing on the host (Debian package postgresql, or set BITVILLE_PG_BIN)"
if ! command -v debootstrap >/dev/null; then
    apt-get install -y debootstrap >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y debootstrap >/dev/null 2>&1; } \
        || fail "debootstrap is missing and could not be installed"
fi

# Packages per suite: PHP, php-fpm, pgsql and Excimer as Debian ships them.
packages() {
    case "$1" in
        bullseye) echo "php7.4-cli php7.4-fpm php7.4-pgsql php7.4-sqlite3 php-excimer" ;;
        sid) echo "php-cli php-fpm php-pgsql php-sqlite3 php-excimer" ;;
        *) return 1 ;;
    esac
}

# Builds the root for a suite unless a finished one is cached. A root is
# finished when it has .bitville-ready; a half-built one is removed first.
build_root() {
    local suite="$1" root="$roots/$1" tmp="$roots/$1.partial"
    [ -f "$root/.bitville-ready" ] && return 0
    echo "== building the $suite root in $root (debootstrap; several minutes)"
    rm -rf "$tmp" && mkdir -p "$roots" || return 1
    debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$roots/$suite.debootstrap.log" 2>&1 \
        || { tail -20 "$roots/$suite.debootstrap.log"; return 1; }
    cp /etc/resolv.conf "$tmp/etc/resolv.conf"
    # A mirror that serves an older copy of sid has an expired Release date;
    # its packages are still Debian's, signed as ever.
    mount -t proc proc "$tmp/proc" || return 1
    local ok=0
    chroot "$tmp" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
        "apt-get -o Acquire::Check-Valid-Until=false update && apt-get install -y --no-install-recommends $(packages "$suite")" \
        >>"$roots/$suite.debootstrap.log" 2>&1 || ok=1
    umount "$tmp/proc"
    [ $ok -eq 0 ] || { tail -20 "$roots/$suite.debootstrap.log"; return 1; }
    chroot "$tmp" php -r 'echo PHP_VERSION, " excimer ", phpversion("excimer"), "\n";' >"$tmp/.bitville-ready" || return 1
    rm -rf "$root" && mv "$tmp" "$root"
}

# A cached root made before a package joined the list gets it now.
top_up() {
    local suite="$1" root="$roots/$1" missing=()
    for pkg in $(packages "$suite"); do
        chroot "$root" dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "== $suite: installing ${missing[*]} in the cached root"
    mount -t proc proc "$root/proc" || return 1
    local ok=0
    chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
        "apt-get -o Acquire::Check-Valid-Until=false update && apt-get install -y --no-install-recommends ${missing[*]}" \
        >>"$roots/$suite.debootstrap.log" 2>&1 || ok=1
    umount "$root/proc"
    return $ok
}

status=0
for suite in "${suites[@]}"; do
    packages "$suite" >/dev/null || fail "unknown suite $suite (bullseye, sid)"
    build_root "$suite" || fail "could not build the $suite root (log: $roots/$suite.debootstrap.log)"
    top_up "$suite" || fail "could not install the $suite packages (log: $roots/$suite.debootstrap.log)"
    root="$roots/$suite"
    echo "== $suite: PHP $(chroot "$root" php -r 'echo PHP_VERSION;'), Excimer $(chroot "$root" php -r 'echo phpversion("excimer") ?: "MISSING";')"
    fpm="$(chroot "$root" sh -c 'ls /usr/sbin/php-fpm* 2>/dev/null | head -1')"
    [ -n "$fpm" ] || fail "$suite: no php-fpm in the root"
    # The agent, its tests and the schema, copied fresh into the root.
    rm -rf "$root/bitville" && mkdir -p "$root/bitville/shipper" "$root/bitville/schemas"
    cp -a "$agent" "$root/bitville/shipper/php" && rm -rf "$root/bitville/shipper/php/tests/node_modules"
    cp "$repo/schemas/request.schema.json" "$root/bitville/schemas/"
    mountpoint -q "$root/proc" || mount -t proc proc "$root/proc" || fail "cannot mount /proc in the $suite root"
    trap 'umount "$root/proc" 2>/dev/null' EXIT

    lint=0
    for f in "$root"/bitville/shipper/php/bitville-apm.php "$root"/bitville/shipper/php/src/*.php; do
        chroot "$root" php -l "${f#$root}" >/dev/null 2>&1 || { echo "$suite: lint failed: ${f#$root}"; lint=1; }
    done
    [ $lint -eq 0 ] && echo "lint: every agent file parses on PHP $(chroot "$root" php -r 'echo PHP_VERSION;')" || status=1
    out="$(chroot "$root" php /bitville/shipper/php/tests/php74/run.php 2>&1)"
    echo "$out" | tail -3
    grep -Eq '^[0-9]+ passed, 0 failed$' <<<"$out" || { echo "$suite: the PHP tests failed"; echo "$out"; status=1; }
    # Every test runs here: none may pass by skipping (pdo_sqlite is installed for that).
    ! grep -q 'skipped' <<<"$out" || { echo "$suite: a PHP test was skipped"; status=1; }

    php "$here/e2e.php" "$root" "$fpm" || { echo "$suite: the end-to-end check failed"; status=1; }

    (cd "$root" && chroot "$root" env PHP_FPM="$fpm" php /bitville/shipper/php/stress/stress.php \
        --requests "$stress_n" --periods 1,10 --fpm-modes startstop,quiet,agent --cli-modes none-at-all \
        --max-requests 50 --idle-seconds 0 --must-survive agent) || { echo "$suite: the stress run failed"; status=1; }
    umount "$root/proc" 2>/dev/null
    trap - EXIT
done
if [ $status -ne 0 ]; then
    echo "platforms: FAILED"
    exit 1
fi
echo "platforms: ok (${suites[*]})"
