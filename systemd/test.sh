#!/bin/bash
# Tests the systemd units and the install path:
#   1. systemd-analyze verify accepts each unit (and rejects a misspelled one);
#   2. systemd-analyze security --offline=true rates each unit 2.0 or better;
#   3. install.sh into a temporary DESTDIR, then systemd-sysusers and
#      systemd-tmpfiles on that root, lays out binaries, configs, users and
#      writable directories where the units expect them.
# Prints `N passed, N failed` last; exits 1 if anything failed.
#
# Binaries: the daemons built by cargo are used when found in BITVILLE_BIN_DIR,
# $CARGO_TARGET_DIR/{debug,release} or target/{debug,release}; a daemon not
# built yet is replaced by a stub executable (said in the output) so the unit
# can still be verified and installed. With a real binary the unit's own
# command line is also run with --check-config.
set -u

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
# BITVILLE_DAEMONS narrows the run (say, on a checkout where one daemon is
# not written yet); the default is all three.
daemons=${BITVILLE_DAEMONS:-shipper processor pg-watch}
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
check() { # check DESCRIPTION COMMAND...: passes when the command succeeds
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- binaries: real when built, stubs otherwise -------------------------------
bins=$tmp/bin
mkdir -p "$bins"
declare -A real
for d in $daemons; do
    real[$d]=
    for dir in ${BITVILLE_BIN_DIR:-} ${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/debug $CARGO_TARGET_DIR/release} \
        "$repo/target/debug" "$repo/target/release"; do
        if [ -x "$dir/$d" ] && [ -f "$dir/$d" ]; then
            real[$d]=$dir/$d
            break
        fi
    done
    if [ -n "${real[$d]}" ]; then
        ln -s "${real[$d]}" "$bins/$d"
        echo "info $d: using the built binary ${real[$d]}"
    else
        printf '#!/bin/sh\nexit 0\n' >"$bins/$d"
        chmod 0755 "$bins/$d"
        echo "info $d: not built; a stub executable stands in for verify and install only"
    fi
done

# --- 1. systemd-analyze verify ---------------------------------------------------
# verify exits 0 on unknown keys and only prints them, so any output about
# the unit counts as a failure.
verify_clean() { # verify_clean UNITFILE
    local out
    out=$(cd "$(dirname "$1")" && systemd-analyze verify "./$(basename "$1")" 2>&1)
    local rc=$?
    [ -n "$out" ] && echo "$out" | sed 's/^/     | /'
    [ $rc -eq 0 ] && [ -z "$out" ]
}
mkdir -p "$tmp/verify"
for d in $daemons; do
    unit=$tmp/verify/bitville-$d.service
    sed "s#/usr/local/bin/bitville-$d#$bins/$d#" "$here/bitville-$d.service" >"$unit"
    check "bitville-$d.service: systemd-analyze verify reports nothing" verify_clean "$unit"
done
# The check above can fail: a misspelled directive must be reported.
mkdir -p "$tmp/verify-bad"
sed -e "s#/usr/local/bin/bitville-shipper#$bins/shipper#" -e 's/^ProtectHome=/ProtectHom=/' \
    "$here/bitville-shipper.service" >"$tmp/verify-bad/bitville-shipper.service"
if verify_clean "$tmp/verify-bad/bitville-shipper.service" >/dev/null; then
    bad "a unit with a misspelled directive is reported by verify"
else
    ok "a unit with a misspelled directive is reported by verify"
fi

# --- 2. systemd-analyze security -------------------------------------------------
for d in $daemons; do
    out=$(systemd-analyze security --offline=true "$here/bitville-$d.service" 2>&1)
    score=$(echo "$out" | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
    if [ -z "$score" ]; then
        echo "$out" | tail -3 | sed 's/^/     | /'
        bad "bitville-$d.service: systemd-analyze security --offline=true gave no score"
    elif awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
        ok "bitville-$d.service: exposure $score (2.0 or better)"
    else
        echo "$out" | grep '✗' | sed 's/^/     | /'
        bad "bitville-$d.service: exposure $score is worse than 2.0"
    fi
done

# --- 3. install into a temporary DESTDIR ------------------------------------------
# Stage a root with the host's users (www-data, postgres) so sysusers adds to
# them as it would on a host, then let sysusers and tmpfiles act on it.
quietly() { # quietly COMMAND...: its output only when it fails
    local out
    out=$("$@" 2>&1) || { echo "$out" | sed 's/^/     | /'; return 1; }
}
stage_root() { # stage_root ROOT
    mkdir -p "$1/etc"
    cp /etc/passwd /etc/group "$1/etc/"
    install -m 0600 /dev/null "$1/etc/shadow"
    install -m 0600 /dev/null "$1/etc/gshadow"
}
layout() { # layout ROOT PREFIX UNITDIR SYSUSERSDIR TMPFILESDIR
    local root=$1 prefix=$2 unitdir=$3 sysusersdir=$4 tmpfilesdir=$5
    stage_root "$root"
    local out
    if out=$(DESTDIR=$root PREFIX=$prefix "$here/install.sh" --bin-dir "$bins" $daemons 2>&1); then
        ok "install.sh DESTDIR PREFIX=$prefix succeeds"
    else
        echo "$out" | sed 's/^/     | /'
        bad "install.sh DESTDIR PREFIX=$prefix succeeds"
        return
    fi
    for d in $daemons; do
        check "PREFIX=$prefix: $sysusersdir/bitville-$d.conf installed" test -f "$root$sysusersdir/bitville-$d.conf"
        check "PREFIX=$prefix: $prefix/share/doc/bitville-apm/examples/$d.toml is the repository's example" \
            cmp -s "$repo/$d/$d.example.toml" "$root$prefix/share/doc/bitville-apm/examples/$d.toml"
    done
    check "PREFIX=$prefix: systemd-sysusers --root makes the users and groups" \
        quietly systemd-sysusers --root="$root" "$root$sysusersdir"/bitville-*.conf
    check "PREFIX=$prefix: systemd-tmpfiles --root --create makes the spool" \
        systemd-tmpfiles --root="$root" --create "$root$tmpfilesdir"/bitville-*.conf
    check "PREFIX=$prefix: www-data is in bitville-spool (the PHP agent writes the spool)" \
        grep -Eq '^bitville-spool:[^:]*:[0-9]+:(.*,)?www-data(,|$)' "$root/etc/group"
    local lines
    lines=$(python3 "$here/check_layout.py" "$root" "$unitdir" /etc/bitville-apm $daemons)
    echo "$lines"
    pass=$((pass + $(grep -c '^ok ' <<<"$lines")))
    fail=$((fail + $(grep -c '^FAIL ' <<<"$lines")))
}
layout "$tmp/root-local" /usr/local /etc/systemd/system /etc/sysusers.d /etc/tmpfiles.d
layout "$tmp/root-usr" /usr /usr/lib/systemd/system /usr/lib/sysusers.d /usr/lib/tmpfiles.d

# The layout check can fail: a spool the shipper cannot write is reported.
chmod 0750 "$tmp/root-local/var/spool/bitville-apm"
chown root:root "$tmp/root-local/var/spool/bitville-apm"
# (grep without -q reads the whole report, so the check never writes into a closed pipe.)
if python3 "$here/check_layout.py" "$tmp/root-local" /etc/systemd/system /etc/bitville-apm shipper \
    | grep '^FAIL .*/var/spool/bitville-apm exists and is writable' >/dev/null; then
    ok "a spool the shipper cannot write is reported by the layout check"
else
    bad "a spool the shipper cannot write is reported by the layout check"
fi

# An edited config survives a second install.
conf=$tmp/root-local/etc/bitville-apm/shipper.toml
echo '# edited by the administrator' >>"$conf"
DESTDIR=$tmp/root-local PREFIX=/usr/local "$here/install.sh" --bin-dir "$bins" shipper >/dev/null 2>&1
check "a second install keeps an edited config" grep -q 'edited by the administrator' "$conf"

# A missing binary is refused with its name.
out=$(DESTDIR=$tmp/root-none "$here/install.sh" --bin-dir "$tmp/nowhere" shipper 2>&1)
check "install.sh names a missing binary" grep -q "nowhere/shipper is missing" <<<"$out"

# The unit's own command line is accepted by the real binary (no unknown flag).
for d in $daemons; do
    [ -n "${real[$d]}" ] || continue
    args=$(sed -n 's/^ExecStart=[^ ]* //p' "$here/bitville-$d.service" | sed "s#/etc/bitville-apm/#$tmp/root-local/etc/bitville-apm/#g")
    # shellcheck disable=SC2086 # the unit's arguments, split as systemd does
    out=$("${real[$d]}" $args --check-config 2>&1)
    if grep -Eqi 'unexpected argument|unrecognized|Usage:' <<<"$out"; then
        echo "$out" | sed 's/^/     | /'
        bad "bitville-$d: the unit's ExecStart flags and --check-config are accepted"
    else
        ok "bitville-$d: the unit's ExecStart flags and --check-config are accepted (says: $(head -1 <<<"$out"))"
    fi
    # The installed example config passes the check as far as the file goes
    # (paths, tokens and remote parts are the host's business).
    if grep -Eq '^(config file |config: )' <<<"$out"; then
        echo "$out" | sed 's/^/     | /'
        bad "bitville-$d: the installed example config has no problem of its own"
    else
        ok "bitville-$d: the installed example config has no problem of its own"
    fi
done

# The Debian package carries the same layout, configs as conffiles.
if [ "$daemons" = "shipper processor pg-watch" ]; then
    if deb=$("$here/build-deb.sh" --bin-dir "$bins" --out "$tmp/deb" 2>&1); then
        ok "build-deb.sh builds $(basename "$deb")"
        listing=$(dpkg-deb -c "$deb")
        for d in $daemons; do
            for path in /usr/bin/bitville-$d /usr/lib/systemd/system/bitville-$d.service \
                /usr/lib/sysusers.d/bitville-$d.conf /etc/bitville-apm/$d.toml; do
                check "package holds $path" grep -q " \.$path\$" <<<"$listing"
            done
            check "package marks /etc/bitville-apm/$d.toml a conffile" \
                grep -qx "/etc/bitville-apm/$d.toml" <(dpkg-deb -I "$deb" conffiles)
        done
        check "package's ExecStart is /usr/bin/bitville-shipper" \
            grep -q '^ExecStart=/usr/bin/bitville-shipper ' <(dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./usr/lib/systemd/system/bitville-shipper.service)
        for script in postinst prerm postrm; do
            check "package $script is valid sh" sh -n <(dpkg-deb -I "$deb" "$script")
        done
    else
        echo "$deb" | sed 's/^/     | /'
        bad "build-deb.sh builds the package"
    fi
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
