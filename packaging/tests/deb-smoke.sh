#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The installed smoke test (issue 6): build the .debs from this tree,
# install them on this machine, check what they put where, start the
# installed secd the way its units would (without systemd as PID 1), use it
# through the installed sockets, then remove and purge the packages.
#
#   1. build: a scratch copy of the tree (the committed one;
#      SECD_PACKAGE_SOURCE=worktree for the working tree, see
#      source-tree.sh), packaging/debian copied to ./debian, dpkg-buildpackage -b (DEB_BUILD_OPTIONS=nocheck: the test
#      suite has run on the tree already); lintian must report no error;
#   2. install with apt (only the packages built here, nothing else may be
#      pulled in); check user secd, groups secd and secd-admin, files and
#      modes, the conffile, the enabled socket units, /run/secd;
#      build the installed examples against libsecclient-dev (CMake package
#      and pkg-config);
#   3. start: the socket paths, fd names, modes and group come from the
#      installed socket units, ExecStart=, User=, UMask= and the capabilities
#      from the installed secd.service; systemd-socket-activate holds the
#      named sockets and execs secd, through unshare --net and setpriv, as
#      user secd with exactly the unit's two capabilities (ambient and
#      bounding set) and no new privileges, on the first connection;
#      READY=1 (and WATCHDOG=1 within WatchdogSec=) arrive on a
#      NOTIFY_SOCKET of ours;
#   4. use: secctl status as root and as a secd-admin member (refused
#      without the group); an example client (nobody) is refused without a
#      rule, enrolls and PINGs once a rule allows its executable, and a
#      one-byte-longer copy of it is refused and audited; secmsg makes an
#      identity, sends itself a message through the relay and receives it;
#   5. stop with SIGTERM (STOPPING=1, exit 0); a reinstall (the upgrade
#      paths of the maintainer scripts) keeps an edited secd.conf and the
#      state; "remove" keeps /var/lib/secd and /etc/secd/secd.conf, "purge"
#      drops both and the unit links.
#
# The machine is left as it was found, on success and on failure (trap):
# the packages are purged, processes started here are killed by pid, and a
# user or group that did not exist before is deleted again. The script
# refuses to run where secd is already installed or has state. Every wait
# is bounded; the whole run is bounded by SECD_SMOKE_TIMEOUT (default 480 s).
#
# usage: packaging/tests/deb-smoke.sh [--debs DIR]
#   --debs DIR   use the .debs in DIR instead of building them
# Runs as root. Exit status: 0 pass, 1 fail, 77 skipped (not root, or no
# dpkg/apt: not a Debian system).

set -euo pipefail
umask 022
export LC_ALL=C.UTF-8
# The installed programs and library, never a copy in /usr/local or a
# developer's environment pointing somewhere else.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset SECCTL_SOCKET SECD_SOCKET SECD_ENROLL_SOCKET LD_LIBRARY_PATH PKG_CONFIG_PATH CMAKE_PREFIX_PATH
export DEBIAN_FRONTEND=noninteractive

me=deb-smoke
srcdir=$(cd "$(dirname "$0")/../.." && pwd)
debs_dir=
while [ $# -gt 0 ]; do
        case "$1" in
        --debs) debs_dir=$(cd "${2:?--debs needs a directory}" && pwd); shift 2 ;;
        -h|--help) sed -n '3,46p' "$0"; exit 0 ;;
        *) echo "$me: unknown argument '$1'" >&2; exit 2 ;;
        esac
done

if [ "$(id -u)" -ne 0 ]; then
        echo "$me: SKIP: must run as root (installs packages system-wide)"
        exit 77
fi
for tool in dpkg apt-get; do
        command -v "$tool" >/dev/null || { echo "$me: SKIP: no $tool: not a Debian system"; exit 77; }
done

# One run at a time on this machine (the packages are system-wide); then a
# hard bound on the whole run. timeout(1) sends TERM, which the trap
# below turns into a cleanup.
if [ -z "${SECD_SMOKE_LOCKED:-}" ]; then
        lock=/run/lock/secd-deb-smoke.lock
        [ -d /run/lock ] || lock=/tmp/secd-deb-smoke.lock
        exec 9>"$lock"
        flock -w 600 9 || { echo "$me: FAIL: another smoke test holds $lock" >&2; exit 1; }
        export SECD_SMOKE_LOCKED=1
        exec timeout --kill-after=60 "${SECD_SMOKE_TIMEOUT:-480}" bash "$0" ${debs_dir:+--debs "$debs_dir"}
fi

start_time=$(date +%s)
passed=0
tmp=
activator_pid=
notify_pid=
packages="secd libsecclient1 libsecclient-dev secmsg"

say() { echo "$me: $*"; }
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() {
        echo "$me: FAIL: $*" >&2
        exit 1
}

# What this test may change; compared before and after.
snapshot() {
        getent passwd secd || true
        getent group secd secd-admin || true
        for p in $packages; do printf "%s %s\n" "$p" "$(pkg_status "$p")"; done
        ls -ld /var/lib/secd /run/secd /etc/secd 2>/dev/null || true
        find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled \
             /var/lib/systemd/deb-systemd-helper-masked -name '*secd*' 2>/dev/null | sort || true
}

had_user_secd=0
had_group_secd=0
had_group_admin=0
getent passwd secd >/dev/null && had_user_secd=1
getent group secd >/dev/null && had_group_secd=1
getent group secd-admin >/dev/null && had_group_admin=1

# A child that has exited is gone even before it is reaped (a zombie).
gone() {
        [ ! -e "/proc/$1" ] || grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

kill_pid() { # pid: TERM, 10 s, then KILL; only processes this script started
        local pid=$1 _
        [ -n "$pid" ] || return 0
        gone "$pid" && return 0
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
                gone "$pid" && return 0
                sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
}

# Status of package $1 as dpkg knows it ("install ok installed",
# "deinstall ok config-files", ...); empty when dpkg has never seen it.
pkg_status() {
        dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -v 'not-installed$' || true
}

cleanup() {
        local rc=$? p
        trap - EXIT INT TERM
        set +e
        kill_pid "$activator_pid"
        kill_pid "$notify_pid"
        known=$(for p in $packages; do [ -z "$(pkg_status "$p")" ] || echo "$p"; done)
        if [ -n "$known" ]; then
                # shellcheck disable=SC2086  # one word per package
                dpkg --purge $known >/dev/null 2>&1 || echo "$me: cleanup: cannot purge" $known >&2
        fi
        # Refused to start if these existed, so they are ours.
        rm -rf /var/lib/secd /run/secd
        [ "$had_user_secd" = 1 ] || { getent passwd secd >/dev/null && userdel secd; }
        [ "$had_group_secd" = 1 ] || { getent group secd >/dev/null && groupdel secd; }
        [ "$had_group_admin" = 1 ] || { getent group secd-admin >/dev/null && groupdel secd-admin; }
        if [ -n "$tmp" ]; then
                after=$(snapshot)
                if [ "$after" != "$(cat "$tmp/before")" ]; then
                        echo "$me: FAIL: the machine is not as it was found:" >&2
                        diff "$tmp/before" <(printf '%s\n' "$after") >&2
                        rc=1
                fi
                rm -rf "$tmp"
        fi
        if [ "$rc" -eq 0 ]; then
                echo "$me: ${passed} passed, 0 failed in $(( $(date +%s) - start_time )) s"
        else
                echo "$me: FAILED (exit $rc) after ${passed} passed checks, $(( $(date +%s) - start_time )) s" >&2
        fi
        exit "$rc"
}

# Refuse to touch a real installation.
for p in $packages; do
        st=$(pkg_status "$p")
        [ -z "$st" ] || fail "package $p is known to dpkg here ($st); this test installs and purges it"
done
for d in /var/lib/secd /run/secd /etc/secd; do
        [ ! -e "$d" ] || fail "$d exists: a secd may be in use here; this test would destroy it"
done
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tmp=$(mktemp -d /tmp/secd-deb-smoke.XXXXXX)
chmod 0755 "$tmp"
snapshot >"$tmp/before"

# Waits up to $1 seconds for the command in the remaining arguments.
wait_for() {
        local limit=$1 _
        shift
        for _ in $(seq $((limit * 10))); do
                "$@" && return 0
                sleep 0.1
        done
        return 1
}

# ---------------------------------------------------------------- 1. build
# shellcheck source=packaging/tests/source-tree.sh
. "$srcdir/packaging/tests/source-tree.sh"
src="$tmp/build/secd"
mkdir -p "$src"
secd_source_tree "$srcdir" "$src" || fail "cannot copy the source tree"
version=$(sed -n 's/^project(secd VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ -n "$version" ] || fail "no project(secd VERSION ...) in CMakeLists.txt"
deb_version=$(dpkg-parsechangelog -l "$src/packaging/debian/changelog" -S Version)
[ "$deb_version" = "$version" ] ||
        fail "packaging/debian/changelog says $deb_version, CMakeLists.txt says $version: add a changelog entry"
ok "debian/changelog version $deb_version matches the project version (source: ${SECD_PACKAGE_SOURCE:-head})"

if [ -z "$debs_dir" ]; then
        rm -rf "$src/debian"
        cp -r "$src/packaging/debian" "$src/debian"
        say "building the packages in $src (log: $tmp/build/dpkg-buildpackage.log)"
        if ! (cd "$src" && DEB_BUILD_OPTIONS="nocheck ${DEB_BUILD_OPTIONS:-}" \
                        dpkg-buildpackage -b -us -uc -Pnocheck -j"$(nproc)") >"$tmp/build/dpkg-buildpackage.log" 2>&1; then
                tail -n 60 "$tmp/build/dpkg-buildpackage.log" >&2
                fail "dpkg-buildpackage failed"
        fi
        debs_dir="$tmp/build"
        built=0
        for f in "$debs_dir"/*.deb; do
                case "$f" in *-dbgsym_*) ;; *) built=$((built + 1)) ;; esac
        done
        ok "dpkg-buildpackage -b built $built packages"
fi

debs=
for p in $packages; do
        f=$(ls "$debs_dir/${p}_${version}_"*.deb 2>/dev/null | head -n 1 || true)
        if [ -z "$f" ]; then
                fail "no package $p in $debs_dir"
        fi
        debs="$debs $f"
done

if command -v lintian >/dev/null; then
        changes=$(ls "$debs_dir"/*.changes 2>/dev/null | head -n 1 || true)
        # lintian refuses nothing as root but says so; its tags are what count.
        out=$(lintian --tag-display-limit 0 ${changes:-$debs} 2>&1 | grep -v 'running with root privileges' || true)
        [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/    lintian: /'
        if printf '%s\n' "$out" | grep -q '^E: '; then
                fail "lintian reports errors"
        fi
        ok "lintian: no errors ($(printf '%s\n' "$out" | grep -c '^W: ' || true) warnings, listed in docs/packaging.md)"
else
        say "lintian is not installed (scripts/install-deps --test): not run"
fi

# -------------------------------------------------------------- 2. install
# Only the packages built here may be installed: anything else apt would
# pull in could not be told apart from the machine's own packages later.
sim=$(apt-get install -s --no-install-recommends $debs 2>&1) || { printf '%s\n' "$sim" >&2; fail "apt-get cannot install the packages"; }
extra=$(printf '%s\n' "$sim" | sed -n 's/^Inst \([^ ]*\) .*/\1/p' | grep -vxE 'secd|libsecclient1|libsecclient-dev|secmsg' || true)
[ -z "$extra" ] || fail "installing would also pull in: $(echo $extra) (install them first: scripts/install-deps --test)"
apt-get install -y -q --no-install-recommends $debs >"$tmp/apt-install.log" 2>&1 ||
        { cat "$tmp/apt-install.log" >&2; fail "apt-get install failed"; }
ok "installed:$(for f in $debs; do printf ' %s' "$(basename "$f")"; done)"

# User and groups (sysusers.d through dh_installsysusers).
IFS=: read -r _ _ secd_uid secd_gid _ secd_home secd_shell < <(getent passwd secd) || fail "no user secd"
[ "$secd_home" = /var/lib/secd ] || fail "user secd has home $secd_home, not /var/lib/secd"
case "$secd_shell" in */nologin|*/false) ;; *) fail "user secd has a login shell: $secd_shell" ;; esac
[ "$secd_uid" -lt 1000 ] || fail "user secd is not a system user (uid $secd_uid)"
[ "$(getent group secd | cut -d: -f3)" = "$secd_gid" ] || fail "user secd's primary group is not secd"
admin_gid=$(getent group secd-admin | cut -d: -f3) || fail "no group secd-admin"
ok "user secd (uid $secd_uid, home /var/lib/secd, $secd_shell), groups secd and secd-admin ($admin_gid)"

# Files: path, mode, owner.
check_file() {
        local path=$1 mode=$2 owner=${3:-root:root} got
        got=$(stat -c '%a %U:%G' "$path" 2>/dev/null) || fail "$path is missing"
        [ "$got" = "$mode $owner" ] || fail "$path is $got, expected $mode $owner"
}
unitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
check_file /usr/sbin/secd 755
check_file /usr/bin/secctl 755
for u in secd.service secd.socket secd-enroll.socket secd-control.socket secd-tcp.socket; do
        check_file "$unitdir/$u" 644
done
check_file /usr/lib/sysusers.d/secd.conf 644
check_file /usr/lib/tmpfiles.d/secd.conf 644
check_file /etc/secd 755
check_file /etc/secd/secd.conf 644
for m in man8/secd.8 man8/secctl.8 man5/secd.conf.5 man3/libsecclient.3; do
        check_file "/usr/share/man/$m.gz" 644
done
check_file /usr/share/bash-completion/completions/secctl 644
check_file "/usr/lib/$multiarch/libsecclient.so.1" 777        # a link
[ "$(readlink -f "/usr/lib/$multiarch/libsecclient.so")" = "$(readlink -f "/usr/lib/$multiarch/libsecclient.so.1")" ] ||
        fail "libsecclient.so does not point at libsecclient.so.1"
[ "$(objdump -p "/usr/lib/$multiarch/libsecclient.so.1" | awk '$1 == "SONAME" { print $2 }')" = libsecclient.so.1 ] ||
        fail "libsecclient.so.1 has another SONAME"
check_file /usr/include/secclient.h 644
check_file "/usr/lib/$multiarch/pkgconfig/secclient.pc" 644
check_file "/usr/lib/$multiarch/cmake/secclient/secclientConfig.cmake" 644
[ "$(pkg-config --modversion secclient)" = "$version" ] || fail "pkg-config: secclient is not version $version"
dpkg-query -W -f='${Conffiles}\n' secd | grep -q '^ /etc/secd/secd.conf ' || fail "/etc/secd/secd.conf is not a conffile"
grep -q '^#state_dir = /var/lib/secd' /etc/secd/secd.conf || fail "/etc/secd/secd.conf is not the commented default"
check_file /usr/bin/secmsg 755
check_file /usr/share/man/man1/secmsg.1.gz 644
/usr/bin/secmsg --help >/dev/null || fail "secmsg --help failed"
ok "programs, units, sysusers/tmpfiles, man pages, completion, library, headers, .pc and CMake package in place"

# tmpfiles.d ran (dh_installtmpfiles); the three local sockets are enabled
# (dh_installsystemd, deb-systemd-helper), the TCP socket is not.
check_file /run/secd 755
for u in secd.socket secd-enroll.socket secd-control.socket; do
        [ -L "/etc/systemd/system/sockets.target.wants/$u" ] || fail "$u is not enabled"
done
[ ! -e /etc/systemd/system/sockets.target.wants/secd-tcp.socket ] || fail "secd-tcp.socket is enabled"
out=$(systemd-analyze verify --man=no "$unitdir"/secd.service "$unitdir"/secd*.socket 2>&1) ||
        fail "systemd-analyze verify on the installed units: $out"
[ -z "$out" ] || fail "systemd-analyze verify on the installed units: $out"
ok "/run/secd 0755; secd.socket, secd-enroll.socket, secd-control.socket enabled, secd-tcp.socket not; units verify"

# The examples of libsecclient-dev build against the installed library,
# through the CMake package (ping) and pkg-config (ping-pc).
PKG_CONFIG_LIBDIR="/usr/lib/$multiarch/pkgconfig:/usr/lib/pkgconfig:/usr/share/pkgconfig" \
        cmake -S /usr/share/doc/libsecclient-dev/examples -B "$tmp/examples" \
              -Dsecclient_DIR="/usr/lib/$multiarch/cmake/secclient" >"$tmp/examples.log" 2>&1 &&
        cmake --build "$tmp/examples" >>"$tmp/examples.log" 2>&1 ||
        { cat "$tmp/examples.log" >&2; fail "the installed examples do not build"; }
for e in ping ping-pc; do
        used=$(ldd "$tmp/examples/$e" | awk '$1 == "libsecclient.so.1" { print $3 }')
        [ -n "$used" ] && [ "$(readlink -f "$used")" = "$(readlink -f "/usr/lib/$multiarch/libsecclient.so.1")" ] ||
                fail "$e does not use the installed libsecclient.so.1: ${used:-none}"
done
ok "installed examples build with find_package(secclient) and pkg-config"

# ---------------------------------------------------------------- 3. start
unit_get() { # unit key: last value, as systemd reads single-valued keys
        sed -n "s/^$2=//p" "$unitdir/$1" | tail -n 1
}
listen=() names=()
for u in secd.socket secd-enroll.socket secd-control.socket; do
        listen+=("$(unit_get "$u" ListenStream)")
        names+=("$(unit_get "$u" FileDescriptorName)")
done
exec_start=$(unit_get secd.service ExecStart)
svc_user=$(unit_get secd.service User)
svc_group=$(unit_get secd.service Group)
svc_umask=$(unit_get secd.service UMask)
ambient=$(unit_get secd.service AmbientCapabilities)
bounding=$(unit_get secd.service CapabilityBoundingSet)
state_dir=/var/lib/$(unit_get secd.service StateDirectory)
state_mode=$(unit_get secd.service StateDirectoryMode)
[ "$ambient" = "$bounding" ] || fail "secd.service: ambient ($ambient) and bounding ($bounding) sets differ"
[ "$(unit_get secd.service NoNewPrivileges)" = yes ] || fail "secd.service: NoNewPrivileges= is not yes"
# WatchdogSec= as systemd passes it (WATCHDOG_USEC; WATCHDOG_PID is set below).
watchdog=$(unit_get secd.service WatchdogSec)
case "$watchdog" in
*min) watchdog_usec=$(( ${watchdog%min} * 60000000 )) ;;
*ms) watchdog_usec=$(( ${watchdog%ms} * 1000 )) ;;
*s) watchdog_usec=$(( ${watchdog%s} * 1000000 )) ;;
[0-9]*) watchdog_usec=$(( watchdog * 1000000 )) ;;
*) fail "secd.service: cannot read WatchdogSec=$watchdog" ;;
esac
# PrivateNetwork=yes: an empty network namespace; the passed sockets still work.
netns=()
[ "$(unit_get secd.service PrivateNetwork)" != yes ] || netns=(unshare --net)
caps=$(for c in $ambient; do printf '+%s,' "$(echo "${c#CAP_}" | tr 'A-Z' 'a-z')"; done)
caps=${caps%,}

# StateDirectory= and StateDirectoryMode=, as systemd would create it.
install -d -m "$state_mode" -o "$svc_user" -g "$svc_group" "$state_dir"

# Our NOTIFY_SOCKET: a datagram socket only secd's user may write to. The
# listener appends each message to a file and ends itself after 10 min.
mkdir -m 0711 "$tmp/notify"
notify_sock=$tmp/notify/notify.sock
/usr/bin/python3 - "$notify_sock" "$secd_uid" "$tmp/notify/messages" <<'EOF' &
import os, signal, socket, sys
path, uid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
signal.alarm(600)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chown(path, uid, -1)
os.chmod(path, 0o600)
with open(out, "a") as f:
    while True:
        f.write(s.recv(4096).decode(errors="replace") + "\n")
        f.flush()
EOF
notify_pid=$!
wait_for 10 test -S "$notify_sock" || fail "notify listener did not start"

# The activator binds the sockets as root and execs secd on the first
# connection: as the unit's user and group (with its groups, as systemd's
# initgroups), with the unit's UMask=, in a network namespace of its own
# (PrivateNetwork=), exactly the unit's capabilities as inheritable,
# ambient and bounding set, and no new privileges. LISTEN_PID and
# WATCHDOG_PID stay right: sh, unshare and setpriv exec, they do not fork.
fdnames=$(IFS=:; echo "${names[*]}")
activate_args=()
for l in "${listen[@]}"; do activate_args+=(-l "$l"); done
systemd-socket-activate "${activate_args[@]}" --fdname="$fdnames" -E NOTIFY_SOCKET="$notify_sock" \
        -E WATCHDOG_USEC="$watchdog_usec" \
        /bin/sh -c 'umask "$1"; shift; WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"' sh "$svc_umask" \
        "${netns[@]}" setpriv --reuid="$svc_user" --regid="$svc_group" --init-groups \
                --inh-caps=-all,"$caps" --ambient-caps=-all,"$caps" --bounding-set=-all,"$caps" \
                --no-new-privs -- $exec_start \
        >"$tmp/secd.out" 2>&1 &
activator_pid=$!
for l in "${listen[@]}"; do
        wait_for 10 test -S "$l" || { cat "$tmp/secd.out" >&2; fail "systemd-socket-activate did not bind $l"; }
done
# SocketUser=, SocketGroup=, SocketMode= of each unit.
for u in secd.socket secd-enroll.socket secd-control.socket; do
        l=$(unit_get "$u" ListenStream)
        chown "$(unit_get "$u" SocketUser | sed 's/^$/root/'):$(unit_get "$u" SocketGroup | sed 's/^$/root/')" "$l"
        chmod "$(unit_get "$u" SocketMode)" "$l"
done
check_file /run/secd/secd.sock 666
check_file /run/secd/enroll.sock 666
check_file /run/secd/control.sock 660 root:secd-admin
kill -0 "$activator_pid" || fail "systemd-socket-activate exited: $(cat "$tmp/secd.out")"
ok "systemd-socket-activate holds ${fdnames//:/, } with the units' paths and modes"

# The first connection starts secd; secctl's request waits in the backlog.
status=$(timeout 30 secctl status 2>&1) || { cat "$tmp/secd.out" >&2; fail "secctl status as root: $status"; }
wait_for 20 grep -qx 'READY=1' "$tmp/notify/messages" 2>/dev/null ||
        { cat "$tmp/secd.out" >&2; fail "no READY=1 from secd"; }
ok "secd started on the first connection and sent READY=1"

secd_pid=$activator_pid
[ "$(readlink "/proc/$secd_pid/exe")" = "$exec_start" ] || fail "pid $secd_pid is not $exec_start"
ids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$secd_pid/status")
[ "$ids" = "$secd_uid $secd_uid $secd_uid $secd_uid" ] || fail "secd runs with uids $ids, not $secd_uid"
capmask=$(printf '%016x' $(( (1 << 2) | (1 << 19) )))     # CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE
for k in CapEff CapPrm CapAmb CapBnd; do
        v=$(awk -v k="$k:" '$1 == k { print $2 }' "/proc/$secd_pid/status")
        [ "$v" = "$capmask" ] || fail "secd's $k is $v, expected $capmask (CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH)"
done
[ "$(awk '/^NoNewPrivs:/ { print $2 }' "/proc/$secd_pid/status")" = 1 ] || fail "secd may gain privileges"
if [ ${#netns[@]} -gt 0 ]; then
        [ "$(readlink "/proc/$secd_pid/ns/net")" != "$(readlink /proc/self/ns/net)" ] ||
                fail "secd is in the host's network namespace despite PrivateNetwork=yes"
fi
[ "$(find /run/secd -mindepth 1 | sort | tr '\n' ' ')" = "/run/secd/control.sock /run/secd/enroll.sock /run/secd/secd.sock " ] ||
        fail "secd bound sockets of its own: $(ls /run/secd)"
check_file "$state_dir" 700 "$svc_user:$svc_group"
check_file "$state_dir/secd.db" 600 "$svc_user:$svc_group"
check_file "$state_dir/ca.key" 600 "$svc_user:$svc_group"
ok "secd runs as $svc_user with CapEff=CapAmb=CapBnd=$capmask, NoNewPrivs, ${netns[*]:+own network namespace, }state in $state_dir"

# ------------------------------------------------------------------ 4. use
printf '%s\n' "$status" | grep -q enforce || fail "secctl status does not say enforce: $status"
nobody=$(id -u nobody)
nogroup=$(id -g nobody)
as_admin=(setpriv --reuid="$nobody" --regid="$nogroup" --groups="$admin_gid" --)
as_nobody=(setpriv --reuid="$nobody" --regid="$nogroup" --clear-groups --)
out=$(timeout 30 "${as_admin[@]}" secctl status 2>&1) || fail "secctl status as a secd-admin member: $out"
rc=0
out=$(timeout 30 "${as_nobody[@]}" secctl status 2>&1) || rc=$?
[ "$rc" -ne 0 ] || fail "secctl status without secd-admin succeeded: $out"
ok "secctl status through /run/secd/control.sock: root and secd-admin yes, others no (exit $rc)"

# The client runs as nobody from a directory nobody can read; the refused
# copy differs by one byte appended (a different SHA-256, same program).
install -d -m 0755 "$tmp/bin"
install -m 0755 "$tmp/examples/ping-pc" "$tmp/bin/app"
install -m 0755 "$tmp/bin/app" "$tmp/bin/app-modified"
printf '\0' >>"$tmp/bin/app-modified"
bad_sha=$(sha256sum "$tmp/bin/app-modified" | cut -d' ' -f1)

rc=0
out=$(timeout 30 "${as_nobody[@]}" "$tmp/bin/app" 2>&1) || rc=$?
[ "$rc" -ne 0 ] || fail "a client was admitted with no rule at all: $out"
ok "no rule: the client is refused (exit $rc: $(printf '%s' "$out" | head -n 1))"

rule=$(secctl policy allow --uid "$nobody" --binary "$tmp/bin/app" --comment "deb-smoke") ||
        fail "secctl policy allow failed"
secctl policy test --uid "$nobody" --binary "$tmp/bin/app" >/dev/null || fail "policy test denies the allowed binary"
rc=0
secctl policy test --uid "$nobody" --binary "$tmp/bin/app-modified" >/dev/null || rc=$?
[ "$rc" -eq 3 ] || fail "policy test on the modified copy: exit $rc, expected 3 (denied)"
ok "rule $rule allows uid $nobody running $tmp/bin/app"

out=$(timeout 60 "${as_nobody[@]}" "$tmp/bin/app" 2>&1) || { cat "$tmp/secd.out" >&2; fail "the allowed client failed: $out"; }
printf '%s\n' "$out" | grep -q '^connected (enrolled' || fail "the allowed client did not enroll: $out"
printf '%s\n' "$out" | grep -q '^pong:' || fail "the allowed client got no PONG: $out"
ok "allowed client (uid $nobody): enrolled, mTLS, PING answered"

rc=0
out=$(timeout 60 "${as_nobody[@]}" "$tmp/bin/app-modified" 2>&1) || rc=$?
[ "$rc" -ne 0 ] || fail "the modified copy was admitted: $out"
printf '%s\n' "$out" | grep -q '^pong:' && fail "the modified copy got a PONG: $out"
# The store's writer thread commits audit rows shortly after the decision.
audited() { secctl --json audit --limit 50 | grep -q "$bad_sha"; }
wait_for 10 audited || fail "the refusal of $bad_sha is not in the audit trail after 10 s"
ok "modified copy refused (exit $rc: $(printf '%s' "$out" | head -n 1)), audited with its sha256"

# secmsg (its own package) runs against the installed library: its
# identity is made in a private home, and the address is 64 hex digits.
install -d -m 0700 -o "$nobody" -g "$nogroup" "$tmp/secmsg"
addr=$(timeout 30 "${as_nobody[@]}" secmsg --home "$tmp/secmsg/home" id 2>&1) || fail "secmsg id: $addr"
printf '%s\n' "$addr" | grep -qxE '[0-9a-f]{64}' || fail "secmsg id printed '$addr', not an address"
check_file "$tmp/secmsg/home" 700 "$(id -un nobody):$(id -gn nobody)"
ok "secmsg id (uid $nobody): address ${addr:0:16}..., home 0700"

# And through the installed secd's relay, once a rule admits it: the
# mailbox exists after its first recv; a message to it comes back intact.
secctl policy allow --uid "$nobody" --binary /usr/bin/secmsg --comment "deb-smoke secmsg" >/dev/null ||
        fail "secctl policy allow for secmsg failed"
secmsg_as_nobody=("${as_nobody[@]}" secmsg --home "$tmp/secmsg/home")
out=$(timeout 30 "${secmsg_as_nobody[@]}" recv 2>&1) || fail "secmsg recv (first, registers the mailbox): $out"
out=$(printf 'deb-smoke hello\n' | timeout 30 "${secmsg_as_nobody[@]}" send --to "$addr" 2>&1) ||
        fail "secmsg send: $out"
out=$(timeout 30 "${secmsg_as_nobody[@]}" recv --wait 5 --max 1 2>"$tmp/secmsg/recv.err") ||
        fail "secmsg recv: $(cat "$tmp/secmsg/recv.err")"
[ "$out" = "deb-smoke hello" ] || fail "secmsg recv returned '$out', not what was sent"
ok "secmsg send + recv through the relay: the message came back intact"

# ----------------------------------------------------------------- 5. stop
# secd pets the watchdog at half of WatchdogSec=, or systemd would kill it.
wait_for $(( watchdog_usec / 1000000 )) grep -qx 'WATCHDOG=1' "$tmp/notify/messages" ||
        fail "no WATCHDOG=1 within WatchdogSec=$watchdog"
ok "WATCHDOG=1 within WatchdogSec=$watchdog"
kill -TERM "$secd_pid"
wait_for 30 gone "$secd_pid" || fail "secd did not stop within 30 s (TimeoutStopSec=)"
rc=0
wait "$secd_pid" || rc=$?
activator_pid=
[ "$rc" -eq 0 ] || { cat "$tmp/secd.out" >&2; fail "secd exited with status $rc after SIGTERM"; }
grep -qx 'STOPPING=1' "$tmp/notify/messages" || fail "no STOPPING=1 from secd"
ok "SIGTERM: STOPPING=1, exit status 0"
kill_pid "$notify_pid"
notify_pid=

# Installing the same packages again runs the upgrade paths of the
# maintainer scripts (prerm upgrade, postinst configure OLD-VERSION)
# without systemd; an administrator's edit of secd.conf and the state stay.
printf '# deb-smoke: edited by the administrator\n' >>/etc/secd/secd.conf
dpkg -i $debs >"$tmp/dpkg-reinstall.log" 2>&1 </dev/null || { cat "$tmp/dpkg-reinstall.log" >&2; fail "reinstalling failed"; }
grep -qx '# deb-smoke: edited by the administrator' /etc/secd/secd.conf || fail "reinstalling replaced the edited secd.conf"
[ -f "$state_dir/secd.db" ] || fail "reinstalling dropped $state_dir/secd.db"
[ -L /etc/systemd/system/sockets.target.wants/secd.socket ] || fail "reinstalling disabled secd.socket"
ok "reinstall (upgrade path of the maintainer scripts): edited secd.conf, state and enabled sockets kept"

installed=$(for p in $packages; do [ "$(pkg_status "$p")" != "install ok installed" ] || printf '%s ' "$p"; done)
apt-get remove -y -q $installed >"$tmp/apt-remove.log" 2>&1 || { cat "$tmp/apt-remove.log" >&2; fail "apt-get remove failed"; }
[ ! -e /usr/sbin/secd ] && [ ! -e /usr/bin/secctl ] && [ ! -e "$unitdir/secd.service" ] ||
        fail "files are left after remove"
[ -f "$state_dir/secd.db" ] && [ -f "$state_dir/ca.key" ] || fail "remove dropped the state in $state_dir"
[ -f /etc/secd/secd.conf ] || fail "remove dropped the conffile /etc/secd/secd.conf"
[ ! -e /run/secd ] || fail "/run/secd is left after remove: $(ls -A /run/secd)"
ok "remove ($installed): programs gone; $state_dir and /etc/secd/secd.conf kept"

dpkg --purge $installed >"$tmp/dpkg-purge.log" 2>&1 || { cat "$tmp/dpkg-purge.log" >&2; fail "dpkg --purge failed"; }
[ ! -e "$state_dir" ] || fail "purge left $state_dir"
[ ! -e /etc/secd ] || fail "purge left /etc/secd: $(ls -A /etc/secd)"
left=$(find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled -name '*secd*' 2>/dev/null || true)
[ -z "$left" ] || fail "purge left unit links or state: $left"
for p in $packages; do
        [ -z "$(pkg_status "$p")" ] || fail "$p is still known to dpkg: $(pkg_status "$p")"
done
ok "purge: $state_dir, /etc/secd and the unit links gone"
