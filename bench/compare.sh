#!/usr/bin/env bash
# compare.sh - ferry side by side with its peers, one at a time, on loopback.
#
#   bench/compare.sh [--quick] [--threads N] [--only relay,socks,ss,filter,mux,udp]
#                    [--duration S] [--idle-conns N] [--no-netns] [--keep]
#
# Each implementation runs alone in its own network namespace (fresh
# loopback, fresh TIME_WAIT table) together with the upstream servers and
# the load generator; without `ip netns` it falls back to the host
# namespace with a warning. Prints one markdown table per scenario with the
# ferry/peer ratio. See bench/README.md. Everything started is killed on
# exit and the namespaces are deleted.
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
LOADGEN=$HERE/loadgen
FERRY=${FERRY:-$ROOT/ferry}

QUICK=0 THREADS=1 ONLY=relay,socks,ss,filter,mux,udp DUR="" IDLE_N="" NETNS=auto KEEP=0

log()  { printf '%s\n' "$*" >&2; }
die()  { log "compare.sh: $*"; exit 1; }
kv()   { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1; }
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=1 ;;
    --threads) THREADS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --idle-conns) IDLE_N=$2; shift ;;
    --no-netns) NETNS=no ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    : "${DUR:=2}" "${IDLE_N:=2000}"; BUDGET=175
else
    : "${DUR:=8}" "${IDLE_N:=9900}"; BUDGET=800
fi
[[ $DUR =~ ^[0-9]+([.][0-9]+)?$ ]] || die "bad --duration '$DUR'"
[[ $IDLE_N =~ ^[0-9]+$ && $THREADS =~ ^[0-9]+$ ]] || die "bad --idle-conns or --threads"
DUR_INT=${DUR%.*}; [ "${DUR_INT:-0}" -ge 1 ] || DUR_INT=1   # whole seconds, for iperf3
RATE_C=50        # rate: concurrent connect/echo/close workers
PP_N=50          # pingpong: persistent connections
UDP_N=8          # udp: associations (one control connection + one UDP socket each)
UDP_WIN=32       # udp: datagrams outstanding per association
UDP_SIZES="64 1200"
# shellcheck disable=SC2034  # read by bench/peers.sh
SS_PASS=bench-password
SS_METHODS="chacha20-ietf-poly1305 aes-128-gcm"
T0=$SECONDS

make -s -C "$HERE" >&2 && [ -x "$LOADGEN" ] || die "cannot build bench/loadgen"
ulimit -n "$(ulimit -Hn)" 2>/dev/null
TMP=$(mktemp -d /tmp/ferrybench.XXXXXX) || die "mktemp failed"
RAW=$TMP/results.txt

# ---------------------------------------------------------------- processes

. "$HERE/peers.sh"   # descendants, wait_port and start_<peer> for every peer

PIDS=()          # everything we started, killed with their children at exit
NSS=()           # namespaces we created
X=()             # command prefix: run inside the current namespace
NS=""

kill_tree() {    # PID...: TERM the trees, wait up to 2 s, then KILL
    local all p _
    all=$(descendants "$@")
    [ -n "$all" ] || return 0
    kill -TERM $all 2>/dev/null
    for _ in $(seq 20); do
        for p in $all; do kill -0 "$p" 2>/dev/null && break; p=""; done
        [ -z "$p" ] && break
        sleep 0.1
    done
    kill -KILL $all 2>/dev/null
    for p in "$@"; do wait "$p" 2>/dev/null; done
    return 0
}

cleanup() {
    local ns pids
    [ ${#PIDS[@]} -gt 0 ] && kill_tree "${PIDS[@]}"
    for ns in "${NSS[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null)
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

spawn() {        # LOGNAME CMD... -> LASTPID; runs in the current namespace
    local name=$1; shift
    "${X[@]}" "$@" >>"$TMP/$name.log" 2>&1 &
    LASTPID=$!
    PIDS+=("$LASTPID")
}

forget() {       # PID...: no longer ours to kill
    local p q keep=()
    for q in "${PIDS[@]}"; do
        for p in "$@"; do [ "$q" = "$p" ] && continue 2; done
        keep+=("$q")
    done
    PIDS=("${keep[@]}")
}

stop() { kill_tree "$@"; forget "$@"; }

# bg_run OUTFILE SECONDS CMD...: runs a client in the namespace under a time
# limit; waits with `wait` so that a signal reaches our trap at once.
bg_run() {
    local out=$1 lim=$2 pid rc; shift 2
    "${X[@]}" timeout -k 5 "$lim" "$@" >"$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait "$pid"; rc=$?
    forget "$pid"
    return $rc
}

# ---------------------------------------------------------------- namespaces

if [ "$NETNS" = auto ]; then
    if ip netns add "fbprobe$$" 2>/dev/null; then
        ip netns del "fbprobe$$"; NETNS=yes
    else
        NETNS=no
        log "WARNING: 'ip netns add' failed: running everything in the host namespace"
    fi
fi
if [ "$NETNS" = yes ]; then PBASE=7000; else PBASE=$((17000 + ($$ % 300) * 50)); fi
P_ECHO=$((PBASE + 1)) P_SINK=$((PBASE + 2)) P_SOURCE=$((PBASE + 3)) P_IPERF=$((PBASE + 4))
P_UECHO=$((PBASE + 5))   # UDP
# shellcheck disable=SC2034  # P_SS: read by bench/peers.sh
P_PROXY=$((PBASE + 10)) P_SS=$((PBASE + 11))
UPSTREAM_PIDS=()

ns_enter() {     # NAME: fresh namespace with lo and the upstream servers
    if [ "$NETNS" = yes ]; then
        NS=fb$$-$1
        ip netns add "$NS" || return 1
        NSS+=("$NS")
        X=(ip netns exec "$NS")
        ip -n "$NS" link set lo up
        "${X[@]}" sysctl -qw net.ipv4.ip_local_port_range="10000 65000" \
            net.ipv4.tcp_tw_reuse=1 >/dev/null 2>&1
    fi
    local kind p
    UPSTREAM_PIDS=()
    for kind in echo:$P_ECHO sink:$P_SINK source:$P_SOURCE; do
        spawn "upstream-${kind%%:*}" "$LOADGEN" serve "${kind%%:*}" -l "127.0.0.1:${kind##*:}" -D 1800
        UPSTREAM_PIDS+=("$LASTPID")
        wait_port "${kind##*:}" "$LASTPID" || return 1
    done
    spawn upstream-udp-echo "$LOADGEN" serve udp-echo -l "127.0.0.1:$P_UECHO" -D 1800
    UPSTREAM_PIDS+=("$LASTPID")
    wait_uport "$P_UECHO" "$LASTPID" || return 1
    spawn upstream-iperf3 iperf3 -s -B 127.0.0.1 -p "$P_IPERF"
    UPSTREAM_PIDS+=("$LASTPID")
    wait_port "$P_IPERF" "$LASTPID"
}

ns_leave() {
    [ ${#UPSTREAM_PIDS[@]} -gt 0 ] && stop "${UPSTREAM_PIDS[@]}"
    UPSTREAM_PIDS=()
    if [ -n "$NS" ]; then
        local pids; pids=$(ip netns pids "$NS" 2>/dev/null)
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
        ip netns del "$NS" 2>/dev/null
        NS=""; X=()
    fi
}

# ---------------------------------------------------------------- running

declare -A RES     # "group/scenario/peer" -> RESULT line, or "NA <reason>"

over_budget() { [ $((SECONDS - T0)) -ge "$BUDGET" ]; }

# run_lg KEY LOADGEN-ARGS...: one measured run inside the namespace.
run_lg() {
    local key=$1 out line; shift
    if over_budget; then RES[$key]="NA skipped: time budget"; return; fi
    bg_run "$TMP/run.out" $((DUR_INT + 150)) "$LOADGEN" "$@"
    out=$(cat "$TMP/run.out")
    line=$(printf '%s\n' "$out" | grep '^RESULT' | head -n1)
    if [ -n "$line" ]; then RES[$key]=$line; else RES[$key]="NA loadgen failed"; fi
    printf '%s %s\n' "$key" "${RES[$key]}" >>"$RAW"
    log "  $key: $(printf '%s\n' "$out" | grep -v '^RESULT' | head -n1)"
}

run_iperf() {      # KEY PORT
    local key=$1 json bps
    if over_budget; then RES[$key]="NA skipped: time budget"; return; fi
    bg_run "$TMP/iperf3.json" $((DUR_INT + 20)) iperf3 -c 127.0.0.1 -p "$2" \
        -t "$DUR_INT" -J
    json=$(cat "$TMP/iperf3.json")
    bps=$(printf '%s' "$json" | python3 -c \
        'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])' \
        2>/dev/null)
    if [ -n "$bps" ]; then
        RES[$key]=$(awk -v b="$bps" 'BEGIN { printf "RESULT scenario=iperf3 gbit_per_s=%.3f errors=0", b / 1e9 }')
    else
        RES[$key]="NA iperf3 failed"
    fi
    printf '%s %s\n' "$key" "${RES[$key]}" >>"$RAW"
    log "  $key: ${RES[$key]}"
}

mark_all() {       # GROUP PEER REASON SCENARIO...: record the same NA for all
    local g=$1 p=$2 why=$3 s; shift 3
    for s in "$@"; do RES[$g/$s/$p]="NA $why"; done
}

# scenario -> upstream port
upstream_of() {
    case $1 in bulk_up) echo "$P_SINK" ;; bulk_down) echo "$P_SOURCE" ;;
               iperf3) echo "$P_IPERF" ;; udp*) echo "$P_UECHO" ;; *) echo "$P_ECHO" ;; esac
}

# One scenario against a proxy listening on P_PROXY (or straight to the
# upstream for "direct"). MODE is tcp or socks5 (udp scenarios: tcp means
# datagrams straight to the UDP echo server, socks5 UDP ASSOCIATE).
measure() {        # KEY SCENARIO MODE
    local key=$1 sc=$2 mode=$3 up target pidargs=() p
    up=$(upstream_of "$sc")
    if [ "$mode" = tcp ]; then
        target=(--mode tcp -c "127.0.0.1:${PORT:-$P_PROXY}")
    else    # socks5, or http (CONNECT)
        target=(--mode "$mode" -c "127.0.0.1:$P_PROXY" -d "127.0.0.1:$up")
    fi
    for p in "${PEER_PIDS[@]}"; do pidargs+=(--pid "$p"); done
    case $sc in
    rate)      run_lg "$key" rate "${target[@]}" -n "$RATE_C" -D "$DUR" ;;
    pingpong)  run_lg "$key" pingpong "${target[@]}" -n "$PP_N" -D "$DUR" ;;
    bulk_up)   run_lg "$key" bulk "${target[@]}" -n 1 -D "$DUR" --dir up ;;
    bulk_down) run_lg "$key" bulk "${target[@]}" -n 1 -D "$DUR" --dir down ;;
    idle)      run_lg "$key" idle "${target[@]}" -n "$IDLE_N" "${pidargs[@]}" --timeout 10 \
                   --setup-timeout 120 ;;
    iperf3)    run_iperf "$key" "${PORT:-$P_PROXY}" ;;
    udp*)      run_lg "$key" udp "${target[@]}" -n "$UDP_N" --window "$UDP_WIN" \
                   --size "${sc#udp}" -D "$DUR" --timeout 5 ;;
    esac
}

# Runs every scenario for one peer: a proxy instance per scenario, so each
# starts fresh and points at the right upstream server.
run_peer() {       # GROUP PEER MODE STARTFN METHOD SCENARIO...
    local g=$1 p=$2 mode=$3 fn=$4 m=$5 sc; shift 5
    if over_budget; then mark_all "$g" "$p" "skipped: time budget" "$@"; return; fi
    log "== $g: $p"
    if ! ns_enter "$p-$g"; then
        ns_leave; mark_all "$g" "$p" "upstream servers failed to start" "$@"; return
    fi
    for sc in "$@"; do
        PEER_PIDS=(); PORT=""
        if [ "$fn" = direct ]; then
            PORT=$(upstream_of "$sc")
        elif ! "$fn" "$P_PROXY" "$(upstream_of "$sc")" "$m"; then
            RES[$g/$sc/$p]="NA failed to start (see $TMP/*.log with --keep)"
            log "  $g/$sc/$p: failed to start"
            [ ${#PEER_PIDS[@]} -gt 0 ] && stop "${PEER_PIDS[@]}"
            continue
        fi
        measure "$g/$sc/$p" "$sc" "$mode"
        [ ${#PEER_PIDS[@]} -gt 0 ] && stop "${PEER_PIDS[@]}"
    done
    ns_leave
}

# ---------------------------------------------------------------- tables

label() {
    case $1 in
    direct)     echo "direct (no proxy)" ;;
    haproxy)    echo "haproxy (mode tcp)" ;;
    nginx)      echo "nginx stream" ;;
    danted)     echo "dante (danted)" ;;
    sschain)    echo "ss-local → ss-server (libev, chacha20-ietf-poly1305)" ;;
    ferry_ss)   echo "ferry ss-local → ferry ss-server" ;;
    ferry_lua)  echo "ferry relay + identity Lua filter" ;;
    ferry_rewrite) echo "ferry relay + 1 rewrite rule" ;;
    ferry_mux)  echo "ferry mux-local --socks → mux-server --dynamic" ;;
    ferry_relay) echo "ferry relay (no mux)" ;;
    ferry_http) echo "ferry socks port, HTTP CONNECT" ;;
    sslibev)    echo "ss-libev ss-local → ss-server" ;;
    ferry_ss_udp) echo "ferry ss-local -u → ferry ss-server -u" ;;
    sslibev_udp) echo "ss-libev ss-local -u → ss-server -u" ;;
    *)          echo "$1" ;;
    esac
}

settings_of() {
    case $1 in
    ferry|ferry_ss|ferry_ss_udp|ferry_mux|ferry_relay|ferry_http) echo "--threads $THREADS" ;;
    haproxy)        echo "nbthread $THREADS" ;;
    nginx)          echo "worker_processes $THREADS" ;;
    microsocks)     echo "thread per connection" ;;
    danted)         echo "process pool (default)" ;;
    sschain|sslibev|sslibev_udp) echo "single thread each" ;;
    ferry_lua)      echo "--threads $THREADS --filter identity.lua" ;;
    ferry_rewrite)  echo "--threads $THREADS --rewrite (1 rule, no match)" ;;
    direct)         echo "-" ;;
    esac
}

ratio() {          # FERRY PEER -> ferry/peer with 2 decimals, or "-"
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 <= 0 || a + 0 < 0) print "-";
        else if (a / b < 0.095) printf "%.3f", a / b; else printf "%.2f", a / b }'
}

# table GROUP SCENARIO TITLE RATIO_KEY "key:label"... over peers_of GROUP.
table() {
    local g=$1 sc=$2 title=$3 rk=$4 p r fv col hdr sep row; shift 4
    printf '\n### %s\n\n' "$title"
    hdr="| implementation | settings |"; sep="|---|---|"
    for col in "$@"; do hdr+=" ${col#*:} |"; sep+="---:|"; done
    printf '%s ferry/peer |\n%s---:|\n' "$hdr" "$sep"
    fv=""; r=${RES[$g/$sc/ferry]-}; [ -z "$r" ] && r=${RES[$g/$sc/ferry_ss]-}
    [ -z "$r" ] && r=${RES[$g/$sc/ferry_ss_udp]-}
    [ "$g" = mux ] && r=${RES[$g/$sc/ferry_mux]-}
    case $r in RESULT*) fv=$(kv "$r" "$rk") ;; esac
    for p in $(peers_of "$g"); do
        r=${RES[$g/$sc/$p]-"NA not run"}
        row="| $(label "$p") | $(settings_of "$p") |"
        case $r in
        RESULT*)
            for col in "$@"; do row+=" $(kv "$r" "${col%%:*}") |"; done
            if [ "$p" = direct ]; then row+=" - |"
            else row+=" $(ratio "$fv" "$(kv "$r" "$rk")") |"; fi ;;
        *)  case $p in ferry*) row+=" ferry: ${r#NA } |" ;; *) row+=" ${r#NA } |" ;; esac ;;
        esac
        printf '%s\n' "$row"
    done
}

# ftable SCENARIO TITLE KEY: the filter group, each row as ratios to plain
# ferry and to haproxy from the same run.
ftable() {
    local sc=$1 title=$2 k=$3 p r v fv hv
    printf '\n### %s\n\n| implementation | settings | %s | vs plain ferry | vs haproxy |\n|---|---|---:|---:|---:|\n' \
        "$title" "$k"
    r=${RES[filter/$sc/ferry]-}; fv=""; case $r in RESULT*) fv=$(kv "$r" "$k") ;; esac
    r=${RES[filter/$sc/haproxy]-}; hv=""; case $r in RESULT*) hv=$(kv "$r" "$k") ;; esac
    for p in ferry ferry_lua ferry_rewrite haproxy; do
        r=${RES[filter/$sc/$p]-"NA not run"}
        case $r in
        RESULT*) v=$(kv "$r" "$k")
                 printf '| %s | %s | %s | %s | %s |\n' "$(label "$p")" "$(settings_of "$p")" "$v" \
                     "$(ratio "$v" "$fv")" "$(ratio "$v" "$hv")" ;;
        *) printf '| %s | %s | %s | - | - |\n' "$(label "$p")" "$(settings_of "$p")" "${r#NA }" ;;
        esac
    done
}

print_settings() {
    cat <<EOF
## ferry vs peers ($( [ "$QUICK" = 1 ] && echo quick || echo full ) run, $(date -u '+%Y-%m-%d %H:%M UTC'))

- machine: $(nproc) CPUs, $(uname -r); load generator, upstream servers and proxy share them
- isolation: $( [ "$NETNS" = yes ] && echo "one network namespace per implementation" || echo "host namespace (--no-netns, or ip netns unavailable)")
- duration ${DUR}s per run; rate: $RATE_C workers, 64 B echo per connection; pingpong: $PP_N connections, 64 B;
  bulk: 1 stream; idle: $IDLE_N connections held (RSS and PSS of the proxy process tree)
- proxy threads: ferry --threads $THREADS, haproxy nbthread $THREADS, nginx worker_processes $THREADS;
  microsocks (thread per connection), danted (process pool) and ss-libev (single thread) have no equivalent knob
- udp: $UDP_N associations (SOCKS5 UDP ASSOCIATE), $UDP_WIN datagrams outstanding on each, lost after 200 ms;
  datagrams/s = round trips through the proxy to a UDP echo server; loss = lost / sent
- load generator: 1 thread; upstream echo/sink/source/udp-echo: 1 thread each; ferry: $( [ -x "$FERRY" ] && echo "$FERRY" || echo "not built")
- ferry/peer: ratio of the ferry value to the peer's (throughput: higher is better for ferry;
  latency and KiB per connection: lower is better for ferry)
EOF
}

print_tables() {
    print_settings
    if [[ ,$ONLY, == *,relay,* ]]; then
        printf '\n## relay (TCP port forward)\n'
        table relay rate "relay: connection rate (connect, 64 B echo, close)" conns_per_s \
            conns_per_s:conns/s errors:errors
        table relay pingpong "relay: 64 B ping-pong on $PP_N connections" req_per_s \
            req_per_s:req/s p50_us:"p50 µs" p99_us:"p99 µs" errors:errors
        table relay bulk_up "relay: bulk, 1 stream, client → sink" gbit_per_s \
            gbit_per_s:Gbit/s errors:errors
        table relay bulk_down "relay: bulk, 1 stream, source → client" gbit_per_s \
            gbit_per_s:Gbit/s errors:errors
        table relay iperf3 "relay: iperf3 -c through the relay, 1 stream" gbit_per_s \
            gbit_per_s:Gbit/s
        table relay idle "relay: $IDLE_N idle connections (proxy memory)" kib_per_conn \
            held:held rss_before_kib:"RSS before KiB" rss_after_kib:"RSS after KiB" \
            kib_per_conn:"KiB/conn" pss_kib_per_conn:"PSS KiB/conn" errors:errors
    fi
    if [[ ,$ONLY, == *,socks,* ]]; then
        printf '\n## SOCKS5\n'
        table socks rate "SOCKS5: connection rate (connect, handshake, 64 B echo, close)" \
            conns_per_s conns_per_s:conns/s errors:errors
        table socks idle "SOCKS5: $IDLE_N idle connections (proxy memory)" kib_per_conn \
            held:held rss_before_kib:"RSS before KiB" rss_after_kib:"RSS after KiB" \
            kib_per_conn:"KiB/conn" pss_kib_per_conn:"PSS KiB/conn" errors:errors
    fi
    if [[ ,$ONLY, == *,ss,* ]]; then
        local m
        printf '\n## shadowsocks (SOCKS5 into ss-local → ss-server)\n'
        [ -n "${SS_NOTE:-}" ] && printf '\n%s\n' "$SS_NOTE"
        for m in $SS_METHODS; do
            table "ss" "rate_$m" \
                "shadowsocks $m: connection rate (SOCKS5 handshake, ss request, 64 B echo, close)" \
                conns_per_s conns_per_s:conns/s errors:errors
        done
        for m in $SS_METHODS; do
            table "ss" "bulk_up_$m" "shadowsocks $m: bulk, 1 stream, client → sink" gbit_per_s \
                gbit_per_s:Gbit/s errors:errors
            table "ss" "bulk_down_$m" "shadowsocks $m: bulk, 1 stream, source → client" gbit_per_s \
                gbit_per_s:Gbit/s errors:errors
        done
    fi
    if [[ ,$ONLY, == *,filter,* ]]; then
        printf '\n## filters (relay with a Lua filter or a rewrite rule)\n'
        ftable pingpong "filters: 64 B ping-pong on $PP_N connections" req_per_s
        ftable bulk_up "filters: bulk, 1 stream, client → sink" gbit_per_s
        ftable bulk_down "filters: bulk, 1 stream, source → client" gbit_per_s
    fi
    if [[ ,$ONLY, == *,mux,* ]]; then
        printf '\n## multiplexer (SOCKS5 into mux-local → one yamux connection → mux-server)\n'
        table mux rate "mux: streams/s (SOCKS5 handshake, stream open, 64 B echo, close)" conns_per_s \
            conns_per_s:conns/s errors:errors
        table mux idle "mux: $IDLE_N idle streams (both sides' memory together)" kib_per_conn \
            held:held rss_before_kib:"RSS before KiB" rss_after_kib:"RSS after KiB" \
            kib_per_conn:"KiB/stream" pss_kib_per_conn:"PSS KiB/stream" errors:errors
        table mux bulk_up "mux: bulk, 1 stream, client → sink" gbit_per_s gbit_per_s:Gbit/s errors:errors
        table mux bulk_down "mux: bulk, 1 stream, source → client" gbit_per_s gbit_per_s:Gbit/s errors:errors
    fi
    if [[ ,$ONLY, == *,udp,* ]]; then
        local z
        printf '\n## UDP (SOCKS5 UDP ASSOCIATE to a UDP echo server)\n'
        [ -n "${UDP_NOTE:-}" ] && printf '\n%s\n' "$UDP_NOTE"
        for z in $UDP_SIZES; do
            table udp "udp$z" "UDP ASSOCIATE, $z B datagrams: $UDP_N associations x $UDP_WIN outstanding" \
                dgram_per_s dgram_per_s:datagrams/s loss_pct:"loss %" sent:sent \
                p50_us:"p50 µs" p99_us:"p99 µs" rcvbuf_drops:"kernel drops" errors:errors
        done
        for z in $UDP_SIZES; do
            table udpss "udp$z" "Shadowsocks UDP (-u), $z B datagrams through ss-local → ss-server" \
                dgram_per_s dgram_per_s:datagrams/s loss_pct:"loss %" sent:sent \
                p50_us:"p50 µs" p99_us:"p99 µs" rcvbuf_drops:"kernel drops" errors:errors
        done
    fi
    printf '\nraw RESULT lines: %s\n' "$( [ "$KEEP" = 1 ] && echo "$RAW" || echo "use --keep to keep $RAW")"
}

# ---------------------------------------------------------------- main

peers_of() {       # GROUP -> the implementations in its tables, in order
    case $1 in
    relay) echo "direct ferry haproxy nginx" ;;
    socks) echo "ferry ferry_http microsocks danted sschain" ;;
    ss)    echo "ferry_ss sslibev" ;;
    mux)   echo "ferry_mux ferry_ss sslibev ferry_relay" ;;
    udp)   echo "direct ferry danted" ;;
    udpss) echo "ferry_ss_udp sslibev_udp" ;;
    esac
}
RELAY_SC="rate pingpong bulk_up bulk_down iperf3 idle"
SOCKS_SC="rate idle"

run_relay() {
    run_peer relay direct tcp direct "" rate pingpong bulk_up bulk_down iperf3
    RES[relay/idle/direct]="NA n/a (no proxy)"
    if ferry_has relay; then run_peer relay ferry tcp start_ferry_relay "" $RELAY_SC
    else mark_all relay ferry "not available" $RELAY_SC; fi
    run_peer relay haproxy tcp start_haproxy "" $RELAY_SC
    if nginx_stream_module >/dev/null; then run_peer relay nginx tcp start_nginx "" $RELAY_SC
    else mark_all relay nginx "stream module not installed (libnginx-mod-stream)" $RELAY_SC; fi
}

run_socks() {
    if ferry_has socks; then
        run_peer socks ferry socks5 start_ferry_socks "" $SOCKS_SC
        # The same port as an HTTP proxy (the mixed port): CONNECT instead of SOCKS5.
        run_peer socks ferry_http http start_ferry_socks "" rate
        RES[socks/idle/ferry_http]="NA same process as SOCKS5"
    else mark_all socks ferry "not available" $SOCKS_SC; fi
    run_peer socks microsocks socks5 start_microsocks "" $SOCKS_SC
    run_peer socks danted socks5 start_danted "" $SOCKS_SC
    run_peer socks sschain socks5 start_sschain chacha20-ietf-poly1305 $SOCKS_SC
}

# Filters: what a Lua filter and a rewrite rule cost a relay (no splice).
FILTER_SC="pingpong bulk_up bulk_down"

run_filter() {
    if ferry_has relay; then
        run_peer filter ferry tcp start_ferry_relay "" $FILTER_SC
        run_peer filter ferry_lua tcp start_ferry_lua "" $FILTER_SC
        run_peer filter ferry_rewrite tcp start_ferry_rewrite "" $FILTER_SC
    else
        mark_all filter ferry "not available" $FILTER_SC
    fi
    run_peer filter haproxy tcp start_haproxy "" $FILTER_SC
}

# Shadowsocks: connection rate and bulk through the ss-local -> ss-server
# chain; the result keys carry the method (ss/rate_<method>/<peer>).
SS_SC="rate bulk_up bulk_down"

run_ss() {
    local m have_ferry=0
    if ferry_has ss-local && ferry_has ss-server; then have_ferry=1
    else SS_NOTE="Note: \`ferry ss-local --help\` failed: ferry has no shadowsocks mode yet, its rows are skipped."
    fi
    for m in $SS_METHODS; do
        if [ "$have_ferry" = 1 ]; then
            run_peer_ss ferry_ss start_ferry_ss "$m"
        else
            mark_ss ferry_ss "$m" "not available"
        fi
        run_peer_ss sslibev start_sschain "$m"
    done
}

# The multiplexer: streams/s and idle memory per stream through
# mux-local --socks -> mux-server --dynamic, against the Shadowsocks chains
# (the same shape: SOCKS5 in, a tunnel, the target out) in the same run;
# bulk over one stream against a plain relay.
MUX_SC="rate idle bulk_up bulk_down"

run_mux() {
    if ferry_has mux-local && ferry_has mux-server; then
        run_peer mux ferry_mux socks5 start_ferry_mux "" $MUX_SC
        run_peer mux ferry_ss socks5 start_ferry_ss chacha20-ietf-poly1305 rate idle
        run_peer mux ferry_relay tcp start_ferry_relay "" bulk_up bulk_down
    else
        mark_all mux ferry_mux "not available" $MUX_SC
    fi
    run_peer mux sslibev socks5 start_sschain chacha20-ietf-poly1305 rate idle
}

# UDP: datagram round trips through SOCKS5 UDP ASSOCIATE, 64 B and 1200 B:
# ferry socks against danted, and ferry's Shadowsocks chain with -u against
# ss-libev's (chacha20-ietf-poly1305); "direct" is the ceiling.
run_udp() {
    local sc=() z
    for z in $UDP_SIZES; do sc+=("udp$z"); done
    run_peer udp direct tcp direct "" "${sc[@]}"
    if ferry_has socks; then run_peer udp ferry socks5 start_ferry_socks "" "${sc[@]}"
    else mark_all udp ferry "not available" "${sc[@]}"; fi
    run_peer udp danted socks5 start_danted_udp "" "${sc[@]}"
    if ferry_has_ss_udp; then
        run_peer udpss ferry_ss_udp socks5 start_ferry_ss_udp chacha20-ietf-poly1305 "${sc[@]}"
    else
        UDP_NOTE="Note: \`ferry ss-local -u --help\` failed: ferry has no Shadowsocks UDP relay yet, its row is skipped."
        mark_all udpss ferry_ss_udp "skipped: ferry ss-local -u fails" "${sc[@]}"
    fi
    run_peer udpss sslibev_udp socks5 start_sschain_udp chacha20-ietf-poly1305 "${sc[@]}"
}

mark_ss() {        # PEER METHOD REASON: the same NA for every ss scenario of METHOD
    local sc
    for sc in $SS_SC; do RES[ss/${sc}_$2/$1]="NA $3"; done
}

# One namespace per peer and method; a fresh chain per scenario. The rate
# and bulk targets (echo, sink, source) are asked for in the SOCKS5 request.
run_peer_ss() {    # PEER STARTFN METHOD
    local p=$1 fn=$2 m=$3 sc
    if over_budget; then mark_ss "$p" "$m" "skipped: time budget"; return; fi
    log "== ss: $p $m"
    ns_enter "$p" || { ns_leave; mark_ss "$p" "$m" "upstream failed"; return; }
    for sc in $SS_SC; do
        PEER_PIDS=(); PORT=""
        if "$fn" "$P_PROXY" 0 "$m"; then
            measure "ss/${sc}_$m/$p" "$sc" socks5
        else
            RES[ss/${sc}_$m/$p]="NA failed to start"
        fi
        [ ${#PEER_PIDS[@]} -gt 0 ] && stop "${PEER_PIDS[@]}"
    done
    ns_leave
}

log "ferrybench: $( [ "$QUICK" = 1 ] && echo quick || echo full ) run, ${DUR}s per run, idle $IDLE_N, threads $THREADS, netns=$NETNS, tmp $TMP"
[[ ,$ONLY, == *,relay,* ]] && run_relay
[[ ,$ONLY, == *,socks,* ]] && run_socks
[[ ,$ONLY, == *,ss,* ]] && run_ss
[[ ,$ONLY, == *,filter,* ]] && run_filter
[[ ,$ONLY, == *,mux,* ]] && run_mux
[[ ,$ONLY, == *,udp,* ]] && run_udp
print_tables
log "ferrybench: done in $((SECONDS - T0)) s"
