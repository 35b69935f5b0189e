# shellcheck shell=bash
# peers.sh - how bench/ starts ferry and each peer; sourced by compare.sh
# and profile.sh so that both measure the same configurations.
#
# The caller defines:
#   spawn LOGNAME CMD...   runs CMD in the current namespace (prefix X=()),
#                          logging to $TMP/LOGNAME.log; sets LASTPID
#   TMP THREADS FERRY SS_PASS P_SS
# start_<peer> LISTEN_PORT UPSTREAM_PORT [METHOD] sets PEER_PIDS (to measure
# and stop) and fails when the peer does not come up. The *_udp variants
# start the same proxy with UDP relaying on (UDP ASSOCIATE).

descendants() {  # PID... -> the PIDs and all their children, grandchildren...
    local p c
    for p in "$@"; do
        echo "$p"
        for c in $(pgrep -P "$p" 2>/dev/null); do descendants "$c"; done
    done
}

wait_port() {    # PORT PID: up to 5 s for a listener; fails if PID exits
    local _
    for _ in $(seq 50); do
        kill -0 "$2" 2>/dev/null || return 1
        "${X[@]}" ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

wait_uport() {   # PORT PID: the same for a UDP socket
    local _
    for _ in $(seq 50); do
        kill -0 "$2" 2>/dev/null || return 1
        "${X[@]}" ss -Hlun "sport = :$1" 2>/dev/null | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

ferry_has() { [ -x "$FERRY" ] && "$FERRY" "$1" --help >/dev/null 2>&1; }

# Shadowsocks UDP (libev's -u on both ends): `ferry ss-local -u --help`
# fails while ferry has no such flag ('-u' is then --upstream, which
# ss-local rejects).
ferry_has_ss_udp() {
    [ -x "$FERRY" ] && "$FERRY" ss-local -u --help >/dev/null 2>&1 \
        && "$FERRY" ss-server -u --help >/dev/null 2>&1
}

start_ferry_relay() {
    spawn ferry-relay "$FERRY" relay -l "127.0.0.1:$1" -u "127.0.0.1:$2" \
        --threads "$THREADS" --log-level error
    PEER_PIDS=("$LASTPID"); wait_port "$1" "$LASTPID"
}

# The filter group: the same relay with an identity Lua filter, or with one
# rewrite rule (a pattern the load generator's bytes never contain, so it
# costs the scan and no replacement).
start_ferry_lua() {
    printf 'function on_data(s, dir, chunk, eof)\n  return chunk\nend\n' >"$TMP/identity.lua"
    spawn ferry-lua "$FERRY" relay -l "127.0.0.1:$1" -u "127.0.0.1:$2" \
        --threads "$THREADS" --log-level error --filter "$TMP/identity.lua"
    PEER_PIDS=("$LASTPID"); wait_port "$1" "$LASTPID"
}

start_ferry_rewrite() {
    spawn ferry-rewrite "$FERRY" relay -l "127.0.0.1:$1" -u "127.0.0.1:$2" \
        --threads "$THREADS" --log-level error --rewrite 'both:hex:fe11a5e1fe11a5e1:hex:00'
    PEER_PIDS=("$LASTPID"); wait_port "$1" "$LASTPID"
}

start_haproxy() {
    cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread $THREADS
    maxconn 9960
defaults
    mode tcp
    maxconn 9960
    timeout connect 5s
    timeout client 300s
    timeout server 300s
listen relay
    bind 127.0.0.1:$1
    server s1 127.0.0.1:$2
EOF
    spawn haproxy haproxy -db -f "$TMP/haproxy.cfg"
    PEER_PIDS=("$LASTPID"); wait_port "$1" "$LASTPID"
}

nginx_stream_module() {
    local m=/usr/lib/nginx/modules/ngx_stream_module.so
    if nginx -V 2>&1 | grep -q -- '--with-stream\( \|$\)'; then echo ""; return 0; fi
    [ -f "$m" ] && { echo "load_module $m;"; return 0; }
    return 1
}

start_nginx() {
    local lm; lm=$(nginx_stream_module) || return 1
    mkdir -p "$TMP/nginx/logs"
    cat >"$TMP/nginx.conf" <<EOF
$lm
daemon off;
worker_processes $THREADS;
worker_rlimit_nofile 20000;
pid $TMP/nginx/nginx.pid;
error_log stderr error;
events { worker_connections 20000; }
stream {
    server {
        listen 127.0.0.1:$1;
        proxy_pass 127.0.0.1:$2;
        proxy_connect_timeout 5s;
        proxy_timeout 300s;
    }
}
EOF
    spawn nginx nginx -p "$TMP/nginx" -e stderr -c "$TMP/nginx.conf"
    PEER_PIDS=("$LASTPID"); wait_port "$1" "$LASTPID"
}

start_ferry_socks() {
    spawn ferry-socks "$FERRY" socks -l "127.0.0.1:$1" --threads "$THREADS" --log-level error
    PEER_PIDS=("$LASTPID"); wait_port "$1" "$LASTPID"
}

start_microsocks() {
    spawn microsocks microsocks -i 127.0.0.1 -p "$1"
    PEER_PIDS=("$LASTPID"); wait_port "$1" "$LASTPID"
}

# danted on PORT with NAME's config; RULE is the body of its `socks pass`.
danted_with() {
    local name=$1 port=$2 rule=$3
    cat >"$TMP/$name.conf" <<EOF
logoutput: stderr
internal: 127.0.0.1 port = $port
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 log: error }
socks pass {
$rule
}
EOF
    spawn "$name" danted -f "$TMP/$name.conf" -p "$TMP/$name.pid"
    PEER_PIDS=("$LASTPID"); wait_port "$port" "$LASTPID"
}

start_danted() {
    danted_with danted "$1" "    from: 127.0.0.0/8 to: 0.0.0.0/0 log: error"
}

# danted for UDP ASSOCIATE: the commands spelled out (udpreply lets the
# echo server's answers back in); a command list must end its line.
# udp.connectdst stays at its default (yes: the relay socket is connected
# to the destination, the faster path).
start_danted_udp() {
    danted_with danted-udp "$1" "    from: 127.0.0.0/8 to: 0.0.0.0/0
    command: bind connect udpassociate bindreply udpreply
    log: error"
}

# ss-libev chain: ss-local on LISTEN_PORT -> ss-server on P_SS; arguments
# after METHOD go to both (-u: UDP relaying too).
start_sschain() {
    local m=${3:-chacha20-ietf-poly1305} extra=("${@:4}")
    spawn ss-server ss-server -s 127.0.0.1 -p "$P_SS" -k "$SS_PASS" -m "$m" -n 20000 --no-delay \
        "${extra[@]}"
    PEER_PIDS=("$LASTPID"); wait_port "$P_SS" "$LASTPID" || return 1
    spawn ss-local ss-local -s 127.0.0.1 -p "$P_SS" -b 127.0.0.1 -l "$1" -k "$SS_PASS" \
        -m "$m" -n 20000 --no-delay "${extra[@]}"
    PEER_PIDS+=("$LASTPID"); wait_port "$1" "$LASTPID"
}

start_sschain_udp() {
    start_sschain "$1" "$2" "${3:-chacha20-ietf-poly1305}" -u || return 1
    wait_uport "$P_SS" "${PEER_PIDS[0]}" && wait_uport "$1" "${PEER_PIDS[1]}"
}

# ferry's multiplexer: mux-local --socks on LISTEN_PORT -> one yamux
# connection (per thread) -> mux-server --dynamic on P_SS -> the target.
start_ferry_mux() {
    spawn ferry-mux-server "$FERRY" mux-server -l "127.0.0.1:$P_SS" --dynamic --threads "$THREADS" \
        --log-level error --mux-max-streams 20000
    PEER_PIDS=("$LASTPID"); wait_port "$P_SS" "$LASTPID" || return 1
    spawn ferry-mux-local "$FERRY" mux-local -l "127.0.0.1:$1" -s "127.0.0.1:$P_SS" --socks \
        --threads "$THREADS" --log-level error --mux-max-streams 20000 --queue-size 20000
    PEER_PIDS+=("$LASTPID"); wait_port "$1" "$LASTPID"
}

start_ferry_ss() {
    local m=${3:-chacha20-ietf-poly1305} extra=("${@:4}")
    spawn ferry-ss-server "$FERRY" ss-server -l "127.0.0.1:$P_SS" -k "$SS_PASS" -m "$m" \
        --threads "$THREADS" --log-level error "${extra[@]}"
    PEER_PIDS=("$LASTPID"); wait_port "$P_SS" "$LASTPID" || return 1
    spawn ferry-ss-local "$FERRY" ss-local -l "127.0.0.1:$1" -s "127.0.0.1:$P_SS" \
        -k "$SS_PASS" -m "$m" --threads "$THREADS" --log-level error "${extra[@]}"
    PEER_PIDS+=("$LASTPID"); wait_port "$1" "$LASTPID"
}

# ferry's chain with libev's flag for UDP on both ends. Only the server's
# UDP socket is waited for: the local side answers UDP ASSOCIATE on its TCP
# port and may open its relay sockets per association.
start_ferry_ss_udp() {
    start_ferry_ss "$1" "$2" "${3:-chacha20-ietf-poly1305}" -u || return 1
    wait_uport "$P_SS" "${PEER_PIDS[0]}"
}
