#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Usage: libsecclient-examples.sh CMAKE BUILD_DIR EXAMPLES_SRC C_COMPILER [C_FLAGS [SECD]]
# Install the project into a temporary DESTDIR, build examples/ against the
# installed libsecclient (CMake package and pkg-config), and run the
# programs far enough to prove they load the installed library. With SECD,
# also start `secd --dev` in the temporary directory and run ping and
# handoff against it.
set -eu
cmake=$1
build=$2
src=$3
cc=$4
cflags=${5:-}
secd=${6:-}
tmp=$(mktemp -d)
secd_pid=
cleanup() {
        if [ -n "$secd_pid" ]; then
                kill "$secd_pid" 2>/dev/null || true
                wait "$secd_pid" 2>/dev/null || true
        fi
        rm -rf "$tmp"
}
trap cleanup EXIT

DESTDIR=$tmp/root "$cmake" --install "$build" >"$tmp/install.log" 2>&1 ||
        { cat "$tmp/install.log" >&2; exit 1; }

pc=$(find "$tmp/root" -name secclient.pc | head -n1)
config=$(find "$tmp/root" -name secclientConfig.cmake | head -n1)
lib=$(find "$tmp/root" -name 'libsecclient.so.1' | head -n1)
[ -n "$pc" ] && [ -n "$config" ] && [ -n "$lib" ] ||
        { echo "secclient.pc, secclientConfig.cmake or libsecclient.so.1 not installed" >&2; exit 1; }
[ -n "$(find "$tmp/root" -name secclient.h)" ] || { echo "secclient.h not installed" >&2; exit 1; }
[ -n "$(find "$tmp/root" -name libsecclient.3)" ] || { echo "libsecclient.3 not installed" >&2; exit 1; }

# secclient.pc names the configured prefix; under DESTDIR it moved: point
# prefix= at the staged tree (what a packager's pkg-config sysroot does).
# (--define-prefix would also rewrite gnutls.pc and json-c.pc.)
prefix=$(sed -n 's/^prefix=//p' "$pc")
mkdir "$tmp/pc"
sed "s|^prefix=.*|prefix=$tmp/root$prefix|" "$pc" >"$tmp/pc/secclient.pc"

# Only the install tree: nothing from the build or source tree may leak in.
PKG_CONFIG_PATH=$tmp/pc \
"$cmake" -S "$src" -B "$tmp/build" \
        -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$cflags" \
        -DCMAKE_PREFIX_PATH="$tmp/root$prefix" \
        -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$tmp/configure.log" 2>&1 ||
        { cat "$tmp/configure.log" >&2; exit 1; }
"$cmake" --build "$tmp/build" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; exit 1; }

# The programs run against the installed library and fail cleanly without secd.
export LD_LIBRARY_PATH
LD_LIBRARY_PATH=$(dirname "$lib")
for prog in ping ping-pc; do
        out=$(SECD_SOCKET="$tmp/none/secd.sock" SECD_ENROLL_SOCKET="$tmp/none/enroll.sock" \
                "$tmp/build/$prog" 2>&1) && { echo "$prog succeeded without secd" >&2; exit 1; }
        case $out in
        *"No such socket"*) ;;
        *) echo "$prog: unexpected output: $out" >&2; exit 1 ;;
        esac
        ldd "$tmp/build/$prog" | grep -q "$lib" || { echo "$prog does not use the installed library" >&2; exit 1; }
done
for prog in handoff handoff-pc; do
        out=$(SECD_ENROLL_SOCKET="$tmp/none/enroll.sock" "$tmp/build/$prog" 2>&1) &&
                { echo "$prog succeeded without secd" >&2; exit 1; }
        case $out in
        *"enroll"*) ;;
        *) echo "$prog: unexpected output: $out" >&2; exit 1 ;;
        esac
done
echo "examples built against the installed libsecclient ($lib) and run"

[ -n "$secd" ] || exit 0
mkdir "$tmp/secd"
"$secd" --dev --state-dir "$tmp/secd/state" --runtime-dir "$tmp/secd/run" >"$tmp/secd.log" 2>&1 &
secd_pid=$!
i=0
while [ ! -S "$tmp/secd/run/secd.sock" ] || [ ! -S "$tmp/secd/run/enroll.sock" ]; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$secd_pid" 2>/dev/null; then
                echo "secd --dev did not come up:" >&2
                cat "$tmp/secd.log" >&2
                exit 1
        fi
        sleep 0.1
done
export SECD_SOCKET="$tmp/secd/run/secd.sock" SECD_ENROLL_SOCKET="$tmp/secd/run/enroll.sock"
out=$("$tmp/build/ping" "$SECD_SOCKET" 3 2>&1) ||
        { echo "ping against secd --dev failed: $out" >&2; cat "$tmp/secd.log" >&2; exit 1; }
echo "$out"
out=$("$tmp/build/handoff" 2>&1) || { echo "handoff against secd --dev failed: $out" >&2; cat "$tmp/secd.log" >&2; exit 1; }
echo "$out"
