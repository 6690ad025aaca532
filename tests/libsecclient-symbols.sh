#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Usage: libsecclient-symbols.sh LIBSECCLIENT.so secclient.sym
# The dynamic symbols the library defines must be exactly the global names
# of the version script: nothing missing, nothing from secd-common leaking.
set -eu
lib=$1
sym=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVWiu]$/ && $3 !~ /^SECCLIENT_/ { sub(/@.*/, "", $3); print $3 }' \
        | sort -u >"$tmp/exported"
sed -n '/global:/,/local:/p' "$sym" | sed -e '1d;$d' -e 's/[[:space:];]//g' -e '/^$/d' \
        | sort -u >"$tmp/listed"

if ! cmp -s "$tmp/exported" "$tmp/listed"; then
        echo "exported symbols differ from $sym (< exported, > listed):" >&2
        diff "$tmp/exported" "$tmp/listed" >&2 || true
        exit 1
fi
if readelf -d "$lib" | grep -q 'SONAME.*libsecclient\.so\.1\]'; then
        :
else
        echo "SONAME is not libsecclient.so.1" >&2
        exit 1
fi
echo "$(wc -l <"$tmp/exported") exported symbols match $sym"
