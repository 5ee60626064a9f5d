#!/bin/sh
# Installs the Bitville APM daemons, their systemd units and example configs.
#
#   systemd/install.sh [--bin-dir DIR] [shipper] [processor] [pg-watch]
#
# With no daemon named, all three are installed. Binaries are taken from
# --bin-dir (default: $CARGO_TARGET_DIR/release, else target/release) and
# installed as bitville-<daemon>.
#
# Variables: DESTDIR (staging root, default none), PREFIX (default
# /usr/local), BINDIR, SYSCONFDIR (default /etc), UNITDIR, SYSUSERSDIR,
# TMPFILESDIR, DOCDIR. With PREFIX=/usr the units, sysusers.d and tmpfiles.d
# files go below /usr/lib (a package's place); with any other prefix below
# /etc, where systemd, systemd-sysusers and systemd-tmpfiles all look.
#
# Without DESTDIR it also makes the users, groups and directories (through
# systemd-sysusers and systemd-tmpfiles) and reloads systemd. It never
# enables or starts a unit and never overwrites an existing config.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
BINDIR=${BINDIR:-$PREFIX/bin}
SYSCONFDIR=${SYSCONFDIR:-/etc}
DOCDIR=${DOCDIR:-$PREFIX/share/doc/bitville-apm}
if [ "$PREFIX" = /usr ]; then
    libroot=/usr/lib
else
    libroot=$SYSCONFDIR
fi
case $libroot in
    /usr/lib) unitroot=/usr/lib/systemd/system ;;
    *) unitroot=$SYSCONFDIR/systemd/system ;;
esac
UNITDIR=${UNITDIR:-$unitroot}
SYSUSERSDIR=${SYSUSERSDIR:-$libroot/sysusers.d}
TMPFILESDIR=${TMPFILESDIR:-$libroot/tmpfiles.d}
CONFDIR=$SYSCONFDIR/bitville-apm

bin_src=${CARGO_TARGET_DIR:-$repo/target}/release
daemons=
while [ $# -gt 0 ]; do
    case $1 in
        --bin-dir) bin_src=${2:?--bin-dir needs a directory}; shift 2 ;;
        --bin-dir=*) bin_src=${1#--bin-dir=}; shift ;;
        shipper|processor|pg-watch) daemons="$daemons $1"; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (expected shipper, processor, pg-watch or --bin-dir DIR)" >&2; exit 2 ;;
    esac
done
[ -n "$daemons" ] || daemons="shipper processor pg-watch"

for d in $daemons; do
    if [ ! -x "$bin_src/$d" ]; then
        echo "install.sh: $bin_src/$d is missing or not executable (build it with cargo build -p $d, or pass --bin-dir)" >&2
        exit 1
    fi
    if [ ! -f "$repo/$d/$d.example.toml" ]; then
        echo "install.sh: $repo/$d/$d.example.toml is missing" >&2
        exit 1
    fi
done

live=
[ -z "$DESTDIR" ] && live=1
if [ -n "$live" ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: installing into / needs root (or set DESTDIR for a staging root)" >&2
    exit 1
fi

# Rewrites the default paths in a unit file for this PREFIX and SYSCONFDIR.
render_unit() {
    sed -e "s#/usr/local/bin/#$BINDIR/#g" -e "s#/etc/bitville-apm/#$CONFDIR/#g" "$1"
}

install -d -m 0755 "$DESTDIR$BINDIR" "$DESTDIR$UNITDIR" "$DESTDIR$SYSUSERSDIR" "$DESTDIR$TMPFILESDIR" \
    "$DESTDIR$DOCDIR/examples" "$DESTDIR$CONFDIR"
install -m 0644 "$here/sysusers.d/bitville-apm.conf" "$DESTDIR$SYSUSERSDIR/bitville-apm.conf"
install -m 0644 "$here/tmpfiles.d/bitville-apm.conf" "$DESTDIR$TMPFILESDIR/bitville-apm.conf"
install -m 0644 "$here/README.md" "$DESTDIR$DOCDIR/README.systemd.md"

for d in $daemons; do
    install -m 0755 "$bin_src/$d" "$DESTDIR$BINDIR/bitville-$d"
    render_unit "$here/bitville-$d.service" >"$DESTDIR$UNITDIR/bitville-$d.service"
    chmod 0644 "$DESTDIR$UNITDIR/bitville-$d.service"
    install -m 0644 "$here/sysusers.d/bitville-$d.conf" "$DESTDIR$SYSUSERSDIR/bitville-$d.conf"
    if [ -f "$here/tmpfiles.d/bitville-$d.conf" ]; then
        install -m 0644 "$here/tmpfiles.d/bitville-$d.conf" "$DESTDIR$TMPFILESDIR/bitville-$d.conf"
    fi
    install -m 0644 "$repo/$d/$d.example.toml" "$DESTDIR$DOCDIR/examples/$d.toml"
    install -m 0644 "$here/env/$d.env" "$DESTDIR$DOCDIR/examples/$d.env"
done

if [ -n "$live" ]; then
    # Users and groups first: the configs below are chowned to them.
    for f in bitville-apm $(for d in $daemons; do echo "bitville-$d"; done); do
        systemd-sysusers "$SYSUSERSDIR/$f.conf"
    done
    for f in "$TMPFILESDIR"/bitville-*.conf; do
        systemd-tmpfiles --create "$f"
    done
fi

# The config may hold a token: readable by root and the daemon's group only.
# An existing one is the administrator's and is left alone.
for d in $daemons; do
    conf=$DESTDIR$CONFDIR/$d.toml
    if [ -e "$conf" ]; then
        echo "install.sh: kept the existing $CONFDIR/$d.toml (the example is in $DOCDIR/examples/$d.toml)"
        continue
    fi
    install -m 0640 "$repo/$d/$d.example.toml" "$conf"
    if [ -n "$live" ]; then
        chgrp "bitville-$d" "$conf"
    fi
done

if [ -n "$live" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi

echo "install.sh: installed$daemons under ${DESTDIR:-/} (binaries in $BINDIR, units in $UNITDIR, configs in $CONFDIR)"
if [ -n "$live" ]; then
    for d in $daemons; do
        echo "  next: edit $CONFDIR/$d.toml, check it with: runuser -u bitville-$d -- $BINDIR/bitville-$d --config $CONFDIR/$d.toml --check-config"
        echo "        then: systemctl enable --now bitville-$d"
    done
fi
