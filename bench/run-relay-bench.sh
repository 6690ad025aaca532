#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Durable relay throughput and send->ack latency through secd over mTLS,
# against the SQLite limit for the same durability measured in the same
# run (bench/README.md, "Relay").
#
#   bench/run-relay-bench.sh BUILD_DIR [--rounds R] [--seconds S] [--paced-seconds S]
#                            [--senders N] [--mailboxes N] [--sqlite-seconds S] [--dir DIR]
#
# BUILD_DIR was configured with -DSECD_BENCH=ON (Release) and built: it
# holds bench/bench-relay, bench/bench-relay-sqlite, secd/secd and
# secctl/secctl. This script builds nothing. Each round uses a fresh
# directory under DIR (default: $TMPDIR or /var/tmp, so the store is on a
# real disk, not tmpfs) for the SQLite series and for a fresh secd
# (--dev, its own state and runtime directories, rate limits off and
# quotas raised). secd is started here and stopped by its pid. Prints
# numbers; fails only if something did not work (an error, a message
# acknowledged but not delivered), never on timing.
set -euo pipefail

usage() {
        echo "usage: $0 BUILD_DIR [--rounds R] [--seconds S] [--paced-seconds S] [--senders N]" \
                "[--mailboxes N] [--sqlite-seconds S] [--dir DIR]" >&2
        exit 2
}
number() { [[ $2 =~ ^[0-9]+$ ]] && [ "$2" -ge 1 ] && [ "$2" -le "$3" ] || { echo "$1: 1..$3 expected, got '$2'" >&2; exit 2; }; }

[ $# -ge 1 ] || usage
BUILD=$(realpath "$1"); shift
ROUNDS=3
SECS=10
PACED_SECS=10
SENDERS=64
MAILBOXES=8
SQLITE_SECS=5
BASE=${TMPDIR:-/var/tmp}
while [ $# -gt 0 ]; do
        case "$1" in
        --rounds) number "$1" "${2:-}" 20; ROUNDS=$2; shift 2 ;;
        --seconds) number "$1" "${2:-}" 600; SECS=$2; shift 2 ;;
        --paced-seconds) number "$1" "${2:-}" 600; PACED_SECS=$2; shift 2 ;;
        --senders) number "$1" "${2:-}" 512; SENDERS=$2; shift 2 ;;
        --mailboxes) number "$1" "${2:-}" 64; MAILBOXES=$2; shift 2 ;;
        --sqlite-seconds) number "$1" "${2:-}" 600; SQLITE_SECS=$2; shift 2 ;;
        --dir) BASE=${2:?}; shift 2 ;;
        *) usage ;;
        esac
done

BENCH=$BUILD/bench/bench-relay
BENCH_SQLITE=$BUILD/bench/bench-relay-sqlite
SECD=$BUILD/secd/secd
SECCTL=$BUILD/secctl/secctl
for f in "$BENCH" "$BENCH_SQLITE" "$SECD" "$SECCTL"; do
        [ -x "$f" ] || { echo "$f missing: configure BUILD_DIR with -DSECD_BENCH=ON and build it" >&2; exit 1; }
done

TMP=$(mktemp -d "$BASE/bench-relay-XXXXXX")
chmod 700 "$TMP"
SECD_PID=
cleanup() {
        if [ -n "$SECD_PID" ]; then
                kill "$SECD_PID" 2>/dev/null || true
                wait "$SECD_PID" 2>/dev/null || true
        fi
        rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# secd with the relay's limits out of the way: no rate limits, quotas far
# above what a run queues (consumers drain the mailboxes anyway).
SECD_OPTS=(
        --relay-send-rate=off
        --relay-recipient-rate=off
        --relay-mailbox-max-messages=1000000000
        --relay-mailbox-max-bytes=1099511627776
        --log-level=warning
)

start_secd() {         # dir
        local d=$1
        mkdir -m 700 "$d"
        (cd "$d" && exec "$SECD" --dev --state-dir "$d/state" --runtime-dir "$d/run" "${SECD_OPTS[@]}") \
                >"$d/log" 2>&1 &
        SECD_PID=$!
        export SECCTL_SOCKET=$d/run/control.sock
        # Sockets are bound before the store opens: wait (bounded) until secd answers.
        for _ in $(seq 1 100); do
                [ -S "$d/run/secd.sock" ] && [ -S "$d/run/enroll.sock" ] && "$SECCTL" status >/dev/null 2>&1 && return 0
                kill -0 "$SECD_PID" 2>/dev/null || { echo "secd died:" >&2; cat "$d/log" >&2; exit 1; }
                sleep 0.1
        done
        echo "secd did not answer within 10 s:" >&2
        cat "$d/log" >&2
        exit 1
}

stop_secd() {
        kill "$SECD_PID"
        wait "$SECD_PID" 2>/dev/null || true
        SECD_PID=
}

RESULTS=$TMP/results
: >"$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
        R=$TMP/round-$round
        mkdir -m 700 "$R" "$R/sqlite"
        echo "== round $round: SQLite limit" >&2
        "$BENCH_SQLITE" --dir "$R/sqlite" --seconds "$SQLITE_SECS" --batches 1,64,512 --db-batches 64 |
                sed "s|^|round=$round |" | tee -a "$RESULTS" >&2
        echo "== round $round: relay through secd" >&2
        start_secd "$R/secd"
        "$BENCH" --socket "$R/secd/run/secd.sock" --enroll "$R/secd/run/enroll.sock" --senders "$SENDERS" \
                --mailboxes "$MAILBOXES" --seconds "$SECS" --paced-seconds "$PACED_SECS" --server-pid "$SECD_PID" |
                sed "s|^|round=$round |" | tee -a "$RESULTS" >&2
        # The disk's speed drifts (other work on the machine): the raw batch-64
        # limit again right after the relay, and the ratio uses the mean of both.
        echo "== round $round: SQLite limit again (raw, batch 64)" >&2
        "$BENCH_SQLITE" --dir "$R/sqlite" --seconds "$SQLITE_SECS" --batches 64 --db-batches none |
                sed "s|^|round=$round when=after |" | tee -a "$RESULTS" >&2
        # The store writer's counters, when secd reports them.
        "$SECCTL" status --json >"$R/status.json" 2>/dev/null || true
        if grep -q '"writer' "$R/status.json" 2>/dev/null; then
                echo "round=$round status $(tr -d '\n' <"$R/status.json")" >>"$RESULTS"
        fi
        stop_secd
        rm -rf "$R"
done

echo
echo "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $ROUNDS rounds; $SENDERS senders, $MAILBOXES mailboxes," \
        "1 KiB messages, max phase $SECS s, paced phase $PACED_SECS s; store under $BASE ($(df -T "$BASE" | awk 'NR==2 {print $2}'))"
awk -v rounds="$ROUNDS" '
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
/ sqlite / {
        after = val($0, "when") == "after"
        k = val($0, "path") " batch " val($0, "batch") (after ? " (after relay)" : "")
        if (!(k in L)) order[++no] = k
        add(k, val($0, "inserts_per_s"))
        if (val($0, "path") == "raw" && val($0, "batch") == 1) { add("c1 p50", val($0, "commit_p50_us")); add("c1 p99", val($0, "commit_p99_us")) }
        if (val($0, "path") == "raw" && val($0, "batch") == 64) {
                r = val($0, "round"); raw64[r] += val($0, "inserts_per_s"); nraw64[r]++
        }
}
/ relay / && val($0, "phase") == "max" {
        max[val($0, "round")] = val($0, "msgs_per_s")
        add("max", val($0, "msgs_per_s")); add("max p50", val($0, "p50_us")); add("max p99", val($0, "p99_us")); add("max max", val($0, "max_us"))
        add("max srv", val($0, "server_cpu_us_per_msg")); add("max cli", val($0, "client_cpu_us_per_msg"))
}
/ relay / && val($0, "phase") == "paced" {
        add("rate", val($0, "rate")); add("paced", val($0, "msgs_per_s")); add("paced p50", val($0, "p50_us")); add("paced p99", val($0, "p99_us"))
        add("paced max", val($0, "max_us")); add("late", val($0, "late_1ms"))
        add("svc p50", val($0, "service_p50_us")); add("svc p99", val($0, "service_p99_us"))
}
END {
        for (r = 1; r <= rounds; r++) if ((r in max) && nraw64[r]) add("ratio", sprintf("%.3f", max[r] / (raw64[r] / nraw64[r])))
        printf "\nSQLite limit, inserts/s (1 KiB, synchronous=FULL, WAL), median (each round):\n"
        for (i = 1; i <= no; i++) printf "  %-24s %9.0f  (%s)\n", order[i], median(L[order[i]]), L[order[i]]
        printf "  one-row commit (the disk'"'"'s floor under send->ack): p50 %.0f µs (%s), p99 %.0f µs (%s)\n", median(L["c1 p50"]), L["c1 p50"], median(L["c1 p99"]), L["c1 p99"]
        printf "\nrelay through secd, %s:\n", "median (each round)"
        printf "  max:   %9.0f acked msgs/s  (%s)\n", median(L["max"]), L["max"]
        printf "         send->ack p50 %.0f µs (%s), p99 %.0f µs (%s), max %.0f µs (%s)\n", median(L["max p50"]), L["max p50"], median(L["max p99"]), L["max p99"], median(L["max max"]), L["max max"]
        printf "         CPU per message: secd %s µs, bench client %s µs\n", L["max srv"], L["max cli"]
        printf "  paced: rate %s msgs/s, achieved %s\n", L["rate"], L["paced"]
        printf "         latency from the scheduled time p50 %.0f µs (%s), p99 %.0f µs (%s), max %.0f µs (%s); started >1 ms late: %s\n", median(L["paced p50"]), L["paced p50"], median(L["paced p99"]), L["paced p99"], median(L["paced max"]), L["paced max"], L["late"]
        printf "         the same timed from the actual start of each send: p50 %.0f µs (%s), p99 %.0f µs (%s)\n", median(L["svc p50"]), L["svc p50"], median(L["svc p99"]), L["svc p99"]
        r = median(L["ratio"]); p = median(L["paced p99"])
        printf "\n%-44s %8s %8s\n", "target", "value", ""
        printf "%-44s %8.3f %8s  (each round: %s)\n", "acked msgs/s / raw SQLite batch 64 >= 0.4", r, (r >= 0.4 ? "met" : "MISSED"), L["ratio"]
        printf "%-44s %8.0f %8s  (each round: %s)\n", "p99 send->ack at half the max rate <= 5000 µs", p, (p <= 5000 ? "met" : "MISSED"), L["paced p99"]
}' "$RESULTS"
grep ' status ' "$RESULTS" | sed 's/^/writer: /' || true
