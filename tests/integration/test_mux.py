"""ferry mux-server (1:N) and mux-local (N:1): yamux streams through real
peers.

- hashicorp/yamux in Go (tests/yamux_peer): 200 streams at once into
  mux-server, each with its own data, sha256-checked by the peer; and a Go
  yamux echo server that mux-local multiplexes 200 TCP clients onto.
- yamux-js (npm) as a second client of mux-server.
- ferry to ferry: curl through mux-local --socks -> mux-server --dynamic,
  500 streams over one connection, a slow reader next to a fast one, the
  server side killed and re-dialled, the encrypted chain through
  ss-local/ss-server, drain with GoAway.
- A raw yamux client in Python for what no library will send: garbage and
  truncated frames, half-close, the stream limit.
"""

import os
import socket
import struct
import subprocess
import threading
import time

import pytest

import peers
import yamuxpeer
from conftest import SANITIZED, closed_port, curl, free_port, need, scaled
from peers import recv_exact

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")

DATA, WINDOW_UPDATE, PING, GO_AWAY = 0, 1, 2, 3
SYN, ACK, FIN, RST = 1, 2, 4, 8


# --------------------------------------------------------------------------
# a raw yamux client


def frame(typ, flags, sid, length, body=b""):
    return struct.pack(">BBHII", 0, typ, flags, sid, length) + body


class RawMux:
    """A yamux client over one socket, written frame by frame."""

    def __init__(self, host, port, timeout=5.0):
        self.s = socket.create_connection((host, port), timeout=scaled(timeout))
        self.buf = b""

    def send(self, b):
        self.s.sendall(b)

    def open(self, sid, payload=b""):
        self.send(frame(WINDOW_UPDATE, SYN, sid, 0))
        if payload:
            self.send(frame(DATA, 0, sid, len(payload), payload))

    def next_frame(self):
        """(type, flags, id, length, body) or None at EOF."""
        while True:
            if len(self.buf) >= 12:
                v, t, fl, sid, ln = struct.unpack(">BBHII", self.buf[:12])
                need = 12 + (ln if t == DATA else 0)
                if len(self.buf) >= need:
                    body = self.buf[12:need]
                    self.buf = self.buf[need:]
                    return t, fl, sid, ln, body
            d = self.s.recv(65536)
            if not d:
                return None
            self.buf += d

    def read_stream(self, sid, want):
        """Payload of stream sid until want bytes or its FIN/RST; the other frames are kept in .seen."""
        got, self.seen = b"", getattr(self, "seen", [])
        while len(got) < want:
            f = self.next_frame()
            if f is None:
                break
            t, fl, fsid, ln, body = f
            self.seen.append(f)
            if fsid == sid and t == DATA:
                got += body
            if fsid == sid and fl & (FIN | RST):
                break
        return got

    def close(self):
        self.s.close()


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture
def echo(servers):
    return servers(peers.h_echo)


@pytest.fixture
def dns(fakedns):
    return fakedns(records={"web.ferry.test": ["127.0.0.1"]})


def mux_pair(ferry, dns, *local_args, server_args=()):
    """mux-server --dynamic and a mux-local --socks in front of it."""
    srv = ferry("mux-server", "--dynamic", "--dns-server", dns.addr, "--drain-timeout", "1s", *server_args)
    loc = ferry("mux-local", "-s", srv.addr, "--socks", "--drain-timeout", "1s", *local_args)
    return srv, loc


def s5_connect(f, host, port, timeout=10.0):
    s = f.connect(timeout=scaled(timeout))
    s.sendall(b"\x05\x01\x00")
    assert recv_exact(s, 2) == b"\x05\x00"
    h = host.encode()
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(h)]) + h + struct.pack(">H", port))
    rep = recv_exact(s, 10)
    return s, rep[1]


def pattern(i, n):
    return bytes((k * 31 + i * 7 + (k >> 8)) & 0xFF for k in range(n))


# --------------------------------------------------------------------------
# hashicorp/yamux (Go) on either side


@pytest.mark.deadline(120)
def test_go_client_200_streams_into_mux_server(ferry, echo, yamux_peer):
    f = ferry("mux-server", "-u", echo.addr)
    r = yamuxpeer.client(yamux_peer, f.host, f.port, streams=200, nbytes=64 * 1024, timeout=60)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:] + f.log()[-3000:]
    assert r.stdout.startswith("ok: 200 streams x 65536 bytes echoed, 0 bad"), r.stdout
    ss = f.wait_sessions(200)
    assert len(ss) == 200
    # One connection; every session names its stream, and no two the same.
    assert {s.get("mux") for s in ss} == {ss[0]["mux"]}
    assert len({s.get("stream") for s in ss}) == 200
    assert all(s["up"] == "65536" and s["down"] == "65536" for s in ss), ss[:3]


def test_go_client_dynamic_target(ferry, echo, yamux_peer):
    f = ferry("mux-server", "--dynamic")
    r = yamuxpeer.client(yamux_peer, f.host, f.port, streams=8, nbytes=100000, target=echo.addr, timeout=30)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:] + f.log()[-3000:]
    ss = f.wait_sessions(8)
    assert all(s["dest"] == echo.addr and s["proto"] == "mux" for s in ss), ss


def _echo_client(addr, i, n, results):
    try:
        s = socket.create_connection(addr, timeout=scaled(30))
        data = pattern(i, n)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)       # ferry turns it into the stream's FIN
        got, how = peers.read_until_close(s, timeout=scaled(30))
        s.close()
        results[i] = how == "eof" and peers.sha256(got) == peers.sha256(data) or (how, len(got))
    except Exception as e:  # noqa: BLE001 - recorded, asserted below
        results[i] = repr(e)


@pytest.mark.deadline(120)
def test_mux_local_multiplexes_200_clients_onto_go_server(ferry, yamux_server):
    go = yamux_server(mode="server")       # hashicorp/yamux: echoes every stream
    f = ferry("mux-local", "-s", "%s:%d" % (go.host, go.port), "--drain-timeout", "1s", "--threads", "1")
    results = {}
    ts = [threading.Thread(target=_echo_client, args=((f.host, f.port), i, 20000 + i, results)) for i in range(200)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(scaled(60))
    bad = {i: r for i, r in results.items() if r is not True}
    assert len(results) == 200 and not bad, (bad, go.stop()[-2000:], f.log()[-3000:])
    ss = f.wait_sessions(200)
    assert len({s["mux"] for s in ss}) == 1, "one connection carries them all"


def test_yamux_js_client(ferry, echo):
    need("node")
    node = "node"
    mod = os.path.join(NODE_DIR, "node_modules", "yamux-js")
    if not os.path.isdir(mod):
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, timeout=300)
        assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    f = ferry("mux-server", "-u", echo.addr)
    r = subprocess.run([node, os.path.join(NODE_DIR, "yamux_client.js"), f.host, str(f.port), "10", "2000"],
                       capture_output=True, text=True, timeout=scaled(60))
    assert r.returncode == 0, r.stdout + r.stderr + f.log()[-3000:]
    assert r.stdout.startswith("ok: 10 streams x 2000 bytes echoed, 0 bad"), r.stdout
    assert len(f.wait_sessions(10)) == 10


# --------------------------------------------------------------------------
# ferry to ferry


@pytest.mark.deadline(90)
def test_curl_through_mux_local_socks_and_mux_server_dynamic(ferry, dns, http4, bigfile):
    srv, loc = mux_pair(ferry, dns, "--threads", "1")     # one worker: one connection
    url = "http://web.ferry.test:%d/big.bin" % http4.port
    for _ in range(2):      # the second reuses the same connection
        r = curl("--socks5-hostname", loc.addr, "-o", "-", url)
        assert r.returncode == 0, r.stderr
        assert peers.sha256(r.stdout) == bigfile["big"]
    ls = loc.wait_sessions(2)
    assert [s["dest"] for s in ls] == ["web.ferry.test:%d" % http4.port] * 2
    assert ls[0]["mux"] == ls[1]["mux"] and ls[0]["stream"] != ls[1]["stream"]
    ss = srv.wait_sessions(2)
    assert all(s["upstream"] == "127.0.0.1:%d" % http4.port and s["down"] == ls[0]["down"] for s in ss), ss


def test_socks_reply_reports_a_failed_connect_at_the_far_end(ferry, dns):
    srv, loc = mux_pair(ferry, dns)
    s, rep = s5_connect(loc, "127.0.0.1", closed_port())
    s.close()
    assert rep == 0x01, "a stream reset before it opened is a general failure"
    assert loc.wait_sessions(1)[0]["end"] == "mux_refused"
    assert srv.wait_sessions(1)[0]["end"] == "connect_refused"


def test_dynamic_target_obeys_the_destination_policy(ferry, dns, echo):
    srv, loc = mux_pair(ferry, dns, server_args=("--deny-dest", "127.0.0.0/8"))
    s, rep = s5_connect(loc, "127.0.0.1", echo.port)
    s.close()
    assert rep != 0
    assert srv.wait_sessions(1)[0]["end"] == "denied"


@pytest.mark.deadline(120)
def test_500_streams_over_one_connection(ferry, dns, echo):
    srv, loc = mux_pair(ferry, dns, "--mux-conns", "1", "--threads", "1")
    socks, errors = [], []
    for i in range(500):
        s, rep = s5_connect(loc, "127.0.0.1", echo.port)
        assert rep == 0, "stream %d refused: %#x" % (i, rep)
        socks.append(s)
    # All 500 open at once, then each echoes its own bytes.
    for i, s in enumerate(socks):
        s.sendall(b"%d:" % i + pattern(i, 1000))
    for i, s in enumerate(socks):
        want = b"%d:" % i + pattern(i, 1000)
        if recv_exact(s, len(want)) != want:
            errors.append(i)
        s.close()
    assert not errors
    ss = srv.wait_sessions(500, timeout=20)
    assert len(ss) == 500 and len({s["mux"] for s in ss}) == 1


@pytest.mark.deadline(120)
def test_slow_reader_stalls_only_its_own_stream(ferry, dns, servers, http4, bigfile):
    flood = servers(peers.h_flood)
    srv, loc = mux_pair(ferry, dns, "--mux-conns", "1")
    slow, rep = s5_connect(loc, "127.0.0.1", flood.port)
    assert rep == 0
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    time.sleep(1.0)                         # the flood fills every buffer on its way
    rss0 = (srv.rss_kib(), loc.rss_kib())
    t0 = time.monotonic()
    r = curl("--socks5-hostname", loc.addr, "-o", "-", "http://127.0.0.1:%d/big.bin" % http4.port)
    took = time.monotonic() - t0
    assert r.returncode == 0 and peers.sha256(r.stdout) == bigfile["big"], r.stderr
    time.sleep(0.5)
    rss1 = (srv.rss_kib(), loc.rss_kib())
    # The flooding stream holds at most its window on each side: ferry does
    # not buffer what the slow client does not read. (ASan's quarantine
    # keeps freed buffers resident: there only the flood's count tells.)
    if not SANITIZED:
        assert rss1[0] - rss0[0] < 16 * 1024 and rss1[1] - rss0[1] < 16 * 1024, (rss0, rss1)
    # Flow control stops the flood once the kernel's buffers on the way are
    # full (a few MB on loopback): its count stops growing.
    def sent():
        with flood.lock:
            return sum(flood.counters.values())
    last, stable_since = sent(), time.monotonic()
    deadline = time.monotonic() + scaled(10)
    while time.monotonic() - stable_since < 1.0:
        assert time.monotonic() < deadline, "the flood never stopped: %d bytes sent" % sent()
        time.sleep(0.1)
        now = sent()
        if now != last:
            last, stable_since = now, time.monotonic()
    assert last < 64 * 1024 * 1024, last
    assert took < scaled(30)
    slow.close()


@pytest.mark.deadline(90)
def test_server_side_killed_clients_closed_then_redialled(ferry, dns, echo):
    port = free_port()
    srv = ferry("mux-server", "--dynamic", "-l", "127.0.0.1:%d" % port, "--dns-server", dns.addr)
    loc = ferry("mux-local", "-s", srv.addr, "--socks", "--drain-timeout", "1s", "--connect-timeout", "3s")
    s, rep = s5_connect(loc, "127.0.0.1", echo.port)
    assert rep == 0
    s.sendall(b"before")
    assert recv_exact(s, 6) == b"before"
    srv.expect_exit = True
    srv.proc.kill()
    srv.proc.wait(5)
    s.settimeout(scaled(5))
    try:
        gone = s.recv(100) == b""
    except ConnectionResetError:
        gone = True
    assert gone, "the client of a lost mux connection is closed"
    s.close()
    assert loc.wait_sessions(1)[0]["end"] == "mux_error"
    srv2 = ferry("mux-server", "--dynamic", "-l", "127.0.0.1:%d" % port, "--dns-server", dns.addr)
    deadline = time.monotonic() + scaled(15)
    while True:
        s, rep = s5_connect(loc, "127.0.0.1", echo.port)
        if rep == 0:
            break
        s.close()
        assert time.monotonic() < deadline, "never served after the re-dial:\n" + loc.log()[-3000:]
        time.sleep(0.2)
    s.sendall(b"after")
    assert recv_exact(s, 5) == b"after"
    s.close()
    assert srv2.alive()


@pytest.mark.deadline(90)
def test_encrypted_chain_through_ss_local_and_ss_server(ferry, dns, http4, bigfile):
    pw = "Mux-Ch41n-Pa55w0rd"
    msrv = ferry("mux-server", "--dynamic", "--dns-server", dns.addr, "--drain-timeout", "1s")
    ssrv = ferry("ss-server", "-k", pw, "--allow-dest", "127.0.0.0/8", "--drain-timeout", "1s")
    sloc = ferry("ss-local", "-s", ssrv.addr, "-k", pw, "--tunnel-to", msrv.addr, "--drain-timeout", "1s")
    mloc = ferry("mux-local", "-s", sloc.addr, "--socks", "--drain-timeout", "1s")
    r = curl("--socks5-hostname", mloc.addr, "-o", "-", "http://web.ferry.test:%d/big.bin" % http4.port)
    assert r.returncode == 0, r.stderr + mloc.log()[-2000:]
    assert peers.sha256(r.stdout) == bigfile["big"]
    # The mux connection itself is the one Shadowsocks session.
    assert msrv.wait_sessions(1)[0]["dest"] == "web.ferry.test:%d" % http4.port


# --------------------------------------------------------------------------
# the protocol edges, with a raw client


def test_garbage_gets_goaway_and_others_go_on(ferry, echo):
    f = ferry("mux-server", "-u", echo.addr)
    good = RawMux(f.host, f.port)
    good.open(1, b"hello")
    assert good.read_stream(1, 5) == b"hello"
    bad = RawMux(f.host, f.port)
    bad.open(1, b"x")
    bad.send(b"\x07" + b"\xff" * 11)          # version 7
    frames = []
    while True:
        fr = bad.next_frame()
        if fr is None:
            break
        frames.append(fr)
    assert (GO_AWAY, 0, 0, 1, b"") in frames, frames     # protocol error
    trunc = RawMux(f.host, f.port)
    trunc.send(frame(DATA, SYN, 1, 100, b"short"))       # then gone mid-frame
    trunc.close()
    good.send(frame(DATA, 0, 1, 5, b"again"))
    assert good.read_stream(1, 5) == b"again"
    good.close()
    assert peers.wait_until(lambda: "version" in f.log(), scaled(5)), f.log()
    assert f.alive()


def test_half_close_both_ways(ferry, servers):
    def h(srv, c, peer):
        data, _ = peers.read_until_close(c, timeout=10)    # until the stream's FIN
        c.sendall(b"got %d" % len(data))
        c.shutdown(socket.SHUT_WR)
    srv = servers(h)
    f = ferry("mux-server", "-u", srv.addr)
    m = RawMux(f.host, f.port)
    m.open(1, b"abc")
    m.send(frame(WINDOW_UPDATE, FIN, 1, 0))
    assert m.read_stream(1, 100) == b"got 3"
    assert any(fr[2] == 1 and fr[1] & FIN for fr in m.seen), m.seen
    assert f.wait_sessions(1)[0]["end"] in ("client_closed", "upstream_closed")


def test_stream_limit_resets_the_extra_stream(ferry, echo):
    f = ferry("mux-server", "-u", echo.addr, "--mux-max-streams", "2")
    m = RawMux(f.host, f.port)
    for sid in (1, 3, 5):
        m.open(sid, b"s%d" % sid)
    got = {1: b"", 3: b"", 5: b""}
    reset = set()
    deadline = time.monotonic() + scaled(5)
    while (len(got[1]) < 2 or len(got[3]) < 2 or 5 not in reset) and time.monotonic() < deadline:
        t, fl, sid, ln, body = m.next_frame()
        if t == DATA and sid in got:
            got[sid] += body
        if fl & RST:
            reset.add(sid)
    assert got[1] == b"s1" and got[3] == b"s3" and reset == {5}, (got, reset)


def test_drain_sends_goaway_and_lets_streams_finish(ferry, echo):
    f = ferry("mux-server", "-u", echo.addr, "--drain-timeout", "5s")
    m = RawMux(f.host, f.port)
    m.open(1, b"one")
    assert m.read_stream(1, 3) == b"one"
    f.signal(15)
    while True:
        fr = m.next_frame()
        assert fr is not None, "closed without GoAway"
        if fr[0] == GO_AWAY:
            assert fr[3] == 0      # normal
            break
    m.send(frame(DATA, 0, 1, 3, b"two"))       # the open stream goes on
    assert m.read_stream(1, 3) == b"two"
    m.open(3, b"new")                         # a new one is refused
    while True:
        fr = m.next_frame()
        assert fr is not None
        if fr[2] == 3 and fr[1] & RST:
            break
    m.send(frame(WINDOW_UPDATE, RST, 1, 0))   # last stream done: ferry exits
    f.expect_exit = True
    assert f.wait(scaled(5)) == 0


def test_keepalive_drops_a_peer_that_stops_answering(ferry, servers):
    silent = servers(peers.h_silent)
    f = ferry("mux-local", "-s", silent.addr, "--mux-keepalive", "200ms", "--drain-timeout", "1s")
    assert peers.wait_until(lambda: "keepalive" in f.log(), scaled(5)), f.log()
    assert peers.wait_until(lambda: silent.accepted >= 2, scaled(5)), "re-dialled after the drop"


def test_check_knows_the_modes(workdir):
    from conftest import run_ferry
    # Each refused at start, in one line naming what is missing.
    r = run_ferry("mux-server", "-l", "127.0.0.1:1")
    assert r.returncode != 0 and b"--dynamic" in r.stderr, r.stderr
    r = run_ferry("mux-server", "-l", "0.0.0.0:1", "--dynamic")
    assert r.returncode != 0 and b"open proxy" in r.stderr, r.stderr
    r = run_ferry("mux-local", "-l", "127.0.0.1:1")
    assert r.returncode != 0 and b"-s HOST:PORT" in r.stderr, r.stderr
    cfg = os.path.join(workdir, "mux.yaml")
    with open(cfg, "w") as fh:
        fh.write("listeners:\n"
                 "  - {name: in, mode: mux-server, listen: 127.0.0.1:1, dynamic: true, mux-keepalive: 10s}\n"
                 "  - {name: out, mode: mux-local, listen: 127.0.0.1:2, server: 127.0.0.1:1, socks: true,"
                 " mux-conns: 2}\n")
    r = run_ferry("check", "-c", cfg)
    assert r.returncode == 0, r.stderr


def test_mux_local_refuses_beyond_its_stream_limit(ferry, dns, echo):
    srv, loc = mux_pair(ferry, dns, "--mux-max-streams", "2", "--threads", "1")
    a, rep_a = s5_connect(loc, "127.0.0.1", echo.port)
    b, rep_b = s5_connect(loc, "127.0.0.1", echo.port)
    c, rep_c = s5_connect(loc, "127.0.0.1", echo.port)
    assert (rep_a, rep_b) == (0, 0) and rep_c != 0
    for s in (a, b, c):
        s.close()
    assert any(s["end"] == "limit" for s in loc.wait_sessions(3))


def test_streams_are_sessions_limits_rewrite_and_hexdump_apply(ferry, echo, workdir):
    dump = os.path.join(workdir, "hex.txt")
    f = ferry("mux-server", "-u", echo.addr, "--maxconn", "3", "--rewrite", "both:hello:HELLO",
              "--hexdump-file", dump)
    m = RawMux(f.host, f.port)
    m.open(1, b"hello")
    assert m.read_stream(1, 5) == b"HELLO"                 # rewritten on the way up
    m.open(3, b"x")
    assert m.read_stream(3, 1) == b"x"
    m.open(5, b"y")                                       # the connection + 2 streams = maxconn 3
    while True:
        fr = m.next_frame()
        assert fr is not None
        if fr[2] == 5 and fr[1] & RST:
            break
    assert peers.wait_until(lambda: "refused=maxconn" in f.log(), scaled(5)), f.log()
    m.close()
    ss = f.wait_sessions(2)
    assert {s["stream"] for s in ss} == {"1", "3"}
    assert peers.wait_until(lambda: os.path.exists(dump) and b"HELLO" in open(dump, "rb").read(), scaled(5))


def test_a_dial_that_hangs_gives_up_at_the_connect_timeout(ferry, blackhole):
    bh = blackhole()
    f = ferry("mux-local", "-s", "%s:%d" % (bh.host, bh.port), "--connect-timeout", "500ms",
              "--drain-timeout", "1s", "--threads", "1")
    assert peers.wait_until(lambda: "connect timed out" in f.log() or "timed out" in f.log(), scaled(5)), f.log()
    # A client meanwhile waits at most the connect timeout, then is refused.
    s = f.connect()
    s.sendall(b"x")
    got, how = peers.read_until_close(s, timeout=scaled(5))
    assert how in ("eof", "reset"), how
    s.close()
