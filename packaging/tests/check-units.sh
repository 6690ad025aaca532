#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Checks the shipped systemd units, sysusers.d and tmpfiles.d files without
# installing anything and without systemd as PID 1:
#   1. systemd-analyze verify on every unit: exit status 0 and no output
#      (unknown keys and bad values are only warnings there, so any output
#      fails the test);
#   2. systemd-analyze security --offline=yes: exposure of secd.service at
#      most 1.5 (--threshold counts tenths: 15 means 1.5);
#   3. the contract with secd/endpoint.c: one socket unit per fd name,
#      addresses and modes as in DESIGN.md, Sockets= of the service;
#   4. systemd-sysusers and systemd-tmpfiles applied to a scratch root.
#
# usage: check-units.sh PACKAGING_DIR [CONFIGURED_SERVICE]
#   PACKAGING_DIR       the source tree's packaging/ folder
#   CONFIGURED_SERVICE  secd.service as configured by CMake (default: the
#                       template systemd/secd.service.in)
#
# verify insists that ExecStart= names an existing executable, and secd is
# not installed where the unit says (/usr/sbin/secd) while the tree is being
# tested. The units are therefore copied to a scratch directory and
# ExecStart= is pointed at a stand-in (a two-line script); nothing else is
# changed. Exit status: 0 pass, 1 fail, 77 skipped (no systemd tools).

set -u

pkgdir=${1:?usage: check-units.sh PACKAGING_DIR [CONFIGURED_SERVICE]}
service_src=${2:-$pkgdir/systemd/secd.service.in}
threshold=15

for tool in systemd-analyze systemd-sysusers systemd-tmpfiles; do
        if ! command -v "$tool" >/dev/null 2>&1; then
                echo "SKIP: $tool not found"
                exit 77
        fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/secd-units.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
failures=0

fail() {
        echo "FAIL: $*"
        failures=$((failures + 1))
}

ok() {
        echo "ok: $*"
}

# Value of KEY= in unit file FILE (last assignment wins, like systemd for
# single-valued keys); empty if absent.
unit_get() {
        sed -n "s/^$2=//p" "$1" | tail -n 1
}

units="$tmp/units"
mkdir -p "$units" "$tmp/sbin"
printf '#!/bin/sh\nexit 0\n' >"$tmp/sbin/secd"
chmod 0755 "$tmp/sbin/secd"
cp "$pkgdir"/systemd/*.socket "$units/" || exit 1
sed "s|^ExecStart=[^ ]*|ExecStart=$tmp/sbin/secd|" "$service_src" >"$units/secd.service" || exit 1

# 1. verify
out=$(cd "$units" && systemd-analyze verify --man=no ./*.socket ./secd.service 2>&1)
rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
        fail "systemd-analyze verify (exit $rc):"
        printf '%s\n' "$out" | sed 's/^/    /'
else
        ok "systemd-analyze verify: no complaints"
fi

# 2. security
out=$(systemd-analyze security --offline=yes --threshold="$threshold" "$units/secd.service" 2>&1)
rc=$?
score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for secd.service: \([0-9.]*\).*/\1/p')
if [ "$rc" -ne 0 ] || [ -z "$score" ]; then
        fail "exposure of secd.service is ${score:-unknown}, above 1.5 (exit $rc):"
        printf '%s\n' "$out" | grep '✗' | sed 's/^/    /'
else
        ok "exposure of secd.service: $score (at most 1.5)"
fi

# 3. contract: unit, fd name, address, mode, group
before=$failures
check_socket() {
        unit=$1 name=$2 listen=$3 mode=$4 group=$5
        f="$units/$unit"
        if [ ! -f "$f" ]; then
                fail "$unit is missing"
                return
        fi
        [ "$(grep -c '^ListenStream=' "$f")" -eq 1 ] || fail "$unit: exactly one ListenStream= expected"
        [ "$(unit_get "$f" FileDescriptorName)" = "$name" ] || fail "$unit: FileDescriptorName= is not $name"
        [ "$(unit_get "$f" ListenStream)" = "$listen" ] || fail "$unit: ListenStream= is not $listen"
        [ "$(unit_get "$f" Service)" = secd.service ] || fail "$unit: Service= is not secd.service"
        if [ -n "$mode" ]; then
                [ "$(unit_get "$f" SocketMode)" = "$mode" ] || fail "$unit: SocketMode= is not $mode"
        fi
        [ "$(unit_get "$f" SocketGroup)" = "$group" ] || fail "$unit: SocketGroup= is not '${group}'"
}
check_socket secd.socket data /run/secd/secd.sock 0666 ""
check_socket secd-enroll.socket enroll /run/secd/enroll.sock 0666 ""
check_socket secd-control.socket control /run/secd/control.sock 0660 secd-admin
check_socket secd-tcp.socket tcp '[::]:7443' "" ""

svc="$units/secd.service"
sockets=$(sed -n 's/^Sockets=//p' "$svc" | tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ')
[ "$sockets" = "secd-control.socket secd-enroll.socket secd.socket " ] ||
        fail "secd.service: Sockets= should be the three local endpoints, is: $sockets"
[ "$(unit_get "$svc" Type)" = notify ] || fail "secd.service: Type= is not notify"
[ "$(unit_get "$svc" User)" = secd ] || fail "secd.service: User= is not secd"
for key in AmbientCapabilities CapabilityBoundingSet; do
        [ "$(unit_get "$svc" "$key")" = "CAP_SYS_PTRACE CAP_DAC_READ_SEARCH" ] ||
                fail "secd.service: $key= is not exactly CAP_SYS_PTRACE CAP_DAC_READ_SEARCH"
done
# Settings that would break secd (see the comments in secd.service.in).
for key in PrivateUsers ProtectProc ProcSubset RuntimeDirectory DynamicUser; do
        grep -q "^$key=" "$svc" && fail "secd.service must not set $key="
done
[ "$failures" -eq "$before" ] && ok "units match the endpoint contract"

# 4. sysusers.d and tmpfiles.d on a scratch root
before=$failures
root="$tmp/root"
mkdir -p "$root/etc"
out=$(systemd-sysusers --root="$root" "$(cd "$pkgdir" && pwd)/sysusers.d/secd.conf" 2>&1) ||
        fail "systemd-sysusers: $out"
grep -q '^secd:x:[0-9]*:[0-9]*:[^:]*:/var/lib/secd:' "$root/etc/passwd" 2>/dev/null ||
        fail "sysusers.d: no user secd with home /var/lib/secd"
for g in secd secd-admin; do
        grep -q "^$g:x:" "$root/etc/group" 2>/dev/null || fail "sysusers.d: no group $g"
done
out=$(systemd-tmpfiles --root="$root" --create "$(cd "$pkgdir" && pwd)/tmpfiles.d/secd.conf" 2>&1) ||
        fail "systemd-tmpfiles: $out"
[ "$(stat -c %a "$root/run/secd" 2>/dev/null)" = 755 ] || fail "tmpfiles.d: /run/secd is not 0755"
[ "$(stat -c %a "$root/etc/secd" 2>/dev/null)" = 755 ] || fail "tmpfiles.d: /etc/secd is not 0755"
[ "$failures" -eq "$before" ] && ok "sysusers.d and tmpfiles.d apply cleanly"

if [ "$failures" -ne 0 ]; then
        echo "$failures check(s) failed"
        exit 1
fi
exit 0
