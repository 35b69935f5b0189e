"""The PROXY protocol: --accept-proxy and --send-proxy, against a real HAProxy.

- HAProxy (Debian's, `-db`, a temporary config on loopback ports) in front of
  `ferry relay --accept-proxy` with `send-proxy` and `send-proxy-v2`: a client
  bound to 127.0.0.2 shows up in ferry's log as itself, with its own port,
  and --deny acts on that address, not on HAProxy's 127.0.0.1.
- `ferry relay|socks --send-proxy v1|v2` to an HAProxy `bind ... accept-proxy`
  frontend in http mode whose `http-request return` answers with what it
  took from the header (%[src], %[src_port], %[dst], %[dst_port]).
- Garbage instead of a header, a header that never completes, and a SOCKS
  handshake pipelined right behind the header.
"""

import os
import shutil
import socket
import struct
import subprocess
import time

import pytest

from conftest import free_port, listening, scaled
import peers
from peers import recv_exact, recv_line

CLIENT = "127.0.0.2"
OTHER = "127.0.0.3"


class HAProxy:
    def __init__(self, cfg, port, workdir):
        self.port = port
        self.cfg_path = os.path.join(workdir, "haproxy-%d.cfg" % port)
        with open(self.cfg_path, "w") as f:
            f.write(cfg)
        self.log_path = self.cfg_path.replace(".cfg", ".log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([shutil.which("haproxy"), "-db", "-f", self.cfg_path],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, close_fds=True)

    def wait_listening(self):
        deadline = time.monotonic() + scaled(5)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if listening(self.proc.pid, self.port):
                return True
            time.sleep(0.01)
        return False

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


DEFAULTS = """global
    maxconn 256
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
"""


@pytest.fixture
def haproxy(workdir):
    """haproxy(body) -> HAProxy running DEFAULTS + body, where body's {port}
    is the port it listens on (returned as .port)."""
    if not shutil.which("haproxy"):
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    made = []

    def start(body):
        last = None
        for _ in range(3):
            port = free_port()
            h = HAProxy(DEFAULTS + body.format(port=port), port, workdir)
            made.append(h)
            if h.wait_listening():
                return h
            last = h
            h.stop()
        raise AssertionError("haproxy did not listen:\n%s" % last.log())

    yield start
    for h in made:
        h.stop()


def in_front_of(haproxy, ferry_port, send):
    return haproxy("""frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server ferry 127.0.0.1:%d %s
""" % (ferry_port, send))


def echo_ok(s, name):
    assert recv_line(s, what="identify line") == b"ID:%s\n" % name.encode()
    s.sendall(b"ping\n")
    assert recv_line(s, what="echo") == b"ping\n"


def session_of(f, pred, what):
    ss = f.wait_sessions(1, pred=pred)
    assert ss, "no session line for %s in ferry's log:\n%s" % (what, f.log())
    return ss[0]


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_haproxy_in_front_client_shows_up_as_itself(ferry, identify, haproxy, send):
    up = identify("A")
    f = ferry("relay", "--accept-proxy", "-u", up.addr)
    h = in_front_of(haproxy, f.port, send)
    s = peers.connect("127.0.0.1", h.port, source=CLIENT)
    cport = s.getsockname()[1]
    echo_ok(s, "A")
    s.close()
    line = session_of(f, lambda d: d.get("end") == "client_closed", "the relayed session")
    assert line["client"] == "%s:%d" % (CLIENT, cport), line["_line"]


def test_haproxy_in_front_acl_uses_the_real_client(ferry, identify, haproxy):
    up = identify("A")
    # HAProxy itself connects from 127.0.0.1: only the header's address can be denied.
    f = ferry("relay", "--accept-proxy", "--deny", "%s/32" % OTHER, "-u", up.addr)
    h = in_front_of(haproxy, f.port, "send-proxy-v2")
    bad = peers.connect("127.0.0.1", h.port, source=OTHER)
    data, how = peers.read_until_close(bad, timeout=scaled(5))
    assert data == b"" and how in ("eof", "reset"), (data, how)
    bad.close()
    good = peers.connect("127.0.0.1", h.port, source=CLIENT)
    echo_ok(good, "A")
    good.close()
    denied = session_of(f, lambda d: d.get("end") == "denied", "the denied client")
    assert denied["client"].startswith(OTHER + ":"), denied["_line"]
    ok = session_of(f, lambda d: d.get("end") == "client_closed", "the admitted client")
    assert ok["client"].startswith(CLIENT + ":"), ok["_line"]


def reporter(haproxy):
    """An HAProxy http frontend behind accept-proxy that answers with what
    the PROXY header told it."""
    return haproxy("""frontend fe
    mode http
    timeout client 10s
    bind 127.0.0.1:{port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "src=%[src]:%[src_port] dst=%[dst]:%[dst_port]\\n"
""")


def http_get(s):
    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    data, how = peers.read_until_close(s, timeout=scaled(5))
    assert how == "eof", (data, how)
    assert data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n")[0], data
    body = data.split(b"\r\n\r\n", 1)[1].decode()
    return dict(kv.split("=", 1) for kv in body.split())


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_send_proxy_to_haproxy_accept_proxy(ferry, haproxy, version):
    h = reporter(haproxy)
    f = ferry("relay", "--send-proxy", version, "-u", "127.0.0.1:%d" % h.port)
    s = peers.connect("127.0.0.1", f.port, source=CLIENT)
    cport = s.getsockname()[1]
    seen = http_get(s)
    s.close()
    assert seen["src"] == "%s:%d" % (CLIENT, cport), seen
    assert seen["dst"] == "127.0.0.1:%d" % f.port, seen


def test_socks_send_proxy_to_haproxy(ferry, haproxy):
    h = reporter(haproxy)
    f = ferry("socks", "--send-proxy", "v2")
    s = peers.connect("127.0.0.1", f.port, source=CLIENT)
    cport = s.getsockname()[1]
    s.sendall(b"\x05\x01\x00")
    assert recv_exact(s, 2, "method selection") == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", h.port))
    rep = recv_exact(s, 10, "SOCKS5 reply")
    assert rep[1] == 0, rep
    seen = http_get(s)
    s.close()
    assert seen["src"] == "%s:%d" % (CLIENT, cport), seen


def test_ferry_to_ferry_and_pipelined_data(ferry, identify):
    """ferry --send-proxy v2 -> ferry --accept-proxy: the second one logs the
    first one's client; bytes sent before the upstream connected follow the
    header, in order."""
    up = identify("A")
    inner = ferry("relay", "--accept-proxy", "-u", up.addr)
    outer = ferry("relay", "--send-proxy", "v2", "-u", inner.addr)
    s = peers.connect("127.0.0.1", outer.port, source=CLIENT)
    cport = s.getsockname()[1]
    s.sendall(b"early\n")
    assert recv_line(s) == b"ID:A\n"
    assert recv_line(s) == b"early\n"
    s.close()
    line = session_of(inner, lambda d: d.get("end") == "client_closed", "the inner session")
    assert line["client"] == "%s:%d" % (CLIENT, cport), line["_line"]


def test_garbage_instead_of_header_is_closed_and_logged(ferry, identify):
    up = identify("A")
    f = ferry("relay", "--accept-proxy", "-u", up.addr)
    s = f.connect()
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data, how = peers.read_until_close(s, timeout=scaled(5))
    assert data == b"" and how in ("eof", "reset"), (data, how)
    s.close()
    line = session_of(f, lambda d: d.get("end") == "proxy_header", "the bad header")
    assert line["reason"] == "bad_signature", line["_line"]
    assert line["client"].startswith("127.0.0.1:"), line["_line"]


def test_header_timeout(ferry, identify):
    up = identify("A")
    f = ferry("relay", "--accept-proxy", "--accept-proxy-timeout", "300ms", "-u", up.addr)
    s = f.connect()
    s.sendall(b"PROXY TCP4 192.0.2.1")
    t0 = time.monotonic()
    assert peers.read_until_close(s, timeout=scaled(5)) == (b"", "eof")
    took = time.monotonic() - t0
    s.close()
    assert took < scaled(3), took
    line = session_of(f, lambda d: d.get("end") == "proxy_header", "the late header")
    assert line["reason"] == "timeout", line["_line"]


def test_socks_handshake_after_header(ferry, identify):
    """The header, the SOCKS5 greeting and the request in one write: ferry
    consumes exactly the header and the SOCKS front gets the rest."""
    up = identify("A")
    f = ferry("socks", "--accept-proxy")
    s = f.connect()
    s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 1080\r\n" + b"\x05\x01\x00" +
              b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", up.port))
    assert recv_exact(s, 2, "method selection") == b"\x05\x00"
    rep = recv_exact(s, 10, "SOCKS5 reply")
    assert rep[1] == 0, rep
    echo_ok(s, "A")
    s.close()
    line = session_of(f, lambda d: d.get("end") == "client_closed", "the SOCKS session")
    assert line["client"] == "192.0.2.7:5555", line["_line"]


def test_local_command_uses_the_connection(ferry, identify):
    """v2 LOCAL (a balancer's own health check) names no client: the
    connection's own address is used."""
    up = identify("A")
    f = ferry("relay", "--accept-proxy", "-u", up.addr)
    s = peers.connect("127.0.0.1", f.port, source=CLIENT)
    s.sendall(b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")
    echo_ok(s, "A")
    s.close()
    line = session_of(f, lambda d: d.get("end") == "client_closed", "the LOCAL session")
    assert line["client"].startswith(CLIENT + ":"), line["_line"]


def test_accept_proxy_from_refuses_other_sources(ferry, identify):
    """Only the listed balancers may speak for clients: a PROXY header from
    anyone else would let them claim any address (and pass every ACL)."""
    up = identify("A")
    inner = ferry("relay", "--accept-proxy-from", "127.0.0.4/32", "-u", up.addr)
    spoof = peers.connect("127.0.0.1", inner.port, source=OTHER)
    spoof.sendall(b"PROXY TCP4 10.9.9.9 127.0.0.1 1234 80\r\n")
    data, how = peers.read_until_close(spoof, timeout=scaled(5))
    assert data == b"" and how in ("eof", "reset"), (data, how)
    spoof.close()
    line = session_of(inner, lambda d: d.get("end") == "denied", "the refused source")
    assert line["client"].startswith(OTHER + ":"), line["_line"]
    # The balancer (127.0.0.4) is trusted: the client is the one it names.
    s = peers.connect("127.0.0.1", inner.port, source="127.0.0.4")
    s.sendall(b"PROXY TCP4 10.9.9.9 127.0.0.1 1234 80\r\n")
    assert recv_line(s) == b"ID:A\n"
    s.close()
    line = session_of(inner, lambda d: d.get("end") == "client_closed", "the balanced session")
    assert line["client"] == "10.9.9.9:1234", line["_line"]
