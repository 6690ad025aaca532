#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Builds packaging/rpm/secd.spec with rpmbuild, on this Debian machine, and
# checks the packages it made: names, the files of each, the config file,
# and the scriptlets. --nodeps because Debian's rpm has no Fedora build root
# (no rpm database of the BuildRequires, no systemd-rpm-macros); the spec's
# fallback macros stand in for the latter. Nothing is installed.
#
# usage: packaging/tests/rpm-build.sh [OUTDIR]
#   OUTDIR   keep the .rpm files there (default: a temporary directory,
#            removed at the end)
# Exit status: 0 pass, 1 fail, 77 skipped (no rpmbuild).

set -euo pipefail
export LC_ALL=C.UTF-8
me=rpm-build
srcdir=$(cd "$(dirname "$0")/../.." && pwd)
outdir=${1:-}

command -v rpmbuild >/dev/null || { echo "$me: SKIP: rpmbuild not installed (scripts/install-deps --test)"; exit 77; }

fail() {
        echo "$me: FAIL: $*" >&2
        exit 1
}
start=$(date +%s)
tmp=$(mktemp -d /tmp/secd-rpm-build.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# shellcheck source=packaging/tests/source-tree.sh
. "$srcdir/packaging/tests/source-tree.sh"
top=$tmp/rpmbuild
mkdir -p "$top/SOURCES" "$tmp/src"
secd_source_tree "$srcdir" "$tmp/src" || fail "cannot copy the source tree"
version=$(sed -n 's/^project(secd VERSION \([0-9.]*\).*/\1/p' "$tmp/src/CMakeLists.txt")
spec=$tmp/src/packaging/rpm/secd.spec
spec_version=$(sed -n 's/^Version:[[:space:]]*//p' "$spec")
[ "$spec_version" = "$version" ] || fail "secd.spec says $spec_version, CMakeLists.txt says $version"
mv "$tmp/src" "$tmp/secd-$version"
tar -C "$tmp" -czf "$top/SOURCES/secd-$version.tar.gz" "secd-$version"
spec=$tmp/secd-$version/packaging/rpm/secd.spec
cp "$tmp/secd-$version/packaging/sysusers.d/secd.conf" "$top/SOURCES/secd.sysusers"

if ! rpmbuild -bb --nodeps \
        --define "_topdir $top" \
        --define "_smp_mflags -j$(nproc)" \
        "$spec" >"$tmp/rpmbuild.log" 2>&1; then
        tail -n 60 "$tmp/rpmbuild.log" >&2
        fail "rpmbuild failed"
fi
grep -E '^(warning|Wrote):' "$tmp/rpmbuild.log" | sed 's/^/    /' || true

rpms=$(find "$top/RPMS" -name '*.rpm' | sort)
pkg() { # name: the one rpm of that name
        local f
        for f in $rpms; do
                [ "$(rpm -qp --qf '%{NAME}' "$f" 2>/dev/null)" = "$1" ] && { echo "$f"; return 0; }
        done
        fail "no package $1 was built"
}
has() { # package path...
        local f=$1 p list
        shift
        list=$(rpm -qpl "$f" 2>/dev/null)
        for p in "$@"; do
                printf '%s\n' "$list" | grep -qx -- "$p" || fail "$(basename "$f") lacks $p"
        done
}
secd=$(pkg secd)
lib=$(pkg libsecclient)
dev=$(pkg libsecclient-devel)
unitdir=$(rpm --eval '%{_prefix}/lib/systemd/system')
libdir=$(rpm --eval '%{_libdir}')
has "$secd" /usr/sbin/secd /usr/bin/secctl /etc/secd/secd.conf \
        "$unitdir/secd.service" "$unitdir/secd.socket" "$unitdir/secd-enroll.socket" \
        "$unitdir/secd-control.socket" "$unitdir/secd-tcp.socket" \
        /usr/lib/sysusers.d/secd.conf /usr/lib/tmpfiles.d/secd.conf /var/lib/secd \
        /usr/share/bash-completion/completions/secctl
has "$lib" "$libdir/libsecclient.so.1" "$libdir/libsecclient.so.1.0.0"
has "$dev" /usr/include/secclient.h "$libdir/libsecclient.so" "$libdir/pkgconfig/secclient.pc" \
        "$libdir/cmake/secclient/secclientConfig.cmake"
secmsg_rpm=$(pkg secmsg)
has "$secmsg_rpm" /usr/bin/secmsg
rpm -qpl "$secmsg_rpm" 2>/dev/null | grep -q "/man1/secmsg\.1" || fail "secmsg lacks secmsg(1)"
rpm -qp --configfiles "$secd" 2>/dev/null | grep -qx /etc/secd/secd.conf || fail "/etc/secd/secd.conf is not %config"
rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$secd" 2>/dev/null |
        grep -qx 'drwx------ secd:secd /var/lib/secd' || fail "/var/lib/secd is not 0700 secd:secd"
scripts=$(rpm -qp --scripts "$secd" 2>/dev/null)
for want in 'systemd-sysusers' 'systemd-tmpfiles --create' 'preset secd.socket' 'try-restart secd.service'; do
        printf '%s\n' "$scripts" | grep -q -- "$want" || { printf '%s\n' "$scripts" >&2; fail "secd's scriptlets lack '$want'"; }
done
[ "$(rpm -qp --qf '%{SIZE}' "$lib")" -gt 0 ] || fail "libsecclient is empty"

if [ -n "$outdir" ]; then
        mkdir -p "$outdir"
        cp $rpms "$outdir/"
fi
echo "$me: built and checked$(for f in $rpms; do printf ' %s' "$(basename "$f")"; done) in $(( $(date +%s) - start )) s"
