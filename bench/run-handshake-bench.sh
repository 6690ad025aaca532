#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Full and resumed mTLS handshakes: secd (Unix and TCP data endpoints, with
# admission) against gnutls-serv and stunnel4 with the same certificates,
# key exchange and cipher, plus the crypto floor (bench/README.md).
#
#   bench/run-handshake-bench.sh BUILD_DIR [--count N] [--seconds S] [--rounds R] [--baseline-only]
#
# BUILD_DIR was configured with -DSECD_BENCH=ON (Release): it holds
# bench/bench-handshake, secd/secd and secctl/secctl. Needs gnutls-bin
# (gnutls-serv, certtool) and stunnel4 (apt-get install stunnel4 gnutls-bin).
# Run as root, the benchmark runs in a new network namespace (gnutls-serv
# cannot bind to loopback only; in the namespace nothing else can reach it).
# Every server is started here and stopped by its pid. Prints numbers;
# fails only if something did not work.
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR [--count N] [--seconds S] [--rounds R] [--baseline-only]" >&2; exit 2; }

[ $# -ge 1 ] || usage
BUILD=$(realpath "$1"); shift
COUNT=2000
SECS=20
ROUNDS=3
BASELINE_ONLY=0
while [ $# -gt 0 ]; do
        case "$1" in
        --count) COUNT=${2:?}; shift 2 ;;
        --seconds) SECS=${2:?}; shift 2 ;;
        --rounds) ROUNDS=${2:?}; shift 2 ;;
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
                "$0" "$BUILD" --count "$COUNT" --seconds "$SECS" --rounds "$ROUNDS" $([ $BASELINE_ONLY = 1 ] && echo --baseline-only)
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
# secd keeps its server key in memory only, so gnutls-serv and stunnel4 get
# a server certificate from secd's own CA (its ca.key in the state
# directory) with a key of the same type and the same extensions; the
# client certificate is the one `secctl cert issue` made. Without secd
# (--baseline-only), certtool makes an Ed25519 CA like secd's.
server_template() {
        cat <<EOF
cn = "secd server"
uri = "secd://server"
dns_name = "localhost"
ip_address = "127.0.0.1"
tls_www_server
signing_key
expiration_days = 2
EOF
}
key_type() {          # the key type certtool should make for a CA certificate
        case "$(certtool -i --infile "$1" | sed -n 's/.*Subject Public Key Algorithm: //p' | head -1)" in
        *Ed25519*) echo ed25519 ;;
        *EC*) echo ecdsa ;;
        *) echo rsa ;;
        esac
}

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
        # Sockets are bound before the store and the CA open: wait until secd answers.
        for _ in $(seq 1 100); do
                "$SECCTL" status >/dev/null 2>&1 && [ -s "$S/state/ca.crt" ] && break
                kill -0 "$SECD_PID" 2>/dev/null || { cat "$S/log" >&2; exit 1; }
                sleep 0.1
        done
        CA_CRT=$S/state/ca.crt
        CA_KEY=$S/state/ca.key
        cp "$CA_CRT" "$C/ca.crt"
        # A remote client certificate for the TCP endpoint (and the baselines),
        # admitted on the tcp endpoint by its name. The --dev rule (uid) admits
        # the Unix client.
        mkdir -m 700 "$C/remote"
        "$SECCTL" cert issue bench --out "$C/remote" >/dev/null
        cp "$C/remote/bench.crt" "$C/client.crt"
        install -m 600 "$C/remote/bench.key" "$C/client.key"
        "$SECCTL" policy allow --cert bench --endpoint tcp >/dev/null
        # The Unix client enrolls itself. Where the enroll endpoint does not
        # issue (yet), it gets what enrollment would give it, made with
        # certtool from secd's CA key: a local identity naming its uid and
        # the SHA-256 of bench-handshake, TLS client purpose, random serial.
        UNIX_CREDS=(--enroll "$S/run/enroll.sock")
        UNIX_CERT_SOURCE="enrolled (io.secd.Enroll.Issue)"
        if ! "$BENCH" enroll-test --enroll "$S/run/enroll.sock" --ca "$C/ca.crt" >/dev/null 2>"$TMP/enroll.err"; then
                echo "note: enrollment failed ($(cat "$TMP/enroll.err")); the Unix client's certificate is made with certtool from secd's CA" >&2
                cat >"$C/local.tmpl" <<EOF
cn = "bench-handshake"
uri = "secd://local/uid/$(id -u)/sha256/$(sha256sum "$BENCH" | cut -d' ' -f1)"
serial = 0x$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
tls_www_client
signing_key
expiration_days = 1
EOF
                (umask 077 && certtool --generate-privkey --key-type "$(key_type "$CA_CRT")" --outfile "$C/local.key" 2>/dev/null)
                certtool --generate-certificate --load-privkey "$C/local.key" --load-ca-certificate "$CA_CRT" \
                        --load-ca-privkey "$CA_KEY" --template "$C/local.tmpl" --outfile "$C/local.crt" 2>/dev/null
                UNIX_CREDS=(--cert "$C/local.crt" --key "$C/local.key")
                UNIX_CERT_SOURCE="made with certtool from secd's CA key (enrollment failed)"
        fi
else
        cat >"$C/ca.tmpl" <<EOF
cn = "bench CA"
ca
cert_signing_key
crl_signing_key
expiration_days = 2
EOF
        cat >"$C/client.tmpl" <<EOF
cn = "bench"
uri = "secd://remote/bench"
tls_www_client
signing_key
expiration_days = 2
EOF
        for k in ca client; do
                (umask 077 && certtool --generate-privkey --key-type ed25519 --outfile "$C/$k.key" 2>/dev/null)
        done
        certtool --generate-self-signed --load-privkey "$C/ca.key" --template "$C/ca.tmpl" \
                --outfile "$C/ca.crt" 2>/dev/null
        certtool --generate-certificate --load-privkey "$C/client.key" --load-ca-certificate "$C/ca.crt" \
                --load-ca-privkey "$C/ca.key" --template "$C/client.tmpl" --outfile "$C/client.crt" 2>/dev/null
        CA_CRT=$C/ca.crt
        CA_KEY=$C/ca.key
fi
server_template >"$C/server.tmpl"
(umask 077 && certtool --generate-privkey --key-type "$(key_type "$CA_CRT")" --outfile "$C/server.key" 2>/dev/null)
certtool --generate-certificate --load-privkey "$C/server.key" --load-ca-certificate "$CA_CRT" \
        --load-ca-privkey "$CA_KEY" --template "$C/server.tmpl" --outfile "$C/server.crt" 2>/dev/null

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
# ROUNDS rounds; each round runs the floor and every server once, in turn, so
# drift of the machine touches all of them alike. Medians over the rounds.
RESULTS=$TMP/results
: >"$RESULTS"
run_client() {         # label endpoint frame pid [extra args]
        local label=$1 ep=$2 frame=$3 pid=$4; shift 4
        echo "== round $round: $label ($ep)" >&2
        "$BENCH" client --connect "$ep" --ca "$C/ca.crt" --frame "$frame" --server-pid "$pid" \
                --count "$COUNT" --seconds "$SECS" "$@" | sed "s|^|$label |" | tee -a "$RESULTS" >&2
}

for round in $(seq 1 "$ROUNDS"); do
        "$BENCH" floor --ca "$C/ca.crt" --cert "$C/server.crt" --key "$C/server.key" \
                --client-cert "$C/client.crt" --client-key "$C/client.key" | sed 's|^|crypto |' | tee -a "$RESULTS" >&2
        run_client gnutls-serv "127.0.0.1:$GS_PORT" echo "$GS_PID" --cert "$C/client.crt" --key "$C/client.key"
        run_client stunnel4 "127.0.0.1:$ST_PORT" echo "$ST_PID" --cert "$C/client.crt" --key "$C/client.key"
        if [ -n "$SECD_PID" ]; then
                run_client secd-tcp "127.0.0.1:$SECD_PORT" ping "$SECD_PID" --cert "$C/client.crt" --key "$C/client.key"
                run_client secd-unix "unix:$S/run/secd.sock" ping "$SECD_PID" "${UNIX_CREDS[@]}"
        fi
done

# ---- table and ratios -----------------------------------------------------
alg() { certtool -i --infile "$1" | sed -n 's/.*Subject Public Key Algorithm: //p' | head -1; }
echo
echo "TLS 1.3, X25519, AES-128-GCM; CA $(alg "$C/ca.crt"), server $(alg "$C/server.crt"), client $(alg "$C/client.crt");" \
        "$(nproc) CPUs; $ROUNDS rounds of up to $COUNT handshakes or $SECS s per series; 1 client process; medians"
[ -n "$SECD_PID" ] && echo "secd-unix client certificate: $UNIX_CERT_SOURCE"
awk '
function val(line, key,   n, i, kv, f) {
        n = split(line, f, " ")
        for (i = 1; i <= n; i++) { if (split(f[i], kv, "=") == 2 && kv[1] == key) return kv[2] }
        return ""
}
function median(list,   a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function add(k, v) { if (k in L) L[k] = L[k] " " v; else L[k] = v }
# Round by round (the servers of one round ran minutes apart, not hours): the ratio of each round and
# their median, shown beside the ratio of the medians (the verdict), which drift between rounds moves more.
function paired(t, base, ph,   a, b, n, i, out, list) {
        n = split(L[t, ph, "cpu"], a, " ")
        if (split(L[base, ph, "cpu"], b, " ") != n || n == 0) return ""
        for (i = 1; i <= n; i++) { list = list (i > 1 ? " " : "") sprintf("%.2f", a[i] / b[i]) }
        return sprintf("%s vs %s, paired by round: %s (median %.2f)", ph, base, list, median(list))
}
{
        if ($1 == "crypto") {
                if ($2 == "floor") { add("floor", val($0, "total_us")); add("x", val($0, "x25519_us")); add("s", val($0, "sign_us")); add("v", val($0, "verify_cv_us")); add("c", val($0, "verify_chain_us")); alg = val($0, "server_sign") }
                next
        }
        t = $1; ph = $2
        if (!(t in seen)) { seen[t] = 1; order[++nt] = t }
        add(t SUBSEP ph SUBSEP "cpu", val($0, "server_cpu_us_per_hs")); add(t SUBSEP ph SUBSEP "rate", val($0, "hs_per_s"))
        add(t SUBSEP ph SUBSEP "n", val($0, "n")); add(t SUBSEP ph SUBSEP "res", val($0, "resumed"))
        add(t SUBSEP ph SUBSEP "ccpu", val($0, "client_cpu_s") * 1e6 / val($0, "n"))
}
END {
        for (k in L) M[k] = median(L[k])
        fl = M["floor"]
        printf "\n%-11s %9s %9s %9s %6s | %9s %9s %9s %6s %7s\n", "", "full", "full", "client", "", "resumed", "resumed", "client", "", ""
        printf "%-11s %9s %9s %9s %6s | %9s %9s %9s %6s %7s\n", "server", "CPU µs", "hs/s", "CPU µs", "n", "CPU µs", "hs/s", "CPU µs", "n", "resumed"
        for (i = 1; i <= nt; i++) {
                t = order[i]
                printf "%-11s %9.1f %9.1f %9.1f %6d | %9.1f %9.1f %9.1f %6d %7d\n", t,
                        M[t, "full", "cpu"], M[t, "full", "rate"], M[t, "full", "ccpu"], M[t, "full", "n"],
                        M[t, "resumed", "cpu"], M[t, "resumed", "rate"], M[t, "resumed", "ccpu"], M[t, "resumed", "n"], M[t, "resumed", "res"]
                printf "%-11s   server CPU µs per full handshake, each round: %s\n", "", L[t, "full", "cpu"]
                printf "%-11s   server CPU µs per resumed handshake, each round: %s\n", "", L[t, "resumed", "cpu"]
        }
        printf "\ncrypto floor, full handshake (server side): %.1f µs = X25519 keygen+derive %.1f + sign (%s) %.1f + CertificateVerify %.1f + chain %.1f\n", fl, M["x"], alg, M["s"], M["v"], M["c"]
        printf "  each round: %s\n", L["floor"]
        printf "crypto floor, resumed handshake (psk_dhe_ke): X25519 keygen+derive %.1f µs\n", M["x"]
        gs = "gnutls-serv"; st = "stunnel4"
        printf "\n%-11s %-32s %7s %8s\n", "", "ratio", "value", "target"
        for (i = 1; i <= nt; i++) {
                t = order[i]
                if (t !~ /^secd/) continue
                r = M[t, "full", "cpu"] / M[gs, "full", "cpu"];      printf "%-11s %-32s %7.2f %8s %s\n", t, "CPU/hs full vs gnutls-serv", r, "<= 0.8", (r <= 0.8 ? "met" : "MISSED")
                r = M[t, "full", "cpu"] / M[st, "full", "cpu"];      printf "%-11s %-32s %7.2f %8s %s\n", t, "CPU/hs full vs stunnel4", r, "<= 0.5", (r <= 0.5 ? "met" : "MISSED")
                r = M[t, "full", "cpu"] / fl;                        printf "%-11s %-32s %7.2f %8s %s\n", t, "CPU/hs full vs crypto floor", r, "<= 2", (r <= 2 ? "met" : "MISSED")
                r = M[t, "resumed", "cpu"] / M[gs, "resumed", "cpu"]; printf "%-11s %-32s %7.2f %8s %s\n", t, "CPU/hs resumed vs gnutls-serv", r, "<= 0.9", (r <= 0.9 ? "met" : "MISSED")
                printf "%-11s   %s\n", "", paired(t, gs, "full")
                printf "%-11s   %s\n", "", paired(t, gs, "resumed")
                printf "%-11s %-32s %7.2f\n", t, "CPU/hs resumed vs stunnel4", M[t, "resumed", "cpu"] / M[st, "resumed", "cpu"]
                printf "%-11s %-32s %7.2f\n", t, "hs/s full vs gnutls-serv", M[t, "full", "rate"] / M[gs, "full", "rate"]
                printf "%-11s %-32s %7.2f\n", t, "hs/s full vs stunnel4", M[t, "full", "rate"] / M[st, "full", "rate"]
                printf "%-11s %-32s %7.2f\n", t, "hs/s resumed vs gnutls-serv", M[t, "resumed", "rate"] / M[gs, "resumed", "rate"]
                printf "%-11s %-32s %7.2f\n", t, "hs/s resumed vs stunnel4", M[t, "resumed", "rate"] / M[st, "resumed", "rate"]
        }
        printf "%-11s %-32s %7.2f\n", gs, "CPU/hs full vs crypto floor", M[gs, "full", "cpu"] / fl
        printf "%-11s %-32s %7.2f\n", st, "CPU/hs full vs crypto floor", M[st, "full", "cpu"] / fl
        printf "%-11s %-32s %7.2f\n", st, "CPU/hs full vs gnutls-serv", M[st, "full", "cpu"] / M[gs, "full", "cpu"]
        printf "%-11s %-32s %7.2f\n", st, "CPU/hs resumed vs gnutls-serv", M[st, "resumed", "cpu"] / M[gs, "resumed", "cpu"]
}' "$RESULTS"
