#!/usr/bin/env bash
# profile.sh - where a proxy spends its time in one bench scenario.
#
#   bench/profile.sh SCENARIO [--peer NAME] [--duration S] [--no-perf] [--no-strace]
#                    [--keep]
#
# SCENARIO: rate | socks5-rate | pingpong | bulk-up | bulk-down |
#           ss-rate | ss-bulk-up | ss-bulk-down (ss-*: ss-local -> ss-server,
#           chacha20-ietf-poly1305; METHOD=... to change)
# --peer:   ferry (default); relay scenarios: haproxy, nginx; socks5-rate:
#           microsocks, danted; ss-*: ss-libev. Same configurations as
#           compare.sh (bench/peers.sh), so ferry's profile can be read
#           against a peer's under the same load.
#
# Three runs, each in a fresh network namespace (loopback only) with the same
# upstream helpers and load generator as compare.sh:
#   1. plain: the result, and the CPU used by the proxy, the load
#      generator and the upstream servers (/proc, bash time);
#   2. perf record on the proxy's processes: CPU split (its own code,
#      libc, libcrypto, kernel) and the syscalls that take the most time,
#      counting the kernel work they trigger (on loopback a send() also
#      runs the receiver's TCP input in softirq);
#   3. strace -c attached to the proxy: syscalls per connection, per
#      request or per MB, which is deterministic where timing is not.
# strace slows the proxy down several times, so the two never share a run.
# Needs root (ip netns, perf, strace). See docs/PERFORMANCE.md.
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
LOADGEN=$HERE/loadgen
FERRY=${FERRY:-$ROOT/ferry}
METHOD=${METHOD:-chacha20-ietf-poly1305}
DUR=3 PERF=1 STRACE=1 PEER=ferry KEEP=0
# shellcheck disable=SC2034  # read by bench/peers.sh
THREADS=1 SS_PASS=bench-password

die() { echo "profile.sh: $*" >&2; exit 1; }
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
SC=$1; shift
case $SC in
rate|socks5-rate|pingpong|bulk-up|bulk-down|ss-rate|ss-bulk-up|ss-bulk-down) ;;
-h|--help) usage; exit 0 ;;
*) echo "profile.sh: unknown scenario '$SC'" >&2; usage >&2; exit 2 ;;
esac
while [ $# -gt 0 ]; do
    case $1 in
    --peer) PEER=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --no-perf) PERF=0 ;;
    --no-strace) STRACE=0 ;;
    --keep) KEEP=1 ;;
    *) echo "profile.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done
[[ $DUR =~ ^[0-9]+$ && $DUR -ge 1 ]] || die "bad --duration '$DUR' (whole seconds)"
# START: the bench/peers.sh function for this scenario and peer; BIN: the
# program it needs; OWN: the proxy's own objects in perf's dso column.
START=start_$PEER BIN=$PEER OWN=$PEER
case $SC:$PEER in
ss-*:ferry)         START=start_ferry_ss ;;
socks5-rate:ferry)  START=start_ferry_socks ;;
*:ferry)            START=start_ferry_relay ;;
rate:haproxy|rate:nginx|pingpong:haproxy|pingpong:nginx|bulk-*:haproxy|bulk-*:nginx) ;;
socks5-rate:microsocks|socks5-rate:danted) ;;
ss-*:ss-libev)      START=start_sschain BIN=ss-server OWN='ss-local|ss-server|libshadowsocks[^ ]*' ;;
*) die "no peer '$PEER' for $SC (see --help)" ;;
esac
[ "$(id -u)" = 0 ] || die "needs root (ip netns, perf, strace)"
if [ "$PEER" = ferry ]; then
    [ -x "$FERRY" ] || die "no ferry binary at $FERRY (run make)"
else
    command -v "$BIN" >/dev/null || die "$BIN not installed (scripts/install-deps --bench)"
fi
make -s -C "$HERE" >&2 || die "cannot build bench/loadgen"
[ "$PERF" = 0 ] || command -v perf >/dev/null || { echo "perf not installed (linux-perf): skipping it" >&2; PERF=0; }
[ "$STRACE" = 0 ] || command -v strace >/dev/null || { echo "strace not installed: skipping it" >&2; STRACE=0; }

TMP=$(mktemp -d /tmp/ferryprof.XXXXXX) || die "mktemp failed"
NS=fp$$
cleanup() {
    local pids; pids=$(ip netns pids "$NS" 2>/dev/null)
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    if [ "$KEEP" = 1 ]; then echo "kept $TMP (perf.data, strace.txt, logs)" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
X=(ip netns exec "$NS")

# shellcheck disable=SC2034  # P_SS: read by bench/peers.sh
P_ECHO=7001 P_SINK=7002 P_SOURCE=7003 P_PROXY=7010 P_SS=7011

. "$HERE/peers.sh"   # the same start_<peer> as compare.sh

spawn() {        # LOGNAME CMD... -> LASTPID; teardown kills the namespace
    local name=$1; shift
    "${X[@]}" "$@" >>"$TMP/$name.log" 2>&1 &
    LASTPID=$!
}

# One scenario run: namespace, upstreams, the proxy; sets PROXY_PIDS (every
# process of it, for perf and strace).
setup() {
    ip netns add "$NS" || die "ip netns add failed"
    ip -n "$NS" link set lo up
    "${X[@]}" sysctl -qw net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=1
    local kind
    UPSTREAM_PIDS=()
    for kind in echo:$P_ECHO sink:$P_SINK source:$P_SOURCE; do
        spawn "upstream-${kind%%:*}" "$LOADGEN" serve "${kind%%:*}" -l "127.0.0.1:${kind##*:}" -D 600
        UPSTREAM_PIDS+=("$LASTPID")
        wait_port "${kind##*:}" "$LASTPID" || die "upstream ${kind%%:*} did not start"
    done
    local up=$P_ECHO
    case $SC in bulk-up) up=$P_SINK ;; bulk-down) up=$P_SOURCE ;; esac
    PEER_PIDS=()
    "$START" "$P_PROXY" "$up" "$METHOD" || die "$PEER did not start (log: $TMP/*.log)"
    sleep 0.2                      # let pre-forking peers (nginx, danted) fork
    mapfile -t PROXY_PIDS < <(descendants "${PEER_PIDS[@]}")
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

pids_csv() { local IFS=,; echo "${PROXY_PIDS[*]}"; }

cpu_ticks() {    # PID... -> user + system clock ticks of those processes so far
    local p t=0 f
    for p in "$@"; do
        f=$(cut -d')' -f2 "/proc/$p/stat" 2>/dev/null) || continue
        set -- $f                       # fields from 3 on: utime is 14, stime 15
        t=$((t + ${12} + ${13}))
    done
    echo "$t"
}

echo "# $PEER profile: $SC ($DUR s, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs)"

# A plain run first: the unperturbed result and who used the CPU. When the
# proxy is far from one core while the machine is busy, the proxy is not
# what limits the result.
setup
hz=$(getconf CLK_TCK)
p0=$(cpu_ticks "${PROXY_PIDS[@]}") u0=$(cpu_ticks "${UPSTREAM_PIDS[@]}")
TIMEFORMAT='%U %S'
{ time load >"$TMP/plain.out"; } 2>"$TMP/plain.cpu"
p1=$(cpu_ticks "${PROXY_PIDS[@]}") u1=$(cpu_ticks "${UPSTREAM_PIDS[@]}")
teardown
echo
echo "## plain run (no tracing)"
cat "$TMP/plain.out"
read -r lu ls <"$TMP/plain.cpu"
awk -v p=$((p1 - p0)) -v u=$((u1 - u0)) -v l="$lu" -v s="$ls" -v hz="$hz" -v d="$DUR" -v n="$(nproc)" 'BEGIN {
    printf "CPU, %% of one core: proxy %.0f, load generator %.0f, upstream servers %.0f (machine: %d cores = %d)\n",
        100 * p / hz / d, 100 * (l + s) / d, 100 * u / hz / d, n, 100 * n }'
if [ "$PERF" = 1 ]; then
    setup
    perf record -q -g -o "$TMP/perf.data" -p "$(pids_csv)" -- sleep "$DUR" >/dev/null 2>&1 &
    PP=$!
    r=$(load)
    wait $PP
    teardown
    echo
    echo "## perf ($PEER process(es) only)"
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
    echo "$PEER's own functions (self):"
    perf report -i "$TMP/perf.data" --no-children --stdio -g none --sort dso,sym 2>/dev/null |
        grep -E "%[[:space:]]+($OWN)[[:space:]]" | head -8 | awk '{printf "  %-8s %s\n", $1, $NF}'
fi
if [ "$STRACE" = 1 ]; then
    setup
    strace_args=()
    for p in "${PROXY_PIDS[@]}"; do strace_args+=(-p "$p"); done
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
