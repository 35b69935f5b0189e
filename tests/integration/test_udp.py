"""SOCKS5 UDP ASSOCIATE (RFC 1928 section 7) through `ferry socks`.

Clients are raw Python sockets doing the SOCKS5 handshake and sending
datagrams with the SOCKS UDP header; peers are a Python UDP echo server
(IPv4 and IPv6) and a real dnsmasq with a local record. ferry's own name
lookups also go to that dnsmasq (--dns-server), so a datagram addressed to
a name goes through the c-ares resolver. Every wait is bounded; nothing
asserts on timing.
"""

import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

import peers
from conftest import free_port, run_ferry, scaled
from peers import recv_exact

USER, PASS = "alice", "S3cr3t-P4ss-x9"


# --------------------------------------------------------------------------
# peers


class UDPEcho:
    """Echoes every datagram to its sender; remembers what it got from whom."""

    def __init__(self, host=peers.LOOP4):
        self.sock = socket.socket(peers.family_of(host), socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.got = []
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                d, a = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.got.append((d, a))
            try:
                self.sock.sendto(d, a)
            except OSError:
                pass

    def received(self):
        with self.lock:
            return list(self.got)

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def echo():
    made = []

    def make(host=peers.LOOP4):
        e = UDPEcho(host)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


def dns_query(name, qid=0x1234, qtype=1):
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)


def dns_answer_ips(resp):
    """(id, rcode, [IPv4 addresses of A records]) of a DNS response."""
    qid, flags, qd, an = struct.unpack("!HHHH", resp[:8])
    i = 12
    for _ in range(qd):
        while resp[i]:
            i += resp[i] + 1
        i += 5
    ips = []
    for _ in range(an):
        if resp[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while resp[i]:
                i += resp[i] + 1
            i += 1
        rtype, _, _, rdlen = struct.unpack("!HHIH", resp[i:i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            ips.append(socket.inet_ntoa(resp[i:i + 4]))
        i += rdlen
    return qid, flags & 0xF, ips


class Dnsmasq:
    """A real dnsmasq on a loopback port answering `records` (no upstream);
    extra: more of its options."""

    def __init__(self, records, extra=()):
        exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        if not os.path.exists(exe):
            pytest.skip("dnsmasq is not installed (apt-get install dnsmasq-base)")
        last = None
        for _ in range(3):
            self.port = free_port()
            argv = [exe, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                    "--listen-address=127.0.0.1", "--bind-interfaces", "--port=%d" % self.port,
                    "--pid-file=", "--cache-size=0"]
            argv += ["--address=/%s/%s" % (n, ip) for n, ip in records.items()] + list(extra)
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            if self._answers():
                return
            last = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else "no answer"
            self.close()
        raise AssertionError("dnsmasq did not start: %s" % last)

    def _answers(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        try:
            for _ in range(int(scaled(25))):
                if self.proc.poll() is not None:
                    return False
                try:
                    s.sendto(dns_query("probe.invalid"), ("127.0.0.1", self.port))
                    s.recvfrom(512)
                    return True
                except OSError:
                    continue
            return False
        finally:
            s.close()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def dnsmasq():
    d = Dnsmasq({"test.example": "127.0.0.9", "echo.test": "127.0.0.1"})
    yield d
    d.close()


# --------------------------------------------------------------------------
# SOCKS5 client side


def s5_udp_header(host, port):
    try:
        return b"\0\0\0\x01" + socket.inet_pton(socket.AF_INET, host) + struct.pack("!H", port)
    except OSError:
        pass
    try:
        return b"\0\0\0\x04" + socket.inet_pton(socket.AF_INET6, host) + struct.pack("!H", port)
    except OSError:
        pass
    h = host.encode()
    return b"\0\0\0\x03" + bytes([len(h)]) + h + struct.pack("!H", port)


def s5_udp_unwrap(d):
    """(host, port, payload) of a datagram from the relay."""
    assert d[:3] == b"\0\0\0", "reply header RSV RSV FRAG: %r" % d[:3]
    if d[3] == 1:
        return socket.inet_ntop(socket.AF_INET, d[4:8]), struct.unpack("!H", d[8:10])[0], d[10:]
    assert d[3] == 4, "reply ATYP %d (expected 1 or 4)" % d[3]
    return socket.inet_ntop(socket.AF_INET6, d[4:20]), struct.unpack("!H", d[20:22])[0], d[22:]


def associate(f, declared=("0.0.0.0", 0), user=None, methods=None):
    """SOCKS5 handshake + UDP ASSOCIATE. Returns (tcp socket, rep, relay (host, port))."""
    s = f.connect()
    if methods is None:
        methods = (2,) if user else (0,)
    s.sendall(bytes([5, len(methods)] + list(methods)))
    m = recv_exact(s, 2, "method selection")
    if m[1] == 0xFF:
        return s, None, None
    if m[1] == 2:
        u, p = user[0].encode(), user[1].encode()
        s.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
        st = recv_exact(s, 2, "RFC 1929 status")
        if st[1] != 0:
            return s, None, None
    s.sendall(b"\x05\x03\x00" + s5_udp_header(*declared)[3:])
    head = recv_exact(s, 4, "UDP ASSOCIATE reply")
    assert head[0] == 5
    if head[3] == 1:
        rest = recv_exact(s, 6, "BND.ADDR")
        relay = (socket.inet_ntop(socket.AF_INET, rest[:4]), struct.unpack("!H", rest[4:])[0])
    else:
        assert head[3] == 4, "BND ATYP %d" % head[3]
        rest = recv_exact(s, 18, "BND.ADDR")
        relay = (socket.inet_ntop(socket.AF_INET6, rest[:16]), struct.unpack("!H", rest[16:])[0])
    return s, head[1], relay


def udp_client(host=peers.LOOP4, timeout=3.0):
    u = socket.socket(peers.family_of(host), socket.SOCK_DGRAM)
    u.bind((host, 0))
    u.settimeout(scaled(timeout))
    return u


def round_trip(u, relay, host, port, payload):
    u.sendto(s5_udp_header(host, port) + payload, relay)
    d, src = u.recvfrom(65535)
    assert src[:2] == relay[:2], "reply came from %r, not the relay %r" % (src, relay)
    return s5_udp_unwrap(d)


def expect_silence(u, t=0.5):
    """Nothing arrives on u for t seconds (a dropped datagram)."""
    u.settimeout(t)
    try:
        d = u.recvfrom(65535)
    except socket.timeout:
        return
    raise AssertionError("expected no datagram, got %r" % (d,))


def end_line(f, n=1, pred=None):
    ss = f.wait_sessions(n, timeout=5, pred=lambda d: "udp_up_dgrams" in d and (pred is None or pred(d)))
    assert len(ss) >= n, "no association log line yet; log:\n%s" % f.log()[-3000:]
    return ss[-1]


def close_and_log(f, t):
    t.close()
    return end_line(f)


# --------------------------------------------------------------------------
# tests


@pytest.mark.deadline(30)
def test_echo_round_trips_and_log(ferry, echo):
    e = echo()
    f = ferry("socks", "--threads", "1")
    t, rep, relay = associate(f)
    assert rep == 0, "UDP ASSOCIATE should succeed, got %#04x" % rep
    assert relay[0] == "127.0.0.1", "BND.ADDR should be the address the client reached, got %r" % (relay,)
    assert relay[1] not in (0, f.port)
    u = udp_client()
    sizes = [0, 1, 100, 1400, 8000, 60000]
    for i, n in enumerate(sizes):
        payload = bytes([i]) * n
        host, port, got = round_trip(u, relay, "127.0.0.1", e.port, payload)
        assert (host, port) == ("127.0.0.1", e.port), "reply header names %s:%d" % (host, port)
        assert got == payload, "payload of %d bytes came back as %d bytes" % (n, len(got))
    # The echo server saw the relay, not the client.
    assert all(a[1] != u.getsockname()[1] for _, a in e.received())
    d = close_and_log(f, t)
    assert d["end"] == "client_closed", d["_line"]
    assert d["proto"] == "socks5"
    assert d["udp_up_dgrams"] == str(len(sizes)) and d["udp_down_dgrams"] == str(len(sizes)), d["_line"]
    assert d["udp_up_bytes"] == str(sum(sizes)) and d["udp_down_bytes"] == str(sum(sizes)), d["_line"]
    assert d["udp_dest"] == "127.0.0.1:%d" % e.port
    for k in ("stranger", "frag", "bad", "denied", "dns", "send", "unsolicited"):
        assert d["udp_drop_" + k] == "0", d["_line"]
    assert f.alive()


@pytest.mark.deadline(30)
def test_dns_query_to_dnsmasq_through_the_relay(ferry, dnsmasq):
    f = ferry("socks", "--threads", "1")
    t, rep, relay = associate(f)
    assert rep == 0
    u = udp_client()
    host, port, resp = round_trip(u, relay, "127.0.0.1", dnsmasq.port, dns_query("test.example", qid=0xBEEF))
    assert (host, port) == ("127.0.0.1", dnsmasq.port)
    qid, rcode, ips = dns_answer_ips(resp)
    assert qid == 0xBEEF and rcode == 0, "DNS answer id %#x rcode %d" % (qid, rcode)
    assert ips == ["127.0.0.9"], "test.example should be 127.0.0.9, got %r" % ips
    d = close_and_log(f, t)
    assert d["udp_up_dgrams"] == "1" and d["udp_down_dgrams"] == "1", d["_line"]


@pytest.mark.deadline(30)
def test_destination_by_name_resolved_by_ferry(ferry, dnsmasq, echo):
    """DST is a name: ferry resolves it (c-ares, asking dnsmasq) and relays."""
    e = echo()
    f = ferry("socks", "--threads", "1", "--dns-server", "127.0.0.1:%d" % dnsmasq.port)
    t, rep, relay = associate(f)
    assert rep == 0
    u = udp_client()
    for i in range(5):
        host, port, got = round_trip(u, relay, "echo.test", e.port, b"by name %d" % i)
        assert (host, port) == ("127.0.0.1", e.port), "a reply names its source address, got %s" % host
        assert got == b"by name %d" % i
    # A name that does not resolve: dropped and counted, the association lives on.
    u.sendto(s5_udp_header("nothing.invalid", e.port) + b"lost", relay)
    expect_silence(u)
    assert round_trip(u, relay, "echo.test", e.port, b"still")[2] == b"still"
    d = close_and_log(f, t)
    assert d["udp_dest"] == "echo.test:%d" % e.port, d["_line"]
    assert d["udp_up_dgrams"] == "6" and d["udp_drop_dns"] == "1", d["_line"]


@pytest.mark.deadline(60)
def test_thousand_datagrams_none_lost(ferry, echo):
    """Paced: at most WINDOW datagrams in flight, so no kernel queue overflows."""
    e = echo()
    f = ferry("socks", "--threads", "1")
    t, rep, relay = associate(f)
    assert rep == 0
    u = udp_client(timeout=5)
    N, WINDOW = 1000, 8
    hdr = s5_udp_header("127.0.0.1", e.port)
    seen = set()
    sent = 0
    while len(seen) < N:
        while sent < N and sent - len(seen) < WINDOW:
            u.sendto(hdr + struct.pack("!I", sent) + b"x" * (sent % 700), relay)
            sent += 1
        try:
            d, _ = u.recvfrom(65535)
        except socket.timeout:
            break
        _, _, p = s5_udp_unwrap(d)
        seq = struct.unpack("!I", p[:4])[0]
        assert p[4:] == b"x" * (seq % 700), "datagram %d came back altered" % seq
        assert seq not in seen, "datagram %d came back twice" % seq
        seen.add(seq)
    assert len(seen) == N, "%d of %d datagrams came back" % (len(seen), N)
    d = close_and_log(f, t)
    assert d["udp_up_dgrams"] == str(N) and d["udp_down_dgrams"] == str(N), d["_line"]
    assert d["udp_drop_kernel"] == "0" and d["udp_drop_send"] == "0", d["_line"]


@pytest.mark.deadline(60)
def test_flood_is_dropped_not_buffered(ferry):
    """20 MB of datagrams at a destination that never reads, with nobody
    reading the replies either: ferry's memory stays put, what it could not
    send is counted, and it goes on serving."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    f = ferry("socks", "--threads", "1")
    t, rep, relay = associate(f)
    u = udp_client()
    u.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    rss0 = f.rss_kib()
    hdr = s5_udp_header("127.0.0.1", sink.getsockname()[1])
    N = 20000
    sent = 0
    for i in range(N):
        try:
            u.sendto(hdr + b"f" * 1000, relay)
            sent += 1
        except BlockingIOError:
            pass
    # Still serving: a new association works end to end.
    e = UDPEcho()
    try:
        t2, rep2, relay2 = associate(f)
        assert rep2 == 0
        assert round_trip(udp_client(), relay2, "127.0.0.1", e.port, b"after flood")[2] == b"after flood"
        t2.close()
    finally:
        e.close()
    grew = f.rss_kib() - rss0
    assert grew < 10 * 1024, "ferry grew by %d KiB during a 20 MB flood: datagrams are being queued" % grew
    d = close_and_log(f, t)
    up = int(d["udp_up_dgrams"])
    assert up + int(d["udp_drop_kernel"]) + int(d["udp_drop_send"]) <= sent, d["_line"]
    assert up > 0, d["_line"]
    sink.close()


@pytest.mark.deadline(30)
def test_ipv6_destination(ferry, echo):
    try:
        e = echo(peers.LOOP6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    f = ferry("socks", "--threads", "1")
    t, rep, relay = associate(f)
    assert rep == 0
    u = udp_client()
    host, port, got = round_trip(u, relay, "::1", e.port, b"over six")
    assert (host, port, got) == ("::1", e.port, b"over six")
    d = close_and_log(f, t)
    assert d["udp_dest"] == "[::1]:%d" % e.port, d["_line"]


@pytest.mark.deadline(30)
def test_ipv6_client_side(ferry, echo):
    """A listener on [::1]: the relay address is IPv6 too."""
    try:
        e = echo(peers.LOOP6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    f = ferry("socks", "--threads", "1", host="::1")
    t, rep, relay = associate(f, declared=("::", 0))
    assert rep == 0 and relay[0] == "::1", relay
    u = udp_client(peers.LOOP6)
    assert round_trip(u, relay, "::1", e.port, b"six both ways")[2] == b"six both ways"
    close_and_log(f, t)


@pytest.mark.deadline(30)
def test_stranger_dropped_port_learned(ferry, echo):
    """Declared 0.0.0.0:0: the first datagram from the TCP client's IP fixes the
    port; a datagram from another port is dropped and counted."""
    e = echo()
    f = ferry("socks", "--threads", "1")
    t, rep, relay = associate(f)
    u, stranger = udp_client(), udp_client()
    assert round_trip(u, relay, "127.0.0.1", e.port, b"first")[2] == b"first"
    stranger.sendto(s5_udp_header("127.0.0.1", e.port) + b"from a stranger", relay)
    expect_silence(stranger)
    assert round_trip(u, relay, "127.0.0.1", e.port, b"second")[2] == b"second"
    assert b"from a stranger" not in [p for p, _ in e.received()]
    d = close_and_log(f, t)
    assert d["udp_drop_stranger"] == "1" and d["udp_up_dgrams"] == "2", d["_line"]


@pytest.mark.deadline(30)
def test_declared_port_only_that_sender(ferry, echo):
    e = echo()
    f = ferry("socks", "--threads", "1")
    u, other = udp_client(), udp_client()
    t, rep, relay = associate(f, declared=("127.0.0.1", u.getsockname()[1]))
    assert rep == 0
    other.sendto(s5_udp_header("127.0.0.1", e.port) + b"not declared", relay)   # even first
    expect_silence(other)
    assert round_trip(u, relay, "127.0.0.1", e.port, b"declared")[2] == b"declared"
    d = close_and_log(f, t)
    assert d["udp_drop_stranger"] == "1", d["_line"]
    assert b"not declared" not in [p for p, _ in e.received()]


@pytest.mark.deadline(30)
def test_fragments_and_bad_headers_dropped(ferry, echo):
    e = echo()
    f = ferry("socks", "--threads", "1")
    t, rep, relay = associate(f)
    u = udp_client()
    assert round_trip(u, relay, "127.0.0.1", e.port, b"ok")[2] == b"ok"
    hdr = s5_udp_header("127.0.0.1", e.port)
    u.sendto(hdr[:2] + b"\x01" + hdr[3:] + b"fragment", relay)            # FRAG 1
    u.sendto(hdr[:2] + b"\x81" + hdr[3:] + b"last fragment", relay)       # FRAG 0x81
    bad = [b"", b"\0", b"\0\0\0", b"\0\0\0\x01\x7f\0", b"\0\0\0\x02" + hdr[4:],
           b"\0\0\0\x03\x00\x00\x35", b"\0\0\0\x03\x03a\0b\x00\x35", hdr[:-2] + b"\0\0" + b"port zero"]
    for b in bad:
        u.sendto(b, relay)
    expect_silence(u)
    assert round_trip(u, relay, "127.0.0.1", e.port, b"still ok")[2] == b"still ok"
    got = [p for p, _ in e.received()]
    assert got == [b"ok", b"still ok"], got
    d = close_and_log(f, t)
    assert d["udp_drop_frag"] == "2", d["_line"]
    assert d["udp_drop_bad"] == str(len(bad)), d["_line"]
    assert f.alive()


@pytest.mark.deadline(30)
def test_unsolicited_reply_dropped(ferry, echo):
    """Only a destination the client sent to gets through to it."""
    e = echo()
    f = ferry("socks", "--threads", "1")
    t, rep, relay = associate(f)
    u = udp_client()
    assert round_trip(u, relay, "127.0.0.1", e.port, b"hi")[2] == b"hi"
    relay_out = e.received()[0][1]           # ferry's destination-side socket
    intruder = udp_client()
    intruder.sendto(b"unsolicited", relay_out)
    expect_silence(u)
    d = close_and_log(f, t)
    assert d["udp_drop_unsolicited"] == "1", d["_line"]


@pytest.mark.deadline(30)
def test_destination_policy_applies(ferry, echo):
    e, allowed = echo(), echo()
    # The name rule first: an address rule ahead of it would leave a name's
    # verdict to its resolved address (as for CONNECT).
    f = ferry("socks", "--threads", "1", "--deny-dest", "*.blocked.test", "--deny-dest", "127.0.0.1:%d" % e.port)
    t, rep, relay = associate(f)
    u = udp_client()
    u.sendto(s5_udp_header("127.0.0.1", e.port) + b"denied", relay)
    u.sendto(s5_udp_header("x.blocked.test", e.port) + b"denied by name", relay)
    expect_silence(u)
    assert round_trip(u, relay, "127.0.0.1", allowed.port, b"allowed")[2] == b"allowed"
    assert e.received() == []
    d = close_and_log(f, t)
    assert d["udp_drop_denied"] == "2", d["_line"]


@pytest.mark.deadline(30)
def test_association_ends_with_its_tcp_connection(ferry, echo):
    e = echo()
    f = ferry("socks", "--threads", "1")
    t, rep, relay = associate(f)
    u = udp_client()
    assert round_trip(u, relay, "127.0.0.1", e.port, b"alive")[2] == b"alive"
    t.close()
    end_line(f)
    # The relay port is closed: a connected UDP socket hears ICMP port unreachable.
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.connect(relay)
    c.settimeout(0.3)
    refused = False
    deadline = time.monotonic() + scaled(5)
    while not refused and time.monotonic() < deadline:
        try:
            c.send(s5_udp_header("127.0.0.1", e.port) + b"after close")
            c.recv(100)
        except ConnectionRefusedError:
            refused = True
        except socket.timeout:
            pass
    assert refused, "the relay port still takes datagrams after the TCP connection closed"
    assert b"after close" not in [p for p, _ in e.received()]


@pytest.mark.deadline(30)
def test_idle_timeout_ends_association(ferry, echo):
    e = echo()
    f = ferry("socks", "--threads", "1", "--udp-timeout", "1")
    t, rep, relay = associate(f)
    u = udp_client()
    assert round_trip(u, relay, "127.0.0.1", e.port, b"once")[2] == b"once"
    t.settimeout(scaled(10))
    assert t.recv(100) == b"", "ferry should close the control connection of an idle association"
    d = end_line(f)
    assert d["end"] == "idle_timeout", d["_line"]


@pytest.mark.deadline(30)
def test_udp_timeout_from_the_config_file(ferry, echo, workdir):
    """The YAML twin of --udp-timeout; ferry check knows its bounds."""
    e = echo()
    port = free_port()
    path = os.path.join(workdir, "udp.yaml")
    with open(path, "w") as fh:
        fh.write("threads: 1\nlisteners:\n  - name: s\n    mode: socks\n    listen: 127.0.0.1:%d\n"
                 "    udp-timeout: 1s\n" % port)
    f = ferry("run", "-c", path, listen=("127.0.0.1", port))
    t, rep, relay = associate(f)
    assert rep == 0
    assert round_trip(udp_client(), relay, "127.0.0.1", e.port, b"yaml")[2] == b"yaml"
    t.settimeout(scaled(10))
    assert t.recv(100) == b""
    assert end_line(f)["end"] == "idle_timeout"
    with open(path, "w") as fh:
        fh.write("listeners:\n  - mode: socks\n    listen: 127.0.0.1:%d\n    udp-timeout: 0\n" % port)
    r = run_ferry("check", "-c", path)
    assert r.returncode == 1 and b"udp-timeout" in r.stderr, r.stderr


@pytest.mark.deadline(30)
def test_auth_required_when_users_configured(ferry, echo):
    e = echo()
    f = ferry("socks", "--threads", "1", "--user", "%s:%s" % (USER, PASS))
    t, rep, _ = associate(f, methods=(0,))
    assert rep is None, "no-auth must be refused when users are configured"
    t.close()
    t, rep, _ = associate(f, user=(USER, "wrong"))
    assert rep is None, "a wrong password must be refused"
    t.close()
    t, rep, relay = associate(f, user=(USER, PASS))
    assert rep == 0
    u = udp_client()
    assert round_trip(u, relay, "127.0.0.1", e.port, b"authed")[2] == b"authed"
    d = close_and_log(f, t)
    assert d["user"] == USER, d["_line"]


@pytest.mark.deadline(30)
def test_client_acl_applies_to_declared_address(ferry):
    f = ferry("socks", "--threads", "1", "--allow", "127.0.0.0/8")
    t, rep, _ = associate(f, declared=("10.1.2.3", 5000))
    assert rep == 2, "a declared client address outside --allow should get 0x02, got %r" % rep
    t.close()
    t, rep, _ = associate(f, declared=("127.0.0.1", 5000))
    assert rep == 0
    t.close()


@pytest.mark.deadline(30)
def test_hostile_name_is_sanitised_in_the_log(ferry, dnsmasq, echo):
    e = echo()
    f = ferry("socks", "--threads", "1", "--dns-server", "127.0.0.1:%d" % dnsmasq.port)
    t, rep, relay = associate(f)
    u = udp_client()
    u.sendto(s5_udp_header("evil\nforged=1 x", e.port) + b"x", relay)
    expect_silence(u)
    d = close_and_log(f, t)
    assert "\nforged" not in f.log() and not any(l.startswith("forged") for l in f.log().splitlines())
    assert " " not in d["udp_dest"], d["_line"]


@pytest.mark.deadline(30)
def test_longest_names_keep_every_key_in_the_log(ferry, echo):
    """A 255-byte user, declared name and destination name: the line still
    holds every counter."""
    e = echo()
    user = "u" * 255
    f = ferry("socks", "--threads", "1", "--user", "%s:%s" % (user, PASS))
    t, rep, relay = associate(f, declared=("c" * 250 + ".test", 0), user=(user, PASS))
    assert rep == 0
    u = udp_client()
    assert round_trip(u, relay, "127.0.0.1", e.port, b"x")[2] == b"x"
    u.sendto(s5_udp_header("d" * 251 + ".inv", e.port) + b"y", relay)
    expect_silence(u, 0.3)
    d = close_and_log(f, t)
    for k in ("up_dgrams", "up_bytes", "down_dgrams", "down_bytes", "drop_stranger", "drop_frag", "drop_bad",
              "drop_denied", "drop_dns", "drop_send", "drop_unsolicited", "drop_kernel", "dest"):
        assert "udp_" + k in d, "udp_%s missing from: %s" % (k, d["_line"])
    assert d["udp_up_dgrams"] == "1" and d["user"] == user


@pytest.mark.deadline(30)
def test_ss_local_still_refuses_udp(ferry):
    """ss-local's tunnel carries TCP only: UDP ASSOCIATE stays 0x07 there."""
    f = ferry("ss-local", "-s", "127.0.0.1:%d" % free_port(), "-k", "pw")
    t, rep, _ = associate(f)
    assert rep == 7, "ss-local should answer 0x07, got %r" % rep
    t.close()


# --------------------------------------------------------------------------
# a second real client: the npm `socks` package


NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")


@pytest.fixture(scope="session")
def node_socks():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("needs node and npm (Debian packages nodejs, npm; scripts/install-deps)")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "socks")):
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, timeout=300)
        if r.returncode != 0:
            pytest.fail("npm ci failed in %s:\n%s" % (NODE_DIR, r.stderr.decode(errors="replace")[-3000:]))
    return node


@pytest.mark.deadline(90)
@pytest.mark.parametrize("auth", [False, True], ids=["noauth", "userpass"])
def test_npm_socks_associate(ferry, dnsmasq, echo, node_socks, auth):
    e = echo()
    args = ["socks", "--threads", "1", "--dns-server", "127.0.0.1:%d" % dnsmasq.port]
    extra = []
    if auth:
        args += ["--user", "%s:%s" % (USER, PASS)]
        extra = [USER, PASS]
    f = ferry(*args)
    env = dict(os.environ, FERRY_TIME_SCALE=str(scaled(1)))
    r = subprocess.run([node_socks, os.path.join(NODE_DIR, "socks_udp.js"), f.addr, str(e.port), str(dnsmasq.port)]
                       + extra, capture_output=True, timeout=scaled(60), env=env)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0 and "ALL OK" in out, out
    d = end_line(f)
    assert d["udp_up_dgrams"] == "22" and d["udp_down_dgrams"] == "22", d["_line"]
    assert d["user"] == (USER if auth else "-"), d["_line"]
