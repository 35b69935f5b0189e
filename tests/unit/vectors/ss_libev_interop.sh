#!/bin/sh
# One-off interop check of ferry's Shadowsocks AEAD layer against the real
# shadowsocks-libev (Debian package shadowsocks-libev). Everything stays on
# 127.0.0.1. Run from the repository root:  sh tests/unit/vectors/ss_libev_interop.sh
set -eu
PW=interop-password
BIN=${TMPDIR:-/tmp}/ss_libev_interop
cc -std=gnu11 -O2 -D_GNU_SOURCE -Isrc -pthread -o "$BIN" \
    tests/unit/vectors/ss_libev_interop.c src/proto/ss_aead.c \
    src/crypto/ss_cipher.c src/crypto/replay.c -lcrypto
base=$((20000 + $$ % 20000))
pids=
stop_all() { for p in $pids; do kill "$p" 2>/dev/null || true; done; wait; }
trap stop_all EXIT
i=0
for m in chacha20-ietf-poly1305 aes-256-gcm aes-192-gcm aes-128-gcm; do
    sp=$((base + i * 3)); fp=$((sp + 1)); lp=$((sp + 2)); i=$((i + 1))
    ss-server -s 127.0.0.1 -p "$sp" -k "$PW" -m "$m" >/dev/null 2>&1 & pids="$pids $!"
    ss-local -s 127.0.0.1 -p "$fp" -l "$lp" -b 127.0.0.1 -k "$PW" -m "$m" >/dev/null 2>&1 & pids="$pids $!"
    timeout 60 "$BIN" server "$m" "$PW" "$sp"
    timeout 60 "$BIN" local "$m" "$PW" "$fp" "$lp"
done
# A raw key given as base64 (ss-libev --key; URL-safe alphabet).
m=aes-128-gcm; sp=$((base + i * 3))
KEY=$(/usr/bin/python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(16)).decode())')
ss-server -s 127.0.0.1 -p "$sp" --key "$KEY" -m "$m" >/dev/null 2>&1 & pids="$pids $!"
timeout 60 "$BIN" server "$m" "key:$KEY" "$sp"
