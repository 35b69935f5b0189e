"""The Go yamux reference peer against itself: proves the harness that the
multiplexing feature's tests use (tests/yamux_peer, yamuxpeer.py) works.
Then ferry's codec (proto/yamux.c, through tests/yamux_peer/c/ferry_client.c)
against the Go server: the two implementations agree on the wire."""

import os
import socket
import subprocess

import pytest

import yamuxpeer


@pytest.mark.deadline(120)
def test_go_client_go_server_many_streams(yamux_peer, yamux_server):
    srv = yamux_server()
    # 16 streams x 1 MiB: four times the 256 KiB window each, so flow
    # control has to work, with streams interleaved on one connection.
    r = yamuxpeer.client(yamux_peer, srv.host, srv.port, streams=16, nbytes=1 << 20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok: 16 streams x 1048576 bytes echoed, 0 bad"), r.stdout


def test_go_client_target_prefix(yamux_peer, yamux_server):
    srv = yamux_server(args=["-strip-target"])
    r = yamuxpeer.client(yamux_peer, srv.host, srv.port, streams=2, nbytes=1000, target="example.test:8080")
    assert r.returncode == 0, r.stdout + r.stderr
    log = srv.stop()
    assert log.count("target example.test:8080") == 2, log


def test_client_reports_a_bad_echo(yamux_peer, yamux_server):
    """The plain TCP echo server speaks no yamux: it reflects the client's own
    frames, which the client must reject (exit 1), not report as success."""
    srv = yamux_server(mode="echo")
    r = yamuxpeer.client(yamux_peer, srv.host, srv.port, streams=1, nbytes=1000, timeout=10)
    assert r.returncode == 1, r.stdout + r.stderr


def test_echo_server(yamux_server):
    srv = yamux_server(mode="echo")
    with socket.create_connection((srv.host, srv.port), timeout=5) as s:
        s.sendall(b"ping")
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b"ping"


def _libferry():
    from conftest import FERRY_BIN, REPO
    for cand in (os.path.join(os.path.dirname(FERRY_BIN), "libferry.a"), os.path.join(REPO, "build", "libferry.a")):
        if os.path.exists(cand):
            return cand
    pytest.fail("no libferry.a next to %s: run `make`" % FERRY_BIN, pytrace=False)


@pytest.mark.deadline(120)
def test_ferry_codec_against_go_server(yamux_server, tmp_path):
    """Cross check: ferry's proto/yamux.c as a client of hashicorp/yamux, with
    more than a window per stream and a half-close on each."""
    from conftest import REPO, SANITIZED
    exe = str(tmp_path / "ferry_client")
    # The library of an ASan build (make asan-test) links only with ASan.
    san = ["-fsanitize=address,undefined"] if SANITIZED else []
    cc = subprocess.run(["cc", "-O1", "-g"] + san + ["-I" + os.path.join(REPO, "src"), "-o", exe,
                         os.path.join(REPO, "tests", "yamux_peer", "c", "ferry_client.c"), _libferry()],
                        capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    srv = yamux_server()
    r = subprocess.run([exe, str(srv.port), "16", str(1 << 20)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr + srv.stop()
    assert r.stdout.startswith("ok: 16 streams"), r.stdout
