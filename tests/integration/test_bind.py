"""SOCKS BIND (RFC 1928 section 4, SOCKS4 BIND) through ferry socks: the
FTP-style active connection (a control connection through CONNECT, the data
connection made back to the address BIND's first reply names), SOCKS4 and
SOCKS5, --bind-strict, the timeout, and the npm `socks` package's bind API
as a second real client."""

import os
import socket
import struct
import subprocess
import threading

import pytest

import peers
from conftest import need, scaled
from peers import recv_exact, recv_line
from test_socks import s4_reply, s5_greet, s5_reply, s5_req

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")


def ftp_like_server(srv, c, peer):
    """A control connection: 'PORT host:port\\n' asks it to connect there
    (as an active-mode FTP server opens its data connection), send DATA and
    half-close; it then reports what came back on the data connection."""
    line = recv_line(c)
    host, port = line.decode().split()[1].rsplit(":", 1)
    d = socket.create_connection((host, int(port)), timeout=10, source_address=(srv.host, 0))
    srv.record(("data_from", d.getsockname()))
    d.sendall(b"DATA" * 1000)
    d.shutdown(socket.SHUT_WR)
    got, _ = peers.read_until_close(d, timeout=10)
    d.close()
    c.sendall(b"GOT %d\n" % len(got))


def s5_bind(f, host="0.0.0.0", port=0):
    s = f.connect(timeout=scaled(5))
    assert s5_greet(s) == 0
    s.sendall(s5_req(2, host, port))
    rep, bh, bp = s5_reply(s)
    return s, rep, bh, bp


def test_ftp_style_active_connection_socks5(ferry, servers):
    ftp = servers(ftp_like_server)
    f = ferry("socks")
    ctl = f.connect()
    assert s5_greet(ctl) == 0
    ctl.sendall(s5_req(1, "127.0.0.1", ftp.port))
    assert s5_reply(ctl)[0] == 0
    data, rep, bh, bp = s5_bind(f, "127.0.0.1", 0)
    assert rep == 0 and bh == "127.0.0.1" and bp != 0, (rep, bh, bp)
    ctl.sendall(b"PORT %s:%d\n" % (bh.encode(), bp))
    rep2, ph, pp = s5_reply(data)                   # second reply: who connected
    assert rep2 == 0
    assert peers.wait_until(lambda: ftp.events, scaled(5))
    assert (ph, pp) == ftp.events[0][1][:2], (ph, pp, ftp.events)
    got, how = peers.read_until_close(data, timeout=scaled(5))
    assert got == b"DATA" * 1000 and how == "eof"
    data.sendall(b"ack")                          # the other way too (half-closed only one way)
    data.shutdown(socket.SHUT_WR)
    assert recv_line(ctl) == b"GOT 3\n"
    data.close()
    ctl.close()
    ss = f.wait_sessions(2)
    assert any(s["upstream"] == "%s:%d" % (ph, pp) for s in ss), ss


def test_socks4_bind(ferry):
    f = ferry("socks")
    s = f.connect()
    s.sendall(struct.pack("!BBH", 4, 2, 0) + socket.inet_aton("127.0.0.1") + b"\0")
    r = recv_exact(s, 8)
    assert r[1] == 0x5A, r
    port, ip = struct.unpack("!H", r[2:4])[0], socket.inet_ntoa(r[4:8])
    peer = socket.create_connection((ip, port), timeout=scaled(5))
    r2 = recv_exact(s, 8)
    assert r2[1] == 0x5A and struct.unpack("!H", r2[2:4])[0] == peer.getsockname()[1], r2
    peer.sendall(b"hello")
    assert recv_exact(s, 5) == b"hello"
    s.sendall(b"back")
    assert recv_exact(peer, 4) == b"back"
    peer.close()
    s.close()


def test_bind_strict_refuses_others_and_times_out(ferry):
    f = ferry("socks", "--bind-strict", "--connect-timeout", "1s")
    s, rep, bh, bp = s5_bind(f, "127.0.0.9", 0)      # only 127.0.0.9 may come
    assert rep == 0
    try:
        stranger = socket.create_connection((bh, bp), timeout=scaled(5), source_address=("127.0.0.3", 0))
        got, how = peers.read_until_close(stranger, timeout=scaled(5))
        stranger.close()
    except ConnectionResetError:       # reset before connect() had returned
        got, how = b"", "reset"
    assert got == b"" and how in ("eof", "reset")
    # Nobody else: the second reply is a failure once the connect timeout passes.
    rep2, _, _ = s5_reply(s)
    assert rep2 != 0
    s.close()
    assert peers.wait_until(lambda: "--bind-strict" in f.log(), scaled(5)), f.log()
    assert f.wait_sessions(1, pred=lambda d: "end" in d)[0]["end"] == "connect_timeout"


def test_bind_expected_peer_is_accepted(ferry):
    f = ferry("socks", "--bind-strict")
    s, rep, bh, bp = s5_bind(f, "127.0.0.9", 0)
    assert rep == 0
    peer = socket.create_connection((bh, bp), timeout=scaled(5), source_address=("127.0.0.9", 0))
    rep2, ph, _ = s5_reply(s)
    assert rep2 == 0 and ph == "127.0.0.9"
    peer.sendall(b"x")
    assert recv_exact(s, 1) == b"x"
    peer.close()
    s.close()


def test_npm_socks_bind_api(ferry):
    need("node")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "socks")):
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, timeout=300)
        assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    f = ferry("socks")
    r = subprocess.run(["node", os.path.join(NODE_DIR, "socks_bind.js"), f.addr], capture_output=True, text=True,
                       timeout=scaled(30), env=dict(os.environ, FERRY_TIME_SCALE=str(scaled(1))))
    assert r.returncode == 0 and "ALL OK" in r.stdout, r.stdout + r.stderr + f.log()[-2000:]
