#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Full and resumed mTLS handshakes: secd (Unix and TCP data endpoints, with
# admission) against gnutls-serv and stunnel4 with the same certificates,
# key exchange and cipher, plus the crypto floor (bench/README.md).
#
#   bench/run-handshake-bench.sh BUILD_DIR [--count N] [--seconds S] [--baseline-only]
#
# BUILD_DIR was configured with -DSECD_BENCH=ON (Release): it holds
# bench/bench-handshake, secd/secd and secctl/secctl. Needs gnutls-bin
# (gnutls-serv, certtool) and stunnel4 (apt-get install stunnel4 gnutls-bin).
# Run as root, the benchmark runs in a new network namespace (gnutls-serv
# cannot bind to loopback only; in the namespace nothing else can reach it).
# Every server is started here and stopped by its pid. Prints numbers;
# fails only if something did not work.
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR [--count N] [--seconds S] [--baseline-only]" >&2; exit 2; }

[ $# -ge 1 ] || usage
BUILD=$(realpath "$1"); shift
COUNT=2000
SECS=20
BASELINE_ONLY=0
while [ $# -gt 0 ]; do
        case "$1" in
        --count) COUNT=${2:?}; shift 2 ;;
        --seconds) SECS=${2:?}; shift 2 ;;
        --baseline-only) BASELINE_ONLY=1; shift ;;
        *) usage ;;
        esac
done

BENCH=$BUILD/bench/bench-handshake
SECD=$BUILD/secd/secd
SECCTL=$BUILD/secctl/secctl
[ -x "$BENCH" ] || { echo "$BENCH missing: configure with -DSECD_BENCH=ON and build bench-handshake" >&2; exit 1; }

missing=()
command -v gnutls-serv >/dev/null || missing+=(gnutls-bin)
command -v certtool >/dev/null || missing+=(gnutls-bin)
STUNNEL=$(command -v stunnel4 || command -v stunnel || true)
[ -n "$STUNNEL" ] || missing+=(stunnel4)
if [ ${#missing[@]} -gt 0 ]; then
        echo "missing: ${missing[*]} -- install with: apt-get install ${missing[*]}" >&2
        exit 1
fi

# Root: re-run inside a fresh network namespace with only lo, up.
if [ "$(id -u)" = 0 ] && [ -z "${BENCH_IN_NETNS:-}" ] && command -v unshare >/dev/null; then
        exec env BENCH_IN_NETNS=1 unshare --net -- bash -c 'ip link set lo up && exec "$0" "$@"' \
                "$0" "$BUILD" --count "$COUNT" --seconds "$SECS" $([ $BASELINE_ONLY = 1 ] && echo --baseline-only)
fi
if [ -z "${BENCH_IN_NETNS:-}" ]; then
        echo "note: not root: gnutls-serv listens on every address of this host for the run" >&2
fi

TMP=$(mktemp -d /tmp/bench-handshake-XXXXXX)
chmod 700 "$TMP"
PIDS=()
cleanup() {
        local p
        for p in "${PIDS[@]}"; do
                kill "$p" 2>/dev/null || true
        done
        for p in "${PIDS[@]}"; do
                wait "$p" 2>/dev/null || true
        done
        rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
        local p
        for _ in $(seq 1 50); do
                p=$((20000 + RANDOM % 30000))
                if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
                        echo "$p"
                        return
                fi
        done
        echo "no free port" >&2
        exit 1
}

# Wait (bounded) until something listens on 127.0.0.1:PORT or the Unix path exists.
wait_listen() {
        local what=$1 pid=$2
        for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || { echo "server for $what died" >&2; return 1; }
                case "$what" in
                /*) [ -S "$what" ] && return 0 ;;
                *) ss -Hltn "sport = :${what##*:}" 2>/dev/null | grep -q . && return 0 ;;
                esac
                sleep 0.1
        done
        echo "nothing listens on $what after 10 s" >&2
        return 1
}

PRIORITY="NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-X25519:-CIPHER-ALL:+AES-128-GCM"
C=$TMP/certs
mkdir -m 700 "$C"

# ---- certificates ------------------------------------------------------
SECD_PID=
if [ $BASELINE_ONLY = 0 ]; then
        [ -x "$SECD" ] && [ -x "$SECCTL" ] || { echo "$SECD or $SECCTL missing (or use --baseline-only)" >&2; exit 1; }
        SECD_PORT=$(free_port)
        S=$TMP/secd
        mkdir -m 700 "$S"
        (cd "$S" && exec "$SECD" --dev --state-dir "$S/state" --runtime-dir "$S/run" \
                --tcp-listen="127.0.0.1:$SECD_PORT" --log-level=warning) >"$S/log" 2>&1 &
        SECD_PID=$!
        PIDS+=("$SECD_PID")
        wait_listen "$S/run/secd.sock" "$SECD_PID" || { cat "$S/log" >&2; exit 1; }
        wait_listen "127.0.0.1:$SECD_PORT" "$SECD_PID" || { cat "$S/log" >&2; exit 1; }
        export SECCTL_SOCKET=$S/run/control.sock
        # The server's certificate and key and the CA, from secd's state directory.
        cp "$S/state/ca.crt" "$C/ca.crt"
        cp "$S/state/server.crt" "$C/server.crt"
        install -m 600 "$S/state/server.key" "$C/server.key"
        # A remote client certificate for the TCP endpoint (and the baselines).
        "$SECCTL" cert issue bench --out "$C/remote" >/dev/null
        cp "$C/remote/cert.pem" "$C/client.crt"
        install -m 600 "$C/remote/key.pem" "$C/client.key"
        "$SECCTL" policy add --cert bench --endpoint tcp --allow >/dev/null
else
        cat >"$C/ca.tmpl" <<EOF
cn = "bench CA"
ca
cert_signing_key
crl_signing_key
expiration_days = 2
EOF
        cat >"$C/server.tmpl" <<EOF
cn = "secd"
dns_name = "localhost"
ip_address = "127.0.0.1"
tls_www_server
signing_key
expiration_days = 2
EOF
        cat >"$C/client.tmpl" <<EOF
cn = "bench"
uri = "secd://remote/bench"
tls_www_client
signing_key
expiration_days = 2
EOF
        for k in ca server client; do
                (umask 077 && certtool --generate-privkey --key-type ed25519 --outfile "$C/$k.key" 2>/dev/null)
        done
        certtool --generate-self-signed --load-privkey "$C/ca.key" --template "$C/ca.tmpl" \
                --outfile "$C/ca.crt" 2>/dev/null
        for k in server client; do
                certtool --generate-certificate --load-privkey "$C/$k.key" --load-ca-certificate "$C/ca.crt" \
                        --load-ca-privkey "$C/ca.key" --template "$C/$k.tmpl" --outfile "$C/$k.crt" 2>/dev/null
        done
fi

# ---- gnutls-serv ---------------------------------------------------------
GS_PORT=$(free_port)
gnutls-serv --port "$GS_PORT" --echo --quiet --require-client-cert --verify-client-cert \
        --x509cafile "$C/ca.crt" --x509certfile "$C/server.crt" --x509keyfile "$C/server.key" \
        --priority "$PRIORITY" >/dev/null 2>"$TMP/gnutls-serv.log" &
GS_PID=$!
PIDS+=("$GS_PID")

# ---- stunnel4 in front of an echo server ---------------------------------
ECHO_PORT=$(free_port)
"$BENCH" echo-server --listen "127.0.0.1:$ECHO_PORT" &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
ST_PORT=$(free_port)
cat >"$TMP/stunnel.conf" <<EOF
foreground = yes
pid =
debug = 3
[bench]
accept = 127.0.0.1:$ST_PORT
connect = 127.0.0.1:$ECHO_PORT
cert = $C/server.crt
key = $C/server.key
CAfile = $C/ca.crt
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.3
sslVersionMax = TLSv1.3
ciphersuites = TLS_AES_128_GCM_SHA256
curves = X25519
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
EOF
"$STUNNEL" "$TMP/stunnel.conf" >"$TMP/stunnel.log" 2>&1 &
ST_PID=$!
PIDS+=("$ST_PID")

wait_listen "127.0.0.1:$GS_PORT" "$GS_PID" || { cat "$TMP/gnutls-serv.log" >&2; exit 1; }
wait_listen "127.0.0.1:$ECHO_PORT" "$ECHO_PID"
wait_listen "127.0.0.1:$ST_PORT" "$ST_PID" || { cat "$TMP/stunnel.log" >&2; exit 1; }

# ---- runs ----------------------------------------------------------------
RESULTS=$TMP/results
: >"$RESULTS"
run_client() {         # label endpoint frame pid [extra args]
        local label=$1 ep=$2 frame=$3 pid=$4; shift 4
        echo "== $label ($ep)" >&2
        "$BENCH" client --connect "$ep" --ca "$C/ca.crt" --frame "$frame" --server-pid "$pid" \
                --count "$COUNT" --seconds "$SECS" "$@" | sed "s|^|$label |" | tee -a "$RESULTS" >&2
}

"$BENCH" floor --ca "$C/ca.crt" --cert "$C/server.crt" --key "$C/server.key" \
        --client-cert "$C/client.crt" --client-key "$C/client.key" | sed 's|^|crypto |' | tee -a "$RESULTS" >&2
run_client gnutls-serv "127.0.0.1:$GS_PORT" echo "$GS_PID" --cert "$C/client.crt" --key "$C/client.key"
run_client stunnel4 "127.0.0.1:$ST_PORT" echo "$ST_PID" --cert "$C/client.crt" --key "$C/client.key"
if [ -n "$SECD_PID" ]; then
        run_client secd-tcp "127.0.0.1:$SECD_PORT" ping "$SECD_PID" --cert "$C/client.crt" --key "$C/client.key"
        run_client secd-unix "unix:$S/run/secd.sock" ping "$SECD_PID" --enroll "$S/run/enroll.sock"
fi
"$BENCH" floor --ca "$C/ca.crt" --cert "$C/server.crt" --key "$C/server.key" \
        --client-cert "$C/client.crt" --client-key "$C/client.key" | sed 's|^|crypto2 |' | tee -a "$RESULTS" >&2

# ---- table and ratios -----------------------------------------------------
echo
echo "TLS 1.3, X25519, AES-128-GCM; server key $(certtool -i --infile "$C/server.crt" | sed -n 's/.*Subject Public Key Algorithm: //p' | head -1)," \
        "client key $(certtool -i --infile "$C/client.crt" | sed -n 's/.*Subject Public Key Algorithm: //p' | head -1);" \
        "$(nproc) CPUs; up to $COUNT handshakes or $SECS s per series; 1 client process"
awk -v secs="$SECS" '
function val(line, key,   n, i, kv) {
        n = split(line, f, " ")
        for (i = 1; i <= n; i++) { if (split(f[i], kv, "=") == 2 && kv[1] == key) return kv[2] }
        return ""
}
{
        if ($1 == "crypto" || $1 == "crypto2") {
                if ($2 == "floor") { fl[++nf] = val($0, "total_us"); x = val($0, "x25519_us"); s = val($0, "sign_us"); v = val($0, "verify_cv_us"); c = val($0, "verify_chain_us"); alg = val($0, "server_sign") }
                next
        }
        t = $1; ph = $2
        if (!(t in seen)) { seen[t] = 1; order[++nt] = t }
        cpu[t, ph] = val($0, "server_cpu_us_per_hs"); rate[t, ph] = val($0, "hs_per_s")
        res[t, ph] = val($0, "resumed"); n[t, ph] = val($0, "n")
}
END {
        floor_us = (fl[1] + fl[2]) / 2
        printf "\n%-12s %14s %10s %8s | %14s %10s %8s %9s\n", "server", "full CPU µs/hs", "full hs/s", "n", "res. CPU µs/hs", "res. hs/s", "n", "resumed"
        for (i = 1; i <= nt; i++) {
                t = order[i]
                printf "%-12s %14.1f %10.1f %8d | %14.1f %10.1f %8d %9d\n", t, cpu[t, "full"], rate[t, "full"], n[t, "full"], cpu[t, "resumed"], rate[t, "resumed"], n[t, "resumed"], res[t, "resumed"]
        }
        printf "\ncrypto floor (full handshake, server side): %.1f µs = X25519 keygen+derive %.1f + sign (%s) %.1f + CertificateVerify %.1f + chain %.1f (runs: %.1f, %.1f)\n", floor_us, x, alg, s, v, c, fl[1], fl[2]
        gs = "gnutls-serv"; st = "stunnel4"
        printf "\n%-12s %-26s %8s %8s\n", "", "ratio (server CPU per hs)", "value", "target"
        printf "%-12s %-26s %8.2f %8s\n", st, "full vs gnutls-serv", cpu[st, "full"] / cpu[gs, "full"], "-"
        for (i = 1; i <= nt; i++) {
                t = order[i]
                if (t !~ /^secd/) continue
                printf "%-12s %-26s %8.2f %8s %s\n", t, "full vs gnutls-serv", cpu[t, "full"] / cpu[gs, "full"], "<= 0.8", (cpu[t, "full"] / cpu[gs, "full"] <= 0.8 ? "met" : "MISSED")
                printf "%-12s %-26s %8.2f %8s %s\n", t, "full vs stunnel4", cpu[t, "full"] / cpu[st, "full"], "<= 0.5", (cpu[t, "full"] / cpu[st, "full"] <= 0.5 ? "met" : "MISSED")
                printf "%-12s %-26s %8.2f %8s %s\n", t, "full vs crypto floor", cpu[t, "full"] / floor_us, "<= 2", (cpu[t, "full"] / floor_us <= 2 ? "met" : "MISSED")
                printf "%-12s %-26s %8.2f %8s %s\n", t, "resumed vs gnutls-serv", cpu[t, "resumed"] / cpu[gs, "resumed"], "<= 0.9", (cpu[t, "resumed"] / cpu[gs, "resumed"] <= 0.9 ? "met" : "MISSED")
                printf "%-12s %-26s %8.2f\n", t, "hs/s full vs gnutls-serv", rate[t, "full"] / rate[gs, "full"]
                printf "%-12s %-26s %8.2f\n", t, "hs/s res. vs gnutls-serv", rate[t, "resumed"] / rate[gs, "resumed"]
        }
        printf "%-12s %-26s %8.2f\n", gs, "full vs crypto floor", cpu[gs, "full"] / floor_us
        printf "%-12s %-26s %8.2f\n", st, "full vs crypto floor", cpu[st, "full"] / floor_us
}' "$RESULTS"
