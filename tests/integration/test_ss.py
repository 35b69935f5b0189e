"""Integration tests for `ferry ss-server` and `ferry ss-local` (Shadowsocks
AEAD) through real peers: shadowsocks-libev's ss-local / ss-server /
ss-tunnel, curl, raw SOCKS clients, and a recording TCP proxy (between a
Shadowsocks client and ferry ss-server) used to capture, replay and corrupt
the encrypted stream.

Every libev process is started by the `libev` fixture, which kills it at
teardown (and asks the kernel to kill it if the test process dies).
Name resolution only ever goes to fake DNS servers on loopback.
"""

import base64
import ctypes
import hashlib
import os
import random
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import peers
from conftest import curl, file_sha256, free_port, listening, scaled
from peers import read_until_close, recv_exact, recv_line

PW = "Fe-rry_Ss-Pa55w0rd-7Q"      # no 'x' in it: ferry blanks argv with 'x'
WRONG_PW = "Not-The-Pa55w0rd-9Z"
METHODS = ["chacha20-ietf-poly1305", "aes-128-gcm", "aes-256-gcm"]
TEN_MB = 10 * 1024 * 1024
HS = "1s"                          # --handshake-timeout for anti-probing tests
HS_S = 1.0


# --------------------------------------------------------------------------
# fixtures: a 10 MB file, fake DNS, ferry ss-server / ss-local, libev


@pytest.fixture(scope="module")
def tenmb(bigfile):
    """A 10 MB random file next to the harness's files (served by http4)."""
    data = os.urandom(TEN_MB)
    with open(os.path.join(bigfile["dir"], "ten.bin"), "wb") as f:
        f.write(data)
    return {"name": "ten.bin", "sha": peers.sha256(data), "len": len(data)}


@pytest.fixture
def dns(fakedns):
    return fakedns(records={"web.ferry.test": ["127.0.0.1"], "web6.ferry.test": ["::1"]})


def _ferry_ss(ferry, dns, mode, args, kw):
    a = [str(x) for x in args]
    if "--dns-server" not in a:
        a += ["--dns-server", dns.addr]
    if not any(x == "--drain-timeout" for x in a):
        a += ["--drain-timeout", "1s"]
    return ferry(mode, *a, **kw)


@pytest.fixture
def fsrv(ferry, dns):
    """fsrv(*args) -> ferry ss-server (password PW unless args carry a secret)."""
    def start(*args, method=None, **kw):
        a = list(args)
        if not any(x in a for x in ("-k", "--password", "--password-file", "--key")):
            a += ["-k", PW]
        if method:
            a += ["-m", method]
        return _ferry_ss(ferry, dns, "ss-server", a, kw)
    return start


@pytest.fixture
def flocal(ferry, dns):
    """flocal(server_addr, *args) -> ferry ss-local tunnelling to server_addr."""
    def start(server, *args, method=None, **kw):
        a = ["-s", server] + list(args)
        if not any(x in a for x in ("-k", "--password", "--password-file", "--key")):
            a += ["-k", PW]
        if method:
            a += ["-m", method]
        return _ferry_ss(ferry, dns, "ss-local", a, kw)
    return start


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG: never outlive pytest


class LibevProc:
    def __init__(self, argv, port, workdir):
        self.argv = argv
        self.port = port
        self.addr = "127.0.0.1:%d" % port
        self.log_path = os.path.join(workdir, "%s-%d.log" % (os.path.basename(argv[0]), port))
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     preexec_fn=_die_with_parent, close_fds=True)
        self.pid = self.proc.pid

    def wait_listening(self):
        deadline = time.monotonic() + scaled(5)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if listening(self.pid, self.port):
                return True
            time.sleep(0.01)
        return False

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@pytest.fixture
def libev(workdir):
    """libev(prog, *args) -> a running shadowsocks-libev program listening on
    127.0.0.1:PORT; the fixture adds the listening options (-s/-p for
    ss-server, -b/-l for ss-local and ss-tunnel).  Killed at teardown."""
    made = []

    def start(prog, *args):
        path = shutil.which(prog)
        if not path:
            pytest.skip("%s is not installed (apt-get install shadowsocks-libev)" % prog)
        last = None
        for _ in range(3):
            port = free_port()
            if prog == "ss-server":
                argv = [path, "-s", "127.0.0.1", "-p", str(port)]
            else:
                argv = [path, "-b", "127.0.0.1", "-l", str(port)]
            argv += [str(a) for a in args]
            p = LibevProc(argv, port, workdir)
            made.append(p)
            if p.wait_listening():
                return p
            last = p
            p.stop()
        raise AssertionError("%s did not listen: argv=%s\nlog:\n%s" % (prog, last.argv, last.log()))

    yield start
    for p in made:
        p.stop()


def libev_server(libev, method="chacha20-ietf-poly1305", pw=PW, key=None):
    secret = ["--key", key] if key else ["-k", pw]
    return libev("ss-server", *secret, "-m", method)


def libev_local(libev, server_addr, method="chacha20-ietf-poly1305", pw=PW, key=None, prog="ss-local",
                extra=()):
    host, port = server_addr.rsplit(":", 1)
    secret = ["--key", key] if key else ["-k", pw]
    return libev(prog, "-s", host, "-p", port, *secret, "-m", method, *extra)


# --------------------------------------------------------------------------
# raw SOCKS clients


def s5_request_bytes(host, port):
    for fam, atyp in ((socket.AF_INET, 1), (socket.AF_INET6, 4)):
        try:
            return bytes([5, 1, 0, atyp]) + socket.inet_pton(fam, host) + struct.pack("!H", port)
        except OSError:
            pass
    h = host.encode()
    return bytes([5, 1, 0, 3, len(h)]) + h + struct.pack("!H", port)


def s5_read_reply(s):
    hdr = recv_exact(s, 4, "SOCKS5 reply header")
    assert hdr[0] == 5, "SOCKS5 reply version %r" % hdr
    alen = {1: 4, 4: 16}.get(hdr[3])
    if alen is None:
        alen = recv_exact(s, 1, "BND.ADDR length")[0]
    recv_exact(s, alen + 2, "BND.ADDR/PORT")
    return hdr[1]


def s5_connect(proxy_addr, host, port, timeout=5.0):
    """SOCKS5 CONNECT through proxy_addr ("127.0.0.1:PORT"); returns the socket."""
    ph, pp = proxy_addr.rsplit(":", 1)
    s = peers.connect(ph, int(pp), timeout=scaled(timeout))
    s.sendall(b"\x05\x01\x00")
    r = recv_exact(s, 2, "SOCKS5 method selection")
    assert r == b"\x05\x00", "method selection %r" % r
    s.sendall(s5_request_bytes(host, port))
    rep = s5_read_reply(s)
    assert rep == 0, "SOCKS5 CONNECT %s:%d through %s failed with reply %#x" % (host, port, proxy_addr, rep)
    return s


def s4_connect(proxy_addr, port, ip=None, domain=None, timeout=5.0):
    ph, pp = proxy_addr.rsplit(":", 1)
    s = peers.connect(ph, int(pp), timeout=scaled(timeout))
    if domain is not None:
        req = struct.pack("!BBH", 4, 1, port) + bytes([0, 0, 0, 1]) + b"ferry\0" + domain.encode() + b"\0"
    else:
        req = struct.pack("!BBH", 4, 1, port) + socket.inet_aton(ip) + b"ferry\0"
    s.sendall(req)
    r = recv_exact(s, 8, "SOCKS4 reply")
    assert r[0] == 0 and r[1] == 0x5A, "SOCKS4%s request rejected: %r" % ("a" if domain else "", r)
    return s


def identify_echo(s, name, size=4096):
    """Upstream speaks first (ID line), then echoes a random payload."""
    assert recv_line(s, what="upstream identity") == b"ID:%s\n" % name.encode()
    m = os.urandom(size)
    s.sendall(m)
    assert recv_exact(s, len(m), "echo") == m


def echo_identify(s, name, size=4096):
    """For clients that only talk to the server once the client has spoken:
    send first, then read the ID line and the echo."""
    m = os.urandom(size)
    s.sendall(m)
    assert recv_line(s, what="upstream identity") == b"ID:%s\n" % name.encode()
    assert recv_exact(s, len(m), "echo") == m


def session_for(f, pred, what, n=1, timeout=5.0):
    ss = f.wait_sessions(n, timeout=timeout, pred=pred)
    assert len(ss) >= n, "no session log line for %s; log:\n%s" % (what, f.log()[-3000:])
    return ss


def curl_get(proxy_addr, url, out, timeout=60):
    return curl("--socks5-hostname", proxy_addr, "-o", out, url, timeout=timeout)


def check_download(r, out, tenmb, *logs):
    assert r.returncode == 0, "curl failed rc=%d: %s\n%s" % (r.returncode, r.stderr.decode(), "\n".join(logs)[-3000:])
    size = os.path.getsize(out)
    assert size == tenmb["len"] and file_sha256(out) == tenmb["sha"], \
        "downloaded file differs (size %d of %d)" % (size, tenmb["len"])


def evp_bytes_to_key(pw, n):
    d, prev = b"", b""
    while len(d) < n:
        prev = hashlib.md5(prev + pw.encode()).digest()
        d += prev
    return d[:n]


# --------------------------------------------------------------------------
# upstream handlers


def h_record_echo(srv, c, peer):
    """Echo, and record every byte received on this connection."""
    got = bytearray()
    with srv.lock:
        if not hasattr(srv, "received"):
            srv.received = []
        srv.received.append(got)
    while True:
        try:
            d = c.recv(65536)
        except OSError:
            break
        if not d:
            break
        got += d
        try:
            c.sendall(d)
        except OSError:
            break
    srv.record(("done", len(got)))


HALF_ANSWER = 3 * 1024 * 1024


def answer_bytes(n):
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"answer-%d" % i).digest() * 64
        i += 1
    return bytes(out[:n])


def h_answer_after_eof(srv, c, peer):
    """Read to EOF, then answer '<n> <sha>\\n' + HALF_ANSWER bytes, then close."""
    n, digest = peers.recv_hashed(c)
    srv.record(("eof", n, digest))
    c.sendall(b"%d %s\n" % (n, digest.encode()) + answer_bytes(HALF_ANSWER))


def h_send_then_read(srv, c, peer):
    """Send 2 MB, shut down the write side, then read to EOF and record."""
    c.sendall(answer_bytes(2 * 1024 * 1024))
    c.shutdown(socket.SHUT_WR)
    srv.record(("got",) + peers.recv_hashed(c))


# --------------------------------------------------------------------------
# a recording TCP proxy between a Shadowsocks client and a server


class ProxyConn:
    def __init__(self):
        self.c2s = bytearray()
        self.s2c = bytearray()
        self.t_first_c2s = None
        self.t_server_end = None      # server closed (EOF or RST) towards the client
        self.server_end = None
        self.done = threading.Event()


class RecProxy:
    """Forwards each accepted connection to target, recording both
    directions.  corrupt_c2s / corrupt_s2c: absolute offset of a byte in that
    direction's stream to flip (None: none).  The recorded bytes are the
    ones the client sent (before any corruption)."""

    def __init__(self, target):
        h, p = target.rsplit(":", 1)
        self.target = (h, int(p))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.conns = []
        self.corrupt_c2s = None
        self.corrupt_s2c = None
        self.closed = False
        self.socks = []
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            c.settimeout(None)
            u.settimeout(None)
            pc = ProxyConn()
            with self.lock:
                self.conns.append(pc)
                self.socks += [c, u]
            ends = []
            for src, dst, buf, which in ((c, u, pc.c2s, "c2s"), (u, c, pc.s2c, "s2c")):
                t = threading.Thread(target=self._pump, args=(pc, src, dst, buf, which, ends), daemon=True)
                t.start()

    def _pump(self, pc, src, dst, buf, which, ends):
        how = "eof"
        while True:
            try:
                d = src.recv(65536)
            except OSError:
                how = "reset"
                break
            if not d:
                break
            if which == "c2s" and pc.t_first_c2s is None:
                pc.t_first_c2s = time.monotonic()
            at = self.corrupt_c2s if which == "c2s" else self.corrupt_s2c
            off = len(buf)
            buf += d
            if at is not None and off <= at < off + len(d):
                d = bytearray(d)
                d[at - off] ^= 0x5A
                d = bytes(d)
            try:
                dst.sendall(d)
            except OSError:
                how = "dst-error"
                break
        if which == "s2c":
            pc.t_server_end = time.monotonic()
            pc.server_end = how
        try:
            if how == "eof":
                dst.shutdown(socket.SHUT_WR)
            else:
                peers.set_linger0(dst)
                dst.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self.lock:
            ends.append(which)
            if len(ends) == 2:
                pc.done.set()

    def wait_conns(self, n, timeout):
        return peers.wait_until(lambda: len(self.conns) >= n, timeout)

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass


@pytest.fixture
def recproxy():
    made = []

    def make(target):
        p = RecProxy(target)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


# --------------------------------------------------------------------------
# 1-3. downloads through each pairing, each cipher


@pytest.mark.deadline(60)
@pytest.mark.parametrize("method", METHODS)
def test_ferry_local_to_libev_server_curl_10mb(flocal, libev, http4, tenmb, workdir, method):
    srv = libev_server(libev, method)
    loc = flocal(srv.addr, method=method)
    out = os.path.join(workdir, "out.bin")
    r = curl_get(loc.addr, http4.url(tenmb["name"]), out)
    check_download(r, out, tenmb, loc.log(), srv.log())
    s = session_for(loc, None, "the download")[-1]
    assert s.get("listener") == "ss-local" and s.get("dest") == "127.0.0.1:%d" % http4.port, s["_line"]


@pytest.mark.deadline(60)
@pytest.mark.parametrize("method", METHODS)
def test_libev_local_to_ferry_server_curl_10mb(fsrv, libev, http4, tenmb, workdir, method):
    srv = fsrv(method=method)
    loc = libev_local(libev, srv.addr, method)
    out = os.path.join(workdir, "out.bin")
    r = curl_get(loc.addr, http4.url(tenmb["name"]), out)
    check_download(r, out, tenmb, srv.log(), loc.log())
    s = session_for(srv, None, "the download")[-1]
    assert s.get("proto") == "ss" and s.get("dest") == "127.0.0.1:%d" % http4.port, s["_line"]
    assert s.get("listener") == "ss-server", s["_line"]


@pytest.mark.deadline(60)
@pytest.mark.parametrize("method", METHODS)
def test_ferry_to_ferry_curl_10mb(fsrv, flocal, http4, tenmb, workdir, method):
    srv = fsrv(method=method)
    loc = flocal(srv.addr, method=method)
    out = os.path.join(workdir, "out.bin")
    r = curl_get(loc.addr, http4.url(tenmb["name"]), out)
    check_download(r, out, tenmb, loc.log(), srv.log())
    s = session_for(srv, None, "the download")[-1]
    assert s.get("proto") == "ss" and s.get("dest") == "127.0.0.1:%d" % http4.port, s["_line"]
    assert s.get("end") == "upstream_closed", s["_line"]


@pytest.mark.deadline(60)
@pytest.mark.parametrize("method", METHODS)
def test_ferry_to_ferry_upload_10mb(fsrv, flocal, servers, method):
    sink = servers(peers.h_sink_hash, name="sink")
    srv = fsrv(method=method)
    loc = flocal(srv.addr, method=method)
    data = os.urandom(TEN_MB)
    s = s5_connect(loc.addr, "127.0.0.1", sink.port, timeout=30)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    line = recv_line(s, what="sink's answer")
    assert line == b"%d %s\n" % (len(data), peers.sha256(data).encode()), \
        "upload corrupted: sink saw %r" % line
    s.close()


# --------------------------------------------------------------------------
# half-close through the tunnel


@pytest.mark.deadline(40)
def test_half_close_client_eof_reaches_upstream_which_still_answers(fsrv, flocal, servers):
    up = servers(h_answer_after_eof, name="half")
    srv = fsrv()
    loc = flocal(srv.addr)
    data = os.urandom(300000)
    s = s5_connect(loc.addr, "127.0.0.1", up.port)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    ev = up.wait_events(1, scaled(10))
    assert ev and ev[0] == ("eof", len(data), peers.sha256(data)), \
        "the upstream did not see the client's EOF after all its bytes: %r" % ev
    got, how = read_until_close(s, scaled(10))
    want = b"%d %s\n" % (len(data), peers.sha256(data).encode()) + answer_bytes(HALF_ANSWER)
    assert how == "eof", "answer ended with %s after %d bytes" % (how, len(got))
    assert len(got) == len(want) and got == want, \
        "the answer after the client's EOF was cut or changed: %d of %d bytes" % (len(got), len(want))
    s.close()
    ss = session_for(srv, None, "the half-closed session")
    assert int(ss[-1]["down"]) == len(want), "ss-server down= should count the answer: %s" % ss[-1]["_line"]


@pytest.mark.deadline(40)
def test_half_close_upstream_eof_reaches_client_which_still_sends(fsrv, flocal, servers):
    up = servers(h_send_then_read, name="half2")
    srv = fsrv()
    loc = flocal(srv.addr)
    s = s5_connect(loc.addr, "127.0.0.1", up.port)
    got, how = read_until_close(s, scaled(10))
    assert how == "eof" and got == answer_bytes(2 * 1024 * 1024), \
        "client should get the upstream's 2 MB then EOF: %d bytes, %s" % (len(got), how)
    data = os.urandom(1024 * 1024)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    ev = up.wait_events(1, scaled(10))
    assert ev and ev[0] == ("got", len(data), peers.sha256(data)), \
        "bytes the client sent after the upstream's EOF did not all arrive: %r" % ev
    s.close()


# --------------------------------------------------------------------------
# many concurrent streams


@pytest.mark.deadline(90)
def test_500_concurrent_streams_no_cross_talk(fsrv, flocal, servers, clients):
    n = 500
    up = servers(peers.h_echo, name="echo")
    srv = fsrv()
    loc = flocal(srv.addr)
    socks = []
    for i in range(n):
        s = s5_connect(loc.addr, "127.0.0.1", up.port, timeout=20)
        clients.append(s)
        socks.append(s)
    payloads = [b"stream-%04d:" % i + os.urandom(3000 + i) for i in range(n)]
    for s, p in zip(socks, payloads):
        s.sendall(p)
    got = [bytearray() for _ in range(n)]
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    left = n
    deadline = time.monotonic() + scaled(40)
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            i = key.data
            try:
                d = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            if not d:
                sel.unregister(key.fileobj)
                left -= 1
                continue
            got[i] += d
            if len(got[i]) >= len(payloads[i]):
                sel.unregister(key.fileobj)
                left -= 1
    sel.close()
    bad = [i for i in range(n) if bytes(got[i]) != payloads[i]]
    assert not bad, "%d of %d streams did not get exactly their own payload back (first: #%d got %d bytes %r)" % (
        len(bad), n, bad[0], len(got[bad[0]]), bytes(got[bad[0]][:20]))
    assert up.accepted == n and up.max_active == n, \
        "upstream saw %d connections, at most %d at once (want %d)" % (up.accepted, up.max_active, n)
    for s in socks:
        s.close()
    lines = session_for(srv, None, "all the streams", n=n, timeout=20)
    assert all(x.get("dest") == "127.0.0.1:%d" % up.port for x in lines), "a session has a wrong dest="


# --------------------------------------------------------------------------
# SOCKS flavours through ss-local


@pytest.mark.deadline(30)
def test_socks4_socks4a_socks5_literals_through_ss_local(fsrv, flocal, identify, dns, fakedns):
    up = identify("sx")
    local_dns = fakedns(records={})      # ss-local must not resolve anything itself
    srv = fsrv("--dns-server", dns.addr)
    loc = flocal(srv.addr, "--dns-server", local_dns.addr)

    s = s4_connect(loc.addr, up.port, ip="127.0.0.1")
    identify_echo(s, "sx")
    s.close()
    s = s4_connect(loc.addr, up.port, domain="web.ferry.test")
    identify_echo(s, "sx")
    s.close()
    s = s5_connect(loc.addr, "127.0.0.1", up.port)
    identify_echo(s, "sx")
    s.close()
    s = s5_connect(loc.addr, "web.ferry.test", up.port)
    identify_echo(s, "sx")
    s.close()

    lines = session_for(srv, None, "four sessions", n=4)
    dests = sorted(x.get("dest") for x in lines)
    want = sorted(["127.0.0.1:%d" % up.port] * 2 + ["web.ferry.test:%d" % up.port] * 2)
    assert dests == want, "ss-server dest= values %s, want %s" % (dests, want)
    assert "web.ferry.test" in dns.names_queried(), "ss-server did not resolve the name itself"
    assert local_dns.names_queried() == [], "ss-local resolved %s instead of passing the name on" % (
        local_dns.names_queried(),)
    lprotos = sorted(x.get("proto") for x in session_for(loc, None, "ss-local sessions", n=4))
    assert lprotos == ["socks4", "socks4a", "socks5", "socks5"], "ss-local proto= values %s" % lprotos


@pytest.mark.deadline(30)
def test_socks5_ipv6_literal_through_ss_local(fsrv, flocal, identify):
    try:
        up = identify("v6", host="::1")
    except OSError as e:
        pytest.skip("no IPv6 loopback: %s" % e)
    srv = fsrv()
    loc = flocal(srv.addr)
    s = s5_connect(loc.addr, "::1", up.port)
    identify_echo(s, "v6")
    s.close()
    line = session_for(srv, None, "the IPv6 session")[-1]
    assert line.get("dest") == "[::1]:%d" % up.port, line["_line"]


@pytest.mark.deadline(30)
def test_ss_local_socks_users(fsrv, flocal, http4, tenmb, workdir):
    srv = fsrv()
    loc = flocal(srv.addr, "--user", "alice:S3cr3t-U5er")
    s = peers.connect("127.0.0.1", loc.port)
    s.sendall(b"\x05\x01\x00")
    assert recv_exact(s, 2, "method selection") == b"\x05\xff", "ss-local with --user accepted no-auth"
    s.close()
    out = os.path.join(workdir, "out.bin")
    r = curl("--socks5-hostname", loc.addr, "-U", "alice:wrong", "-o", out, http4.url(tenmb["name"]), timeout=20)
    assert r.returncode != 0, "curl got through ss-local with a wrong SOCKS password"
    r = curl("--socks5-hostname", loc.addr, "-U", "alice:S3cr3t-U5er", "-o", out, http4.url(tenmb["name"]))
    check_download(r, out, tenmb, loc.log(), srv.log())
    line = session_for(loc, lambda x: x.get("user") == "alice", "the authenticated download")[-1]
    assert line.get("dest") == "127.0.0.1:%d" % http4.port, line["_line"]
    assert "S3cr3t-U5er" not in loc.log()


@pytest.mark.deadline(30)
def test_ipv6_server_address(fsrv, flocal, identify):
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError as e:
        pytest.skip("no IPv6 loopback: %s" % e)
    srv = fsrv(host="::1")
    up = identify("s6")
    loc = flocal(srv.addr)
    s = s5_connect(loc.addr, "127.0.0.1", up.port)
    identify_echo(s, "s6")
    s.close()
    line = session_for(srv, None, "the session over IPv6")[-1]
    assert line.get("client", "").startswith("[::1]:"), line["_line"]


# --------------------------------------------------------------------------
# early data larger than what a buffer holds next to the address header
#
# ss-local encrypts the target address in front of the client's first bytes.
# When those filled a whole buffer (one write with the request, or an upload
# that began before the tunnel was up), copying header + data into one buffer
# came back short, and the failure path freed the encoder twice: a crash of
# the whole process from one client request.

EARLY = 256 * 1024


def _upload_and_check(s, data, what, sent=0):
    s.sendall(data[sent:])
    s.shutdown(socket.SHUT_WR)
    line = recv_line(s, what="sink's answer (%s)" % what)
    assert line == b"%d %s\n" % (len(data), peers.sha256(data).encode()), \
        "%s: the sink saw %r, want all %d bytes intact" % (what, line, len(data))
    s.close()


def _v6_sink(servers):
    try:
        return servers(peers.h_sink_hash, host="::1", name="sink6")
    except OSError as e:
        pytest.skip("no IPv6 loopback: %s" % e)


def _s5_domain_request(port):
    # Greeting and request in one go: ATYP=domain "::1" (a 10-byte request)
    # becomes a 19-byte IPv6 header.
    return b"\x05\x01\x00" + bytes([5, 1, 0, 3, 3]) + b"::1" + struct.pack("!H", port)


def _s5_domain_reply(s):
    assert recv_exact(s, 2, "method selection") == b"\x05\x00"
    assert s5_read_reply(s) == 0


def _s4a_request(port):
    # SOCKS4a host "::" (3 bytes in the request) becomes a 19-byte header.
    return struct.pack("!BBH", 4, 1, port) + bytes([0, 0, 0, 1]) + b"\0" + b"::\0"


def _s4a_reply(s):
    r = recv_exact(s, 8, "SOCKS4 reply")
    assert r[1] == 0x5A, "SOCKS4a request rejected: %r" % r


@pytest.mark.deadline(30)
@pytest.mark.parametrize("request_of,read_reply", [(_s5_domain_request, _s5_domain_reply),
                                                   (_s4a_request, _s4a_reply)], ids=["socks5-domain", "socks4a"])
def test_v6_literal_name_with_a_buffer_of_early_data(fsrv, flocal, servers, request_of, read_reply):
    sink = _v6_sink(servers)
    srv = fsrv()
    loc = flocal(srv.addr)
    data = os.urandom(EARLY)
    s = peers.connect("127.0.0.1", loc.port, timeout=scaled(10))
    # The request and a buffer of data in one write, right after the
    # connect: ferry's first read takes a whole buffer of it.
    s.sendall(request_of(sink.port) + data[:65536])
    read_reply(s)
    _upload_and_check(s, data, request_of.__name__, sent=65536)
    assert loc.alive(), "ss-local died:\n%s" % loc.log()[-3000:]
    identify_echo(s5_connect(loc.addr, "127.0.0.1", servers(peers.h_identify, name="after").port), "after")


@pytest.mark.deadline(30)
def test_tunnel_to_upload_that_fills_a_buffer_before_the_tunnel_is_up(fsrv, flocal, servers, fakedns):
    # The ss-server's name resolves slowly, so the client's upload fills the
    # early-data buffer before the tunnel connects.
    sink = servers(peers.h_sink_hash, name="sink")
    srv = fsrv()
    slow = fakedns(records={"ss.ferry.test": ["127.0.0.1"]}, delay=0.5)
    loc = flocal("ss.ferry.test:%d" % srv.port, "--tunnel-to", sink.addr, "--dns-server", slow.addr)
    data = os.urandom(EARLY)
    s = peers.connect("127.0.0.1", loc.port, timeout=scaled(10))
    _upload_and_check(s, data, "--tunnel-to upload")
    assert "ss.ferry.test" in slow.names_queried(), "ss-local did not resolve the server's name per session"
    assert loc.alive(), "ss-local died:\n%s" % loc.log()[-3000:]


# --------------------------------------------------------------------------
# --tunnel-to (like ss-tunnel), and libev's ss-tunnel


@pytest.mark.deadline(30)
@pytest.mark.parametrize("server", ["ferry", "libev"])
def test_tunnel_to_plain_tcp(fsrv, flocal, libev, identify, server):
    up = identify("tun")
    srv = fsrv() if server == "ferry" else libev_server(libev)
    loc = flocal(srv.addr, "--tunnel-to", up.addr)
    for _ in range(3):
        s = peers.connect("127.0.0.1", loc.port, timeout=scaled(5))
        # the upstream speaks first: the tunnel must open without client data
        identify_echo(s, "tun", 20000)
        s.close()
    assert up.wait_accepted(3, scaled(5)) == 3


@pytest.mark.deadline(30)
def test_libev_ss_tunnel_to_ferry_server(fsrv, libev, identify):
    up = identify("ltun")
    srv = fsrv()
    tun = libev_local(libev, srv.addr, prog="ss-tunnel", extra=("-L", up.addr))
    for _ in range(3):
        s = peers.connect("127.0.0.1", tun.port, timeout=scaled(5))
        echo_identify(s, "ltun", 20000)
        s.close()
    lines = session_for(srv, None, "ss-tunnel sessions", n=3)
    assert all(x.get("dest") == up.addr for x in lines), [x["_line"] for x in lines]


# --------------------------------------------------------------------------
# secrets: --key, --password-file


KEY = bytes([0xfb, 0xef, 0xff, 0x3e, 0xff]) + bytes(range(27))   # has '+' '/' in standard base64
KEY_STD = base64.b64encode(KEY).decode()
KEY_URL = base64.urlsafe_b64encode(KEY).decode()


@pytest.mark.deadline(30)
def test_key_base64_ferry_to_ferry(fsrv, flocal, identify):
    up = identify("key")
    srv = fsrv("--key", KEY_STD, "--handshake-timeout", HS, method="aes-256-gcm")
    loc = flocal(srv.addr, "--key", KEY_URL.rstrip("="), method="aes-256-gcm")
    s = s5_connect(loc.addr, "127.0.0.1", up.port)
    identify_echo(s, "key")
    s.close()
    # the key is what matters: another key must not work
    other = base64.b64encode(bytes(32)).decode()
    bad = flocal(srv.addr, "--key", other, method="aes-256-gcm")
    s = s5_connect(bad.addr, "127.0.0.1", up.port)
    s.sendall(b"hello")
    data, how = read_until_close(s, scaled(4))
    assert data == b"", "a client with another key got %r" % data[:40]
    assert up.accepted == 1, "the upstream was reached with a wrong key"


@pytest.mark.deadline(30)
def test_key_equals_password_derived_key(fsrv, flocal, identify):
    """--key with EVP_BytesToKey(password) interoperates with -k password."""
    up = identify("derived")
    srv = fsrv("-k", PW, method="aes-128-gcm")
    k = base64.b64encode(evp_bytes_to_key(PW, 16)).decode()
    loc = flocal(srv.addr, "--key", k, method="aes-128-gcm")
    s = s5_connect(loc.addr, "127.0.0.1", up.port)
    identify_echo(s, "derived")
    s.close()


@pytest.mark.deadline(30)
def test_key_base64_interop_with_libev(fsrv, flocal, libev, identify):
    assert "+" in KEY_STD and "/" in KEY_STD and "-" in KEY_URL and "_" in KEY_URL
    up = identify("lkey")
    # ferry ss-local --key (standard base64) -> libev ss-server --key (URL-safe)
    lsrv = libev_server(libev, "chacha20-ietf-poly1305", key=KEY_URL)
    floc = flocal(lsrv.addr, "--key", KEY_STD)
    s = s5_connect(floc.addr, "127.0.0.1", up.port)
    identify_echo(s, "lkey")
    s.close()
    # libev ss-local --key (URL-safe) -> ferry ss-server --key (the same string)
    fs = fsrv("--key", KEY_URL)
    lloc = libev_local(libev, fs.addr, key=KEY_URL)
    s = s5_connect(lloc.addr, "127.0.0.1", up.port)
    echo_identify(s, "lkey")
    s.close()
    assert up.wait_accepted(2, scaled(5)) == 2


@pytest.mark.deadline(30)
def test_password_file(fsrv, flocal, libev, identify, workdir):
    up = identify("pwf")
    pf = os.path.join(workdir, "ss.pw")
    with open(pf, "w") as f:
        f.write(PW + "\nsecond line is not part of it\n")
    os.chmod(pf, 0o600)
    srv = fsrv("--password-file", pf)
    # a ferry client with the password on its command line
    loc = flocal(srv.addr, "-k", PW)
    s = s5_connect(loc.addr, "127.0.0.1", up.port)
    identify_echo(s, "pwf")
    s.close()
    # a libev client with the same password
    lloc = libev_local(libev, srv.addr)
    s = s5_connect(lloc.addr, "127.0.0.1", up.port)
    echo_identify(s, "pwf")
    s.close()
    # and ferry ss-local reading the file, against libev ss-server
    lsrv = libev_server(libev)
    floc = flocal(lsrv.addr, "--password-file", pf)
    s = s5_connect(floc.addr, "127.0.0.1", up.port)
    identify_echo(s, "pwf")
    s.close()
    assert up.wait_accepted(3, scaled(5)) == 3


# --------------------------------------------------------------------------
# 4. wrong passwords and garbage: no reply, held, then closed; others served


def _probe_checks(srv, proxy, bad_up, what):
    assert proxy.wait_conns(1, scaled(5)), "%s never connected to the server" % what
    pc = proxy.conns[0]
    assert pc.done.wait(scaled(HS_S + 5)), "ferry ss-server did not close the %s within the handshake timeout" % what
    assert bytes(pc.s2c) == b"", "ferry ss-server answered the %s with %d bytes" % (what, len(pc.s2c))
    assert pc.t_first_c2s is not None
    held = pc.t_server_end - pc.t_first_c2s
    assert held >= HS_S / 2 - 0.05, "the %s was closed after %.3fs, before handshake-timeout/2" % (what, held)
    assert bad_up.accepted == 0, "the %s's destination was reached %d times" % (what, bad_up.accepted)
    line = session_for(srv, lambda x: x.get("end") == "probe", what)[-1]
    assert line.get("up") == "0", "a probe moved bytes upstream: %s" % line["_line"]


@pytest.mark.deadline(40)
@pytest.mark.parametrize("client", ["ferry", "libev"])
def test_wrong_password_client_to_ferry_server(fsrv, flocal, libev, identify, recproxy, client):
    good_up = identify("good")
    bad_up = identify("bad")
    srv = fsrv("--handshake-timeout", HS)
    proxy = recproxy(srv.addr)
    if client == "ferry":
        bad = flocal(proxy.addr, "-k", WRONG_PW)
    else:
        bad = libev_local(libev, proxy.addr, pw=WRONG_PW)
    good = flocal(srv.addr)
    s = s5_connect(bad.addr, "127.0.0.1", bad_up.port)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert proxy.wait_conns(1, scaled(5)), "the client with a wrong password never reached the server"
    pc = proxy.conns[0]
    assert peers.wait_until(lambda: pc.t_first_c2s is not None, scaled(5)), "the prober sent nothing"
    # while the prober is held, correct clients are served
    for i in range(5):
        g = s5_connect(good.addr, "127.0.0.1", good_up.port)
        identify_echo(g, "good")
        g.close()
        if i == 0:
            t_good = time.monotonic()
    data, how = read_until_close(s, scaled(HS_S + 5))
    assert data == b"", "the client behind a wrong password got %r" % data[:60]
    s.close()
    _probe_checks(srv, proxy, bad_up, "client with a wrong password")
    assert good_up.accepted == 5
    assert t_good < pc.t_server_end, "no correct client was served while the prober was held"


@pytest.mark.deadline(30)
@pytest.mark.parametrize("mismatch", ["password", "method"])
def test_ss_local_says_the_server_closed_without_answering(fsrv, flocal, identify, mismatch):
    """Issue #16, 16: behind a wrong password (or method) the ss-server never
    answers and closes in its own time; ss-local ends such a session
    end=upstream_closed_silently (not a plain upstream_closed) and warns
    once that the password or method likely differ."""
    up = identify("x")
    srv = fsrv("--handshake-timeout", HS)
    if mismatch == "password":
        loc = flocal(srv.addr, "-k", WRONG_PW)
    else:
        loc = flocal(srv.addr, method="aes-256-gcm")
    for _ in range(2):
        s = s5_connect(loc.addr, "127.0.0.1", up.port)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data, how = read_until_close(s, scaled(HS_S + 5))
        s.close()
        assert data == b"" and how in ("eof", "reset"), (data[:40], how)
    lines = session_for(loc, None, "the unanswered sessions", n=2)
    assert [x.get("end") for x in lines] == ["upstream_closed_silently"] * 2, [x["_line"] for x in lines]
    warns = [x for x in loc.log().splitlines() if "without answering" in x]
    assert len(warns) == 2 and "password or method" in warns[0] and srv.addr in warns[0], loc.log()
    assert up.accepted == 0
    # a server that answers and then closes is not "silent"
    good = flocal(srv.addr)
    g = s5_connect(good.addr, "127.0.0.1", up.port)
    identify_echo(g, "x")
    g.close()
    line = session_for(good, None, "a good session")[-1]
    assert line.get("end") != "upstream_closed_silently", line["_line"]


@pytest.mark.deadline(40)
def test_wrong_password_ferry_local_to_libev_server(flocal, libev, http4, tenmb, identify, workdir):
    """libev's ss-server answers a bad client with silence and holds the
    connection open; ferry ss-local must not wedge: the request fails, other
    clients are still served, and the sessions end by the idle timeout."""
    up = identify("x2")
    lsrv = libev_server(libev)
    loc = flocal(lsrv.addr, "-k", WRONG_PW, "--idle-timeout", "2s")
    stuck = [s5_connect(loc.addr, "127.0.0.1", up.port) for _ in range(10)]
    for s in stuck:
        s.sendall(b"hello\n")
    out = os.path.join(workdir, "out.bin")
    r = curl("--socks5-hostname", loc.addr, "--max-time", "3", "-o", out, http4.url(tenmb["name"]), timeout=20)
    assert r.returncode != 0, "curl got through with a wrong password"
    assert not os.path.exists(out) or os.path.getsize(out) == 0
    # still answering SOCKS while 11 sessions hang on the server
    t0 = time.monotonic()
    s = s5_connect(loc.addr, "127.0.0.1", up.port)
    assert time.monotonic() - t0 < scaled(1), "ss-local was slow to answer SOCKS while others hang"
    stuck.append(s)
    for s in stuck:
        data, how = read_until_close(s, scaled(8))
        assert data == b"", "got %r through a wrong password" % data[:40]
        assert how in ("eof", "reset"), "a session through a wrong password was never closed"
        s.close()
    lines = session_for(loc, None, "the failed sessions", n=12, timeout=10)
    assert all(x.get("down") == "0" for x in lines), [x["_line"] for x in lines if x.get("down") != "0"]
    assert up.accepted == 0
    assert loc.alive()


@pytest.mark.deadline(30)
@pytest.mark.parametrize("size", [1, 64, 4096])
def test_garbage_gets_no_reply_and_is_held(fsrv, flocal, identify, size):
    up = identify("g")
    srv = fsrv("--handshake-timeout", HS)
    loc = flocal(srv.addr)
    r = random.Random(size)
    junk = bytes(r.getrandbits(8) for _ in range(size))
    s = peers.connect("127.0.0.1", srv.port)
    t0 = time.monotonic()
    s.sendall(junk)
    g = s5_connect(loc.addr, "127.0.0.1", up.port)
    identify_echo(g, "g")
    g.close()
    data, how = read_until_close(s, scaled(HS_S + 5))
    held = time.monotonic() - t0
    assert data == b"", "ferry answered %d garbage bytes with %r" % (size, data[:40])
    assert how in ("eof", "reset"), "garbage connection not closed (%s)" % how
    assert held >= HS_S / 2 - 0.05, "garbage connection closed after %.3fs (< handshake-timeout/2)" % held
    assert held <= scaled(HS_S) + 1.0, "garbage connection held %.2fs (> handshake-timeout)" % held
    line = session_for(srv, lambda x: x.get("client", "").endswith(":%d" % s.getsockname()[1]), "garbage")[-1]
    assert line.get("end") in (("probe", "handshake_timeout") if size < 50 else ("probe",)), line["_line"]
    s.close()
    assert up.accepted == 1


def _ks_statistic(a, b):
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the
    two empirical distribution functions."""
    a, b = sorted(a), sorted(b)
    d = 0.0
    for x in a + b:
        fa = sum(1 for v in a if v <= x) / len(a)
        fb = sum(1 for v in b if v <= x) / len(b)
        d = max(d, abs(fa - fb))
    return d


def _probe_endings(port, sizes, n):
    """n connections per size, all at once, each sending that many random
    bytes; returns {size: [(seconds from the first byte to the close, how)]}."""
    sel = selectors.DefaultSelector()
    out = {sz: [] for sz in sizes}
    for sz in sizes:
        for _ in range(n):
            s = peers.connect("127.0.0.1", port, timeout=scaled(5))
            s.setblocking(False)
            s.send(os.urandom(sz))
            sel.register(s, selectors.EVENT_READ, (sz, time.monotonic()))
    deadline = time.monotonic() + scaled(HS_S) + 3.0
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            sz, t0 = key.data
            try:
                d = key.fileobj.recv(4096)
                how = "eof" if d == b"" else "data"
            except ConnectionResetError:
                how = "reset"
            except BlockingIOError:
                continue
            out[sz].append((time.monotonic() - t0, how))
            sel.unregister(key.fileobj)
            key.fileobj.close()
    left = len(sel.get_map())
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    assert left == 0, "%d probe connections were not closed within the handshake timeout" % left
    return out


@pytest.mark.deadline(30)
@pytest.mark.parametrize("method,salt", [("chacha20-ietf-poly1305", 32), ("aes-128-gcm", 16)])
def test_probe_endings_do_not_reveal_the_salt_size(fsrv, method, salt):
    # salt + 17 bytes stops one byte short of the sealed length block (the
    # server waits); salt + 18 completes it and fails its tag (the server
    # gives up). A prober must not tell the two apart by when or how the
    # server closes: same random delay from the first byte, same close.
    srv = fsrv("--handshake-timeout", HS, method=method)
    n = 30
    got = _probe_endings(srv.port, (salt + 17, salt + 18), n)
    waited, failed = got[salt + 17], got[salt + 18]
    hows = {h for _, h in waited + failed}
    assert hows == {"eof"}, "probe connections ended with %s, want a plain FIN for all" % sorted(hows)
    times = [t for t, _ in waited + failed]
    assert min(times) >= HS_S / 2 - 0.05, "a probe was closed after %.3fs (< handshake-timeout/2)" % min(times)
    # At alpha = 0.001 the KS critical value for two samples of 30 is
    # 1.95 * sqrt(2/30) = 0.50. Before the fix the waiting probes all closed
    # at exactly the timeout and the failed ones earlier: D was close to 1.
    d = _ks_statistic([t for t, _ in waited], [t for t, _ in failed])
    assert d < 1.95 * (2.0 / n) ** 0.5, \
        "close times differ by probe size (KS D=%.2f): %d bytes %s, %d bytes %s" % (
            d, salt + 17, sorted(round(t, 2) for t, _ in waited), salt + 18,
            sorted(round(t, 2) for t, _ in failed))


# --------------------------------------------------------------------------
# 5. replay


def _ss_client(kind, server_addr, flocal, libev):
    if kind == "ferry":
        return flocal(server_addr)
    return libev_local(libev, server_addr)


@pytest.mark.deadline(40)
@pytest.mark.parametrize("client", ["ferry", "libev"])
def test_replayed_stream_is_refused(fsrv, flocal, libev, identify, recproxy, client):
    up = identify("rp")
    srv = fsrv("--handshake-timeout", HS)
    proxy = recproxy(srv.addr)
    loc = _ss_client(client, proxy.addr, flocal, libev)
    s = s5_connect(loc.addr, "127.0.0.1", up.port)
    if client == "ferry":
        identify_echo(s, "rp", 3000)
    else:
        echo_identify(s, "rp", 3000)
    s.close()
    assert proxy.wait_conns(1, scaled(5))
    pc = proxy.conns[0]
    assert pc.done.wait(scaled(5)), "the recorded connection did not finish"
    session_for(srv, None, "the original session")
    assert up.wait_accepted(1, 1) == 1
    rec = bytes(pc.c2s)
    assert len(rec) > 3000
    r = peers.connect("127.0.0.1", srv.port)
    r.sendall(rec)
    data, how = read_until_close(r, scaled(HS_S + 5))
    assert data == b"", "the replayed stream got %d reply bytes" % len(data)
    r.close()
    time.sleep(0.3)
    assert up.accepted == 1, "the replayed stream reached the upstream again (%d connections)" % up.accepted
    lines = session_for(srv, None, "the replay", n=2)
    assert lines[-1].get("end") == "probe" and lines[-1].get("up") == "0", \
        "replay session should end as a probe: %s" % lines[-1]["_line"]
    # control: the recording is a valid stream (a server that has not seen
    # its salt accepts it), so the refusal above is the replay filter's
    fresh = fsrv("--handshake-timeout", HS)
    r = peers.connect("127.0.0.1", fresh.port)
    r.sendall(rec)
    assert up.wait_accepted(2, scaled(5)) == 2, "the recorded stream is not valid even for a fresh server"
    assert r.recv(1), "a fresh server relayed nothing back for the recorded stream"
    r.close()


@pytest.mark.deadline(40)
def test_reflected_server_stream_is_refused(fsrv, flocal, identify, servers, recproxy):
    """The server's own stream sent back to it (same key, so it decrypts)
    must not be taken for a client: here the upstream answers with bytes
    that parse as a Shadowsocks address, so a server that does not remember
    its own salts would connect to that address."""
    target = identify("reflected")
    head = b"\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", target.port)

    def h_addr_answer(srv, c, peer):
        c.recv(65536)
        c.sendall(head + b"hello from the reflected stream\n")
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass

    up = servers(h_addr_answer, name="addr")
    srv = fsrv("--handshake-timeout", HS)
    proxy = recproxy(srv.addr)
    loc = flocal(proxy.addr)
    s = s5_connect(loc.addr, "127.0.0.1", up.port)
    s.sendall(b"please answer\n")
    want = head + b"hello from the reflected stream\n"
    assert recv_exact(s, len(want), "the upstream's answer") == want
    s.close()
    assert proxy.wait_conns(1, scaled(5))
    pc = proxy.conns[0]
    assert pc.done.wait(scaled(5))
    refl = bytes(pc.s2c)
    r = peers.connect("127.0.0.1", srv.port)
    r.sendall(refl)
    data, how = read_until_close(r, scaled(HS_S + 5))
    r.close()
    time.sleep(0.2)
    assert target.accepted == 0, "ferry ss-server accepted its own reflected stream as a client and connected " \
        "to the address in it"
    assert data == b"", "the reflected stream got %d reply bytes" % len(data)
    # control: to a server that did not produce it, it is a valid client stream
    fresh = fsrv("--handshake-timeout", HS)
    r = peers.connect("127.0.0.1", fresh.port)
    r.sendall(refl)
    assert target.wait_accepted(1, scaled(5)) == 1, "the reflected stream is not a valid client stream"
    assert r.recv(1), "a fresh server relayed nothing back"
    r.close()


# --------------------------------------------------------------------------
# 6. corruption mid-stream


@pytest.mark.deadline(40)
@pytest.mark.parametrize("client", ["ferry", "libev"])
def test_corrupted_client_stream_ends_session_without_garbage(fsrv, flocal, libev, servers, recproxy, client):
    up = servers(h_record_echo, name="rec")
    srv = fsrv()
    proxy = recproxy(srv.addr)
    loc = _ss_client(client, proxy.addr, flocal, libev)
    s = s5_connect(loc.addr, "127.0.0.1", up.port)
    first = os.urandom(1000)
    s.sendall(first)
    assert recv_exact(s, len(first), "echo of the first chunk") == first
    pc = proxy.conns[0]
    proxy.corrupt_c2s = len(pc.c2s) + 40      # inside the next chunk
    second = os.urandom(5000)
    s.sendall(second)
    data, how = read_until_close(s, scaled(8))
    assert how in ("eof", "reset"), "the session did not end after corruption (%s, %d bytes)" % (how, len(data))
    assert second.startswith(data), "the client got bytes it never sent: %r" % data[:40]
    assert up.wait_events(1, scaled(5)), "the upstream connection was not closed"
    got = bytes(up.received[0])
    sent = first + second
    assert sent.startswith(got), "the upstream received bytes that differ from the client's (at %d)" % next(
        i for i in range(len(got)) if i >= len(sent) or got[i] != sent[i])
    assert len(got) >= len(first)
    line = session_for(srv, None, "the corrupted session")[-1]
    assert line.get("end") == "crypto_error", "corruption should end as crypto_error: %s" % line["_line"]
    s.close()


@pytest.mark.deadline(40)
def test_corrupted_server_stream_ends_session_without_garbage(fsrv, flocal, servers, recproxy):
    up = servers(h_record_echo, name="rec2")
    srv = fsrv()
    proxy = recproxy(srv.addr)
    loc = flocal(proxy.addr)
    s = s5_connect(loc.addr, "127.0.0.1", up.port)
    first = os.urandom(1000)
    s.sendall(first)
    assert recv_exact(s, len(first), "echo of the first chunk") == first
    pc = proxy.conns[0]
    proxy.corrupt_s2c = len(pc.s2c) + 40
    second = os.urandom(5000)
    s.sendall(second)
    data, how = read_until_close(s, scaled(8))
    assert how in ("eof", "reset"), "the session did not end after corruption (%s, %d bytes)" % (how, len(data))
    assert second.startswith(data), "ss-local delivered corrupted bytes: %r" % data[:40]
    assert len(data) < len(second)
    line = session_for(loc, None, "the corrupted session")[-1]
    assert line.get("end") == "crypto_error", "corruption should end as crypto_error: %s" % line["_line"]
    s.close()


# --------------------------------------------------------------------------
# 7. destination policy


@pytest.mark.deadline(30)
def test_deny_dest_cidr_and_port(fsrv, flocal, identify):
    a = identify("a")
    b = identify("b")
    srv = fsrv("--deny-dest", "127.0.0.1:%d" % a.port)
    loc = flocal(srv.addr)
    s = s5_connect(loc.addr, "127.0.0.1", a.port)
    s.sendall(b"x")
    data, how = read_until_close(s, scaled(5))
    assert data == b"" and how in ("eof", "reset"), "denied destination answered %r (%s)" % (data[:40], how)
    s = s5_connect(loc.addr, "127.0.0.1", b.port)
    identify_echo(s, "b")
    s.close()
    assert a.accepted == 0 and b.accepted == 1

    srv2 = fsrv("--deny-dest", "127.0.0.0/8")
    loc2 = flocal(srv2.addr)
    for target in ("127.0.0.1", "web.ferry.test"):
        s = s5_connect(loc2.addr, target, b.port)
        s.sendall(b"x")
        data, how = read_until_close(s, scaled(5))
        assert data == b"", "%s under --deny-dest 127.0.0.0/8 answered %r" % (target, data[:40])
        s.close()
    assert b.accepted == 1, "a destination in 127.0.0.0/8 was reached"
    lines = session_for(srv2, None, "denied sessions", n=2)
    assert all(x.get("end") == "denied" for x in lines), [x["_line"] for x in lines]
    assert session_for(srv, None, "denied", n=2)[0].get("end") == "denied"


def _local_non_loopback(family):
    try:
        out = subprocess.run(["ip", "-o", "-%d" % (4 if family == socket.AF_INET else 6), "addr", "show"],
                             capture_output=True, timeout=5).stdout.decode()
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        parts = line.split()
        if "inet" not in parts and "inet6" not in parts:
            continue
        addr = parts[parts.index("inet" if family == socket.AF_INET else "inet6") + 1].split("/")[0]
        if family == socket.AF_INET and not addr.startswith("127."):
            return addr
        if family == socket.AF_INET6 and addr != "::1" and not addr.startswith("fe80"):
            return addr
    return None


@pytest.mark.deadline(40)
def test_non_loopback_server_denies_local_and_private_destinations_by_default(fsrv, flocal, identify):
    """ss-server listening on one of this host's own non-loopback addresses
    (the client reaches it over the host's local route, so no packet leaves
    the machine; only that address is allowed as a client).  Loopback
    destinations, a name resolving to loopback and a unique-local IPv6
    address of this host are refused unless --allow-dest."""
    addr = _local_non_loopback(socket.AF_INET)
    if not addr:
        pytest.skip("no non-loopback IPv4 address on this host to listen on")
    up = identify("lo")
    acl = ["--allow", addr + "/32", "--deny", "0.0.0.0/0", "--deny", "::/0"]
    srv = fsrv(*acl, host=addr)
    loc = flocal(srv.addr)
    targets = [("127.0.0.1", up), ("web.ferry.test", up)]
    ula = _local_non_loopback(socket.AF_INET6)
    if ula and (ula.startswith("fd") or ula.startswith("fc")):
        up6 = identify("ula", host=ula)
        targets.append((ula, up6))
    for host, u in targets:
        s = s5_connect(loc.addr, host, u.port)
        s.sendall(b"x")
        data, how = read_until_close(s, scaled(5))
        assert data == b"", "non-loopback ss-server let %s through: %r" % (host, data[:40])
        s.close()
        assert u.accepted == 0, "non-loopback ss-server connected to %s by default" % host
    lines = session_for(srv, None, "denied sessions", n=len(targets))
    assert all(x.get("end") == "denied" for x in lines), [x["_line"] for x in lines]
    # control: --allow-dest lets loopback through on the same kind of server
    srv2 = fsrv(*acl, "--allow-dest", "127.0.0.0/8", host=addr)
    loc2 = flocal(srv2.addr)
    s = s5_connect(loc2.addr, "127.0.0.1", up.port)
    identify_echo(s, "lo")
    s.close()


# --------------------------------------------------------------------------
# 8. the secret stays out of argv and the log; log byte counts


def _cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read()


@pytest.mark.deadline(30)
@pytest.mark.parametrize("form", ["-k", "--password", "--password="])
def test_password_not_in_cmdline_or_log(fsrv, flocal, identify, form):
    up = identify("pw")
    secret = (["--password=" + PW] if form.endswith("=") else [form, PW])
    srv = fsrv(*secret, "--log-level", "debug", "--handshake-timeout", HS)
    loc = flocal(srv.addr, *secret, "--log-level", "debug")
    bad = flocal(srv.addr, "-k", WRONG_PW, "--log-level", "debug")
    s = s5_connect(loc.addr, "127.0.0.1", up.port)
    identify_echo(s, "pw")
    s.close()
    s = s5_connect(bad.addr, "127.0.0.1", up.port)
    s.sendall(b"x")
    read_until_close(s, scaled(HS_S + 5))
    s.close()
    session_for(srv, None, "sessions", n=2)
    for f in (srv, loc, bad):
        cl = _cmdline(f.pid)
        for pw in (PW, WRONG_PW):
            assert pw.encode() not in cl, "the password is visible in /proc/%d/cmdline: %r" % (f.pid, cl)
        assert b"ss-" in cl, "cmdline lost its other arguments: %r" % cl
        for pw in (PW, WRONG_PW):
            assert pw not in f.log() and pw not in f.stdout(), "the password appears in ferry's log"


@pytest.mark.deadline(30)
def test_key_not_in_cmdline(fsrv):
    srv = fsrv("--key", KEY_STD)
    cl = _cmdline(srv.pid)
    assert KEY_STD.encode() not in cl and KEY_STD[:12].encode() not in cl, "the key is visible in argv: %r" % cl


def make_fixed_answer(n_in, n_out):
    def h(srv, c, peer):
        got = recv_exact(c, n_in, "the client's request")
        srv.record(("req", len(got)))
        c.sendall(answer_bytes(n_out))
        c.shutdown(socket.SHUT_WR)
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass
    return h


@pytest.mark.deadline(30)
@pytest.mark.parametrize("client", ["ferry", "libev"])
def test_log_byte_counts_are_payload_bytes(fsrv, flocal, libev, servers, client):
    """up=/down= on ss-server and ss-local count the application's bytes
    (what the upstream received / sent), as for relay and socks."""
    n_in, n_out = 100000, 100000      # several AEAD chunks each way
    up = servers(make_fixed_answer(n_in, n_out), name="cnt")
    srv = fsrv()
    loc = flocal(srv.addr) if client == "ferry" else libev_local(libev, srv.addr)
    s = s5_connect(loc.addr, "127.0.0.1", up.port)
    s.sendall(os.urandom(n_in))
    got, how = read_until_close(s, scaled(10))
    s.close()
    assert up.wait_events(1, scaled(5))
    assert got == answer_bytes(n_out), "answer: %d bytes, %s" % (len(got), how)
    bad = []
    line = session_for(srv, None, "the session")[-1]
    if (int(line["up"]), int(line["down"])) != (n_in, n_out):
        bad.append("ss-server logged up=%s down=%s; the upstream received %d and sent %d bytes: %s" % (
            line["up"], line["down"], n_in, n_out, line["_line"]))
    if client == "ferry":
        line = session_for(loc, None, "the session")[-1]
        if (int(line["up"]), int(line["down"])) != (n_in, n_out):
            bad.append("ss-local logged up=%s down=%s; its client sent %d and received %d bytes: %s" % (
                line["up"], line["down"], n_in, n_out, line["_line"]))
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------
# ss-local --pool: connections opened ahead, refreshed before the server's
# handshake timeout


def _established_to(port):
    """ESTABLISHED TCP connections to 127.0.0.1:port, seen from the kernel."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "( dport = :%d )" % port],
                         capture_output=True, text=True, check=True).stdout
    return len([l for l in out.splitlines() if l.strip()])


@pytest.mark.deadline(60)
def test_pool_preconnects_and_refreshes_before_server_timeout(fsrv, flocal, http4, tenmb, workdir):
    srv = fsrv("--handshake-timeout", "2s")
    port = int(srv.addr.rsplit(":", 1)[1])
    loc = flocal(srv.addr, "--pool", "3", "--pool-max-age", "1s", "--threads", "1")
    deadline = time.time() + scaled(3)
    while _established_to(port) < 3 and time.time() < deadline:
        time.sleep(0.05)
    assert _established_to(port) == 3, "ss-local --pool 3 should hold 3 idle connections to the server"
    # Longer than the server's handshake timeout: the pool must have replaced
    # its sockets in time, so the server never timed one out.
    time.sleep(scaled(3))
    out = os.path.join(workdir, "out.bin")
    r = curl_get(loc.addr, http4.url(tenmb["name"]), out)
    check_download(r, out, tenmb, loc.log(), srv.log())
    assert "end=handshake_timeout" not in srv.log(), srv.log()[-2000:]
    assert "end=probe" not in srv.log(), srv.log()[-2000:]
    deadline = time.time() + scaled(3)
    while _established_to(port) < 3 and time.time() < deadline:
        time.sleep(0.05)
    assert _established_to(port) >= 3, "the pool refills after a connection is taken"


# --------------------------------------------------------------------------
# ss-local: the target address and the client's first bytes travel together


def _socks5_connect(addr, port):
    h, p = addr.rsplit(":", 1)
    c = socket.create_connection((h, int(p)), timeout=scaled(3))
    c.sendall(b"\x05\x01\x00")
    assert c.recv(2) == b"\x05\x00"
    c.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big"))
    rep = recv_exact(c, 10, "SOCKS5 reply")
    assert rep[1] == 0, rep
    return c


@pytest.mark.deadline(30)
def test_address_and_first_data_share_the_first_write(flocal):
    """A stand-in ss-server that records what arrives in its first read: the
    salt, then ONE chunk holding the address and the client's request
    (32 + 18 + (7 + len) + 16 bytes for chacha20 and an IPv4 target)."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    sport = lst.getsockname()[1]
    loc = flocal("127.0.0.1:%d" % sport)
    req = b"GET / HTTP/1.0\r\n\r\n"
    c = _socks5_connect(loc.addr, 4321)
    a, _ = lst.accept()
    c.sendall(req)
    a.settimeout(scaled(3))
    first = a.recv(65536)
    assert len(first) == 32 + 18 + 7 + len(req) + 16, \
        "first write to the server: %d bytes, want salt + one chunk with address and data (%d)" % (
            len(first), 32 + 18 + 7 + len(req) + 16)
    c.close(), a.close(), lst.close()


@pytest.mark.deadline(30)
def test_server_speaks_first_is_not_stalled(fsrv, flocal, servers):
    """SMTP-like: the upstream talks first and the client only listens; the
    address must not wait for client bytes that never come."""
    def banner(server, conn, peer):
        conn.sendall(b"220 ready\r\n")
        conn.recv(16)
    up = servers(banner, name="banner")
    srv = fsrv()
    loc = flocal(srv.addr)
    c = _socks5_connect(loc.addr, up.port)
    c.settimeout(scaled(2))
    assert recv_line(c) == b"220 ready\r\n"
    c.close()


def test_local_reply_names_no_socket(fsrv, flocal, servers):
    """ss-local's SOCKS5 reply carries 0.0.0.0:0, as shadowsocks-libev's
    does: the socket it could name leads to the ss-server, not to the
    destination, and reading it would cost a getsockname per connection."""
    up = servers(peers.h_echo, name="echo")
    srv = fsrv()
    loc = flocal(srv.addr)
    ph, pp = loc.addr.rsplit(":", 1)
    s = peers.connect(ph, int(pp), timeout=scaled(5))
    s.sendall(b"\x05\x01\x00")
    assert recv_exact(s, 2, "method selection") == b"\x05\x00"
    s.sendall(s5_request_bytes("127.0.0.1", up.port))
    assert recv_exact(s, 10, "SOCKS5 reply") == b"\x05\x00\x00\x01" + b"\x00" * 6
    s.sendall(b"still relays")
    assert recv_exact(s, 12, "echo") == b"still relays"
    s.close()
