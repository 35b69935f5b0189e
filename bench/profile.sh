#!/usr/bin/env bash
# profile.sh - where ferry spends its time in one bench scenario.
#
#   bench/profile.sh SCENARIO [--duration S] [--no-perf] [--no-strace]
#
# SCENARIO: rate | socks5-rate | pingpong | bulk-up | bulk-down |
#           ss-rate | ss-bulk-up | ss-bulk-down (ss-*: ferry ss-local -> ss-server,
#           chacha20-ietf-poly1305; METHOD=... to change)
#
# Two runs, each in a fresh network namespace (loopback only) with the same
# upstream helpers and load generator as compare.sh:
#   1. perf record on the ferry process(es): CPU split (ferry's own code,
#      libc, libcrypto, kernel) and the syscalls that take the most time,
#      counting the kernel work they trigger (on loopback a send() also
#      runs the receiver's TCP input in softirq);
#   2. strace -c attached to ferry: syscalls per connection, per request or
#      per MB, which is deterministic where timing is not.
# strace slows ferry down several times, so the two never share a run.
# Needs root (ip netns, perf, strace). See docs/PERFORMANCE.md.
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
LOADGEN=$HERE/loadgen
FERRY=${FERRY:-$ROOT/ferry}
METHOD=${METHOD:-chacha20-ietf-poly1305}
DUR=3 PERF=1 STRACE=1

die() { echo "profile.sh: $*" >&2; exit 1; }
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
SC=$1; shift
case $SC in
rate|socks5-rate|pingpong|bulk-up|bulk-down|ss-rate|ss-bulk-up|ss-bulk-down) ;;
-h|--help) usage; exit 0 ;;
*) echo "profile.sh: unknown scenario '$SC'" >&2; usage >&2; exit 2 ;;
esac
while [ $# -gt 0 ]; do
    case $1 in
    --duration) DUR=$2; shift ;;
    --no-perf) PERF=0 ;;
    --no-strace) STRACE=0 ;;
    *) echo "profile.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done
[[ $DUR =~ ^[0-9]+$ && $DUR -ge 1 ]] || die "bad --duration '$DUR' (whole seconds)"
[ "$(id -u)" = 0 ] || die "needs root (ip netns, perf, strace)"
[ -x "$FERRY" ] || die "no ferry binary at $FERRY (run make)"
make -s -C "$HERE" >&2 || die "cannot build bench/loadgen"
[ "$PERF" = 0 ] || command -v perf >/dev/null || { echo "perf not installed (linux-perf): skipping it" >&2; PERF=0; }
[ "$STRACE" = 0 ] || command -v strace >/dev/null || { echo "strace not installed: skipping it" >&2; STRACE=0; }

TMP=$(mktemp -d /tmp/ferryprof.XXXXXX) || die "mktemp failed"
NS=fp$$
cleanup() {
    local pids; pids=$(ip netns pids "$NS" 2>/dev/null)
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
X=(ip netns exec "$NS")

P_ECHO=7001 P_SINK=7002 P_SOURCE=7003 P_PROXY=7010 P_SS=7011

wait_port() {    # PORT: until something listens there (5 s)
    for _ in $(seq 50); do
        "${X[@]}" ss -Hltn "sport = :$1" | grep -q . && return 0
        sleep 0.1
    done
    die "nothing listens on port $1"
}

# One scenario run: namespace, upstreams, ferry; sets FERRY_PIDS.
setup() {
    ip netns add "$NS" || die "ip netns add failed"
    ip -n "$NS" link set lo up
    "${X[@]}" sysctl -qw net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=1
    local kind
    for kind in echo:$P_ECHO sink:$P_SINK source:$P_SOURCE; do
        "${X[@]}" "$LOADGEN" serve "${kind%%:*}" -l "127.0.0.1:${kind##*:}" -D 600 >/dev/null &
        wait_port "${kind##*:}"
    done
    FERRY_PIDS=()
    local up=$P_ECHO
    case $SC in bulk-up) up=$P_SINK ;; bulk-down) up=$P_SOURCE ;; esac
    case $SC in
    rate|pingpong|bulk-*)
        "${X[@]}" "$FERRY" relay -l 127.0.0.1:$P_PROXY -u 127.0.0.1:$up --threads 1 --log-level error 2>>"$TMP/ferry.log" &
        FERRY_PIDS+=($!) ;;
    socks5-rate)
        "${X[@]}" "$FERRY" socks -l 127.0.0.1:$P_PROXY --threads 1 --log-level error 2>>"$TMP/ferry.log" &
        FERRY_PIDS+=($!) ;;
    ss-*)
        "${X[@]}" "$FERRY" ss-server -l 127.0.0.1:$P_SS -k bench -m "$METHOD" --threads 1 --log-level error 2>>"$TMP/ferry.log" &
        FERRY_PIDS+=($!)
        wait_port $P_SS
        "${X[@]}" "$FERRY" ss-local -l 127.0.0.1:$P_PROXY -s 127.0.0.1:$P_SS -k bench -m "$METHOD" \
            --threads 1 --log-level error 2>>"$TMP/ferry.log" &
        FERRY_PIDS+=($!) ;;
    esac
    wait_port $P_PROXY
}

teardown() {
    local pids; pids=$(ip netns pids "$NS" 2>/dev/null)
    [ -n "$pids" ] && kill -TERM $pids 2>/dev/null
    sleep 0.3
    pids=$(ip netns pids "$NS" 2>/dev/null)
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    wait 2>/dev/null
    ip netns del "$NS" 2>/dev/null
}

# The load, printing loadgen's RESULT line.
load() {
    local what args=()
    case $SC in
    rate)         what=rate;     args=(-n 50) ;;
    socks5-rate|ss-rate)
                  what=rate;     args=(-n 50 --mode socks5 -d "127.0.0.1:$P_ECHO") ;;
    pingpong)     what=pingpong; args=(-n 50) ;;
    bulk-up)      what=bulk;     args=(-n 1 --dir up) ;;
    bulk-down)    what=bulk;     args=(-n 1 --dir down) ;;
    ss-bulk-up)   what=bulk;     args=(-n 1 --dir up --mode socks5 -d "127.0.0.1:$P_SINK") ;;
    ss-bulk-down) what=bulk;     args=(-n 1 --dir down --mode socks5 -d "127.0.0.1:$P_SOURCE") ;;
    esac
    "${X[@]}" "$LOADGEN" "$what" -c 127.0.0.1:$P_PROXY "${args[@]}" -D "$DUR" | grep '^RESULT'
}

kv() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# Units of work in a RESULT line: connections, requests or MB.
units() {
    case $SC in
    *rate)    awk -v v="$(kv "$1" conns_per_s)" -v d="$DUR" 'BEGIN { print v * d }'; echo connection ;;
    pingpong) awk -v v="$(kv "$1" req_per_s)" -v d="$DUR" 'BEGIN { print v * d }'; echo request ;;
    *)        awk -v v="$(kv "$1" gbit_per_s)" -v d="$DUR" 'BEGIN { print v * d * 1000 / 8 }'; echo MB ;;
    esac
}

pids_csv() { local IFS=,; echo "${FERRY_PIDS[*]}"; }

echo "# ferry profile: $SC ($DUR s, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs)"
if [ "$PERF" = 1 ]; then
    setup
    perf record -q -g -o "$TMP/perf.data" -p "$(pids_csv)" -- sleep "$DUR" >/dev/null 2>&1 &
    PP=$!
    r=$(load)
    wait $PP
    teardown
    echo
    echo "## perf (ferry process(es) only)"
    echo "$r"
    echo
    echo "CPU by object (self):"
    perf report -i "$TMP/perf.data" --no-children --stdio -g none --sort dso 2>/dev/null |
        grep '%' | head -6 | sed 's/^ */  /'
    echo
    echo "Syscalls by time, kernel work they trigger included (children):"
    perf report -i "$TMP/perf.data" --children --stdio -g none --sort sym 2>/dev/null |
        grep -E '\[k\] __(x64|ia32)_sys_' | head -10 |
        awk '{printf "  %-8s %s\n", $1, $NF}' | sed 's/__x64_sys_//'
    echo
    echo "ferry's own functions (self):"
    perf report -i "$TMP/perf.data" --no-children --stdio -g none --sort dso,sym 2>/dev/null |
        grep -E '%[[:space:]]+ferry[[:space:]]' | head -8 | awk '{printf "  %-8s %s\n", $1, $NF}'
fi
if [ "$STRACE" = 1 ]; then
    setup
    strace_args=()
    for p in "${FERRY_PIDS[@]}"; do strace_args+=(-p "$p"); done
    strace -f -c -o "$TMP/strace.txt" "${strace_args[@]}" 2>/dev/null &
    SP=$!
    sleep 0.5                        # attach before the load starts
    r=$(load)
    kill -INT $SP; wait $SP 2>/dev/null
    teardown
    mapfile -t u < <(units "$r")
    echo
    echo "## strace -c (slowed down: count syscalls, not time)"
    echo "$r"
    echo
    awk -v n="${u[0]}" -v unit="${u[1]}" '
        $1 ~ /^[0-9.]+$/ && $NF != "total" {
            calls = $4; errs = (NF == 6) ? $5 : 0; name = $NF
            if (name ~ /^(rt_sigtimedwait|futex|restart_syscall|clock_nanosleep)$/) next
            per = calls / n; tot += per
            if (per >= 0.01) printf "  %-14s %8.2f per %s%s\n", name, per, unit, errs ? sprintf("  (%d returned -1: EINPROGRESS, EAGAIN...)", errs) : ""
        }
        END { printf "  %-14s %8.2f per %s (main-thread signal wait excluded)\n", "total", tot, unit }' \
        "$TMP/strace.txt"
fi
