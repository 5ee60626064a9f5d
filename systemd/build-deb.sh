#!/bin/sh
# Builds one Debian package, bitville-apm, holding the three daemons, their
# units, sysusers.d and tmpfiles.d files and example configs, laid out by
# install.sh with PREFIX=/usr.
#
#   systemd/build-deb.sh [--bin-dir DIR] [--out DIR]
#
# The configs in /etc/bitville-apm are conffiles: an upgrade never overwrites
# an edited one. The postinst makes users, groups and the spool and reloads
# systemd; no unit is enabled, since each needs its config (a token) first:
#   apt install ./bitville-apm_0.1.0_amd64.deb
#   sudoedit /etc/bitville-apm/shipper.toml && systemctl enable --now bitville-shipper
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin_dir=${CARGO_TARGET_DIR:-$repo/target}/release
out=$PWD
while [ $# -gt 0 ]; do
    case $1 in
        --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        *) echo "build-deb.sh: unknown argument $1 (expected --bin-dir DIR or --out DIR)" >&2; exit 2 ;;
    esac
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")
[ -n "$version" ] || { echo "build-deb.sh: no version in the [workspace.package] of $repo/Cargo.toml" >&2; exit 1; }
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"

DESTDIR=$stage PREFIX=/usr "$here/install.sh" --bin-dir "$bin_dir" >/dev/null
mkdir -p "$stage/DEBIAN"
(cd "$stage" && find etc/bitville-apm -type f | sed 's#^#/#' | sort) >"$stage/DEBIAN/conffiles"
cat >"$stage/DEBIAN/control" <<EOF
Package: bitville-apm
Version: $version
Architecture: $arch
Maintainer: Bitville APM <bitville-apm@users.noreply.github.com>
Depends: libc6, systemd (>= 247)
Section: admin
Priority: optional
Homepage: https://github.com/bitville/bitville-apm
Description: APM for PHP and PostgreSQL load spikes: shipper, processor, pg-watch
 Three daemons with hardened systemd units. bitville-shipper ships the PHP
 agent's spool from web hosts, bitville-pg-watch samples PostgreSQL on
 database hosts, bitville-processor stores and analyses everything centrally.
 Enable only the units a host needs, after editing /etc/bitville-apm.
EOF
cat >"$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    systemd-sysusers bitville-apm.conf bitville-shipper.conf bitville-processor.conf bitville-pg-watch.conf
    systemd-tmpfiles --create bitville-apm.conf bitville-pg-watch.conf
    for d in shipper processor pg-watch; do
        chgrp "bitville-$d" "/etc/bitville-apm/$d.toml"
        chmod 0640 "/etc/bitville-apm/$d.toml"
    done
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        for d in shipper processor pg-watch; do
            if systemctl is-active --quiet "bitville-$d"; then systemctl restart "bitville-$d"; fi
        done
    fi
fi
EOF
cat >"$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl disable --now bitville-shipper bitville-processor bitville-pg-watch >/dev/null 2>&1 || true
fi
EOF
cat >"$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
mkdir -p "$out"
deb=$out/bitville-apm_${version}_$arch.deb
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
