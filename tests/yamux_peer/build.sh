#!/bin/sh
# Builds tests/yamux_peer into OUTDIR/yamux_peer, offline: GOPATH mode over
# the sources Debian's golang-*-dev packages install under
# /usr/share/gocode/src (golang-github-hashicorp-yamux-dev), no module
# download, no proxy. The build cache lives in OUTDIR/.gocache, so HOME
# need not be writable and rebuilds are quick.
#   tests/yamux_peer/build.sh OUTDIR
set -eu

out=${1:?usage: tests/yamux_peer/build.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
gocode=/usr/share/gocode

if ! command -v go >/dev/null 2>&1; then
    echo "build.sh: 'go' not found: apt-get install golang-go golang-github-hashicorp-yamux-dev (scripts/install-deps does)" >&2
    exit 1
fi
if [ ! -d "$gocode/src/github.com/hashicorp/yamux" ]; then
    echo "build.sh: $gocode/src/github.com/hashicorp/yamux missing: apt-get install golang-github-hashicorp-yamux-dev" >&2
    exit 1
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here"
# GO111MODULE=off: resolve imports from GOPATH, not go.mod; GOFLAGS cleared
# so a -mod=... from the environment cannot switch modules back on;
# GOPROXY=off: never reach for the network.
env GO111MODULE=off GOPATH="$out/gopath:$gocode" GOFLAGS= GOPROXY=off GOCACHE="$out/.gocache" \
    go build -o "$out/yamux_peer" .
