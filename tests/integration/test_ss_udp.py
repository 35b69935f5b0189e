"""Shadowsocks UDP (`ss-local -u`, `ss-server -u`) through real peers.

SOCKS5 UDP ASSOCIATE on ss-local is carried to ss-server as Shadowsocks
AEAD UDP packets (one salt per packet); ss-server is the NAT for replies.
Interop both ways with shadowsocks-libev's ss-local -u and ss-server -u,
a real dnsmasq answering DNS through the chain, and raw packets sealed here
(python3-cryptography) for the replay filter and the probes. Every wait is
bounded; nothing asserts on timing.
"""

import json
import os
import pwd
import shutil
import signal
import socket
import struct
import tempfile

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import peers
from conftest import free_port, run_ferry, scaled
from test_ss import PW, dns, evp_bytes_to_key, flocal, fsrv, libev, libev_local, libev_server  # noqa: F401
from test_udp import (dns_answer_ips, dns_query, dnsmasq, echo, expect_silence, round_trip,  # noqa: F401
                      s5_udp_header, udp_client)
from test_udp import associate as _associate

METHOD = "chacha20-ietf-poly1305"


class _Addr:
    """What test_udp.associate() needs of a proxy: connect()."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.host, self.port = host, int(port)

    def connect(self):
        return peers.connect(self.host, self.port, timeout=scaled(5))


def associate(proxy):
    t, rep, relay = _associate(proxy if hasattr(proxy, "connect") else _Addr(proxy.addr))
    assert rep == 0, "UDP ASSOCIATE should succeed, got %r" % rep
    return t, relay


def stop(f):
    """SIGTERM and wait: ss-server logs its UDP clients as it stops."""
    problems = f.stop()
    assert not problems, problems


def ss_line(f, n=1, pred=None):
    """ss-server's log line for a UDP client (proto=ss-udp)."""
    ss = f.wait_sessions(n, timeout=scaled(5),
                         pred=lambda d: d.get("proto") == "ss-udp" and (pred is None or pred(d)))
    assert len(ss) >= n, "no ss-udp line; log:\n%s" % f.log()[-3000:]
    return ss[-1]


# --------------------------------------------------------------------------
# packets sealed here, as a Shadowsocks client would


def seal(payload, method=METHOD, pw=PW, salt=None):
    klen = 16 if method == "aes-128-gcm" else 32
    key = evp_bytes_to_key(PW if pw is None else pw, klen)
    salt = salt or os.urandom(klen)
    sub = HKDF(algorithm=hashes.SHA1(), length=klen, salt=salt, info=b"ss-subkey").derive(key)
    aead = ChaCha20Poly1305(sub) if method.startswith("chacha") else AESGCM(sub)
    return salt + aead.encrypt(b"\0" * 12, payload, None)


def unseal(pkt, method=METHOD, pw=PW):
    klen = 16 if method == "aes-128-gcm" else 32
    key = evp_bytes_to_key(pw, klen)
    sub = HKDF(algorithm=hashes.SHA1(), length=klen, salt=pkt[:klen], info=b"ss-subkey").derive(key)
    aead = ChaCha20Poly1305(sub) if method.startswith("chacha") else AESGCM(sub)
    return aead.decrypt(b"\0" * 12, pkt[klen:], None)


def addr_of(host, port):
    return s5_udp_header(host, port)[3:]


def udp_sockets_on(port):
    """How many UDP sockets are bound to this port (/proc/net/udp's local_address)."""
    with open("/proc/net/udp") as f:
        return sum(1 for line in f.readlines()[1:] if line.split()[1].endswith(":%04X" % port))


# --------------------------------------------------------------------------
# tests


@pytest.mark.deadline(40)
@pytest.mark.parametrize("method", ["chacha20-ietf-poly1305", "aes-128-gcm"])
def test_ferry_to_ferry_echo_and_log(fsrv, flocal, echo, method):
    e = echo()
    srv = fsrv("-u", "--threads", "2", method=method)
    loc = flocal(srv.addr, "-u", method=method)
    t, relay = associate(loc)
    u = udp_client()
    sizes = [0, 1, 100, 1400, 8000, 60000]
    for i, n in enumerate(sizes):
        payload = bytes([i + 1]) * n
        host, port, got = round_trip(u, relay, "127.0.0.1", e.port, payload)
        assert (host, port) == ("127.0.0.1", e.port), "reply header names %s:%d" % (host, port)
        assert got == payload, "%d bytes came back as %d" % (n, len(got))
    # The echo server saw ss-server's NAT socket, not the client nor ss-local.
    assert {a[1] for _, a in e.received()} - {u.getsockname()[1]} == {a[1] for _, a in e.received()}
    t.close()
    d = loc.wait_sessions(1, timeout=5, pred=lambda d: "udp_up_dgrams" in d)[-1]
    assert d["udp_up_dgrams"] == str(len(sizes)) and d["udp_down_dgrams"] == str(len(sizes)), d["_line"]
    assert d["udp_up_bytes"] == str(sum(sizes)) and d["udp_drop_auth"] == "0", d["_line"]
    stop(srv)
    d = ss_line(srv)
    assert d["end"] == "drain" and d["udp_up_dgrams"] == str(len(sizes)), d["_line"]
    assert d["udp_down_bytes"] == str(sum(sizes)) and d["udp_dest"] == "127.0.0.1:%d" % e.port, d["_line"]


@pytest.mark.deadline(40)
def test_libev_local_to_ferry_server_dns(fsrv, libev, dnsmasq):
    srv = fsrv("-u", "--allow-dest", "127.0.0.1/32")
    loc = libev_local(libev, srv.addr, extra=("-u",))
    t, relay = associate(loc)
    u = udp_client()
    for i in range(3):
        host, port, resp = round_trip(u, relay, "127.0.0.1", dnsmasq.port, dns_query("test.example", qid=0x100 + i))
        assert (host, port) == ("127.0.0.1", dnsmasq.port)
        qid, rcode, ips = dns_answer_ips(resp)
        assert (qid, rcode, ips) == (0x100 + i, 0, ["127.0.0.9"]), "DNS answer %r" % ((qid, rcode, ips),)
    t.close()
    assert srv.alive()


@pytest.mark.deadline(40)
def test_ferry_local_to_libev_server_dns_by_name(flocal, libev, dnsmasq, echo):
    """ferry ss-local -u to libev's ss-server -u: a DNS query to dnsmasq, and
    a datagram addressed by name, which the far end resolves."""
    e = echo()
    srv = libev("ss-server", "-k", PW, "-m", METHOD, "-u", "-d", "127.0.0.1:%d" % dnsmasq.port)
    loc = flocal(srv.addr, "-u")
    t, relay = associate(loc)
    u = udp_client()
    host, port, resp = round_trip(u, relay, "127.0.0.1", dnsmasq.port, dns_query("test.example", qid=0x4242))
    assert (host, port) == ("127.0.0.1", dnsmasq.port)
    assert dns_answer_ips(resp) == (0x4242, 0, ["127.0.0.9"])
    host, port, got = round_trip(u, relay, "echo.test", e.port, b"by name")
    assert got == b"by name" and port == e.port
    t.close()
    d = loc.wait_sessions(1, timeout=5, pred=lambda d: "udp_up_dgrams" in d)[-1]
    assert d["udp_up_dgrams"] == "2" and d["udp_down_dgrams"] == "2", d["_line"]


@pytest.mark.deadline(60)
def test_ferry_chain_500_datagrams_none_lost(fsrv, flocal, echo):
    e = echo()
    srv = fsrv("-u")
    loc = flocal(srv.addr, "-u")
    t, relay = associate(loc)
    u = udp_client(timeout=5)
    N, WINDOW = 500, 8
    hdr = s5_udp_header("127.0.0.1", e.port)
    seen, sent = set(), 0
    while len(seen) < N:
        while sent < N and sent - len(seen) < WINDOW:
            u.sendto(hdr + struct.pack("!I", sent) + b"y" * (sent % 1200), relay)
            sent += 1
        d, _ = u.recvfrom(65535)
        seen.add(struct.unpack("!I", d[10:14])[0])
    assert seen == set(range(N))
    t.close()


@pytest.mark.deadline(40)
def test_server_drops_replays_forgeries_and_strangers_silently(fsrv, echo):
    """A packet sealed here is answered once: the same packet again (a replay),
    one under another password, garbage and a truncated packet get nothing,
    and the server goes on."""
    e = echo()
    srv = fsrv("-u", "--threads", "1")
    port = int(srv.addr.rsplit(":", 1)[1])
    u = udp_client()
    pkt = seal(addr_of("127.0.0.1", e.port) + b"hello once")
    u.sendto(pkt, ("127.0.0.1", port))
    d, src = u.recvfrom(65535)
    assert src == ("127.0.0.1", port)
    plain = unseal(d)
    assert plain == addr_of("127.0.0.1", e.port) + b"hello once", plain
    u.sendto(pkt, ("127.0.0.1", port))                                    # replay
    u.sendto(seal(addr_of("127.0.0.1", e.port) + b"x", pw="Other-Pa55"), ("127.0.0.1", port))
    u.sendto(os.urandom(200), ("127.0.0.1", port))
    u.sendto(pkt[:40], ("127.0.0.1", port))
    u.sendto(b"", ("127.0.0.1", port))
    expect_silence(u, 0.5)
    assert len(e.received()) == 1, "only the first packet may reach the destination: %r" % e.received()
    u.sendto(seal(addr_of("127.0.0.1", e.port) + b"again"), ("127.0.0.1", port))
    u.settimeout(scaled(3))
    assert unseal(u.recvfrom(65535)[0]).endswith(b"again")
    stop(srv)
    assert "dropped 4 unauthenticated, 1 replayed" in srv.log(), srv.log()[-2000:]


@pytest.mark.deadline(40)
def test_server_destination_policy_and_idle_timeout(fsrv, echo):
    """ss-server's destination policy applies to datagrams (loopback is
    denied unless allowed); an idle client is ended after --udp-timeout."""
    e = echo()
    srv = fsrv("-u", "--threads", "1", "--udp-timeout", "1s", "--allow-dest", "127.0.0.1/32:%d" % e.port)
    port = int(srv.addr.rsplit(":", 1)[1])
    u = udp_client()
    u.sendto(seal(addr_of("127.0.0.1", e.port + 1 if e.port < 65535 else e.port - 1) + b"denied"),
             ("127.0.0.1", port))
    u.sendto(seal(addr_of("127.0.0.1", e.port) + b"allowed"), ("127.0.0.1", port))
    assert unseal(u.recvfrom(65535)[0]).endswith(b"allowed")
    d = ss_line(srv)                                       # logged at the idle timeout
    assert d["end"] == "idle_timeout", d["_line"]
    assert d["udp_drop_denied"] == "1" and d["udp_up_dgrams"] == "1", d["_line"]


@pytest.mark.deadline(40)
def test_libev_json_tcp_and_udp_turns_udp_on(ferry, workdir, echo, dns):
    e = echo()
    port = free_port()
    path = os.path.join(workdir, "ss.json")
    with open(path, "w") as fh:
        json.dump({"server": "127.0.0.1", "server_port": port, "password": PW, "method": METHOD,
                   "mode": "tcp_and_udp"}, fh)
    srv = ferry("ss-server", "-c", path, "--threads", "1", "--allow-dest", "127.0.0.1/32",
                listen=("127.0.0.1", port))
    assert "udp=on" in srv.log(), srv.log()
    u = udp_client()
    u.sendto(seal(addr_of("127.0.0.1", e.port) + b"json"), ("127.0.0.1", port))
    assert unseal(u.recvfrom(65535)[0]).endswith(b"json")
    with open(path, "w") as fh:
        json.dump({"server": "127.0.0.1", "server_port": port, "password": PW, "mode": "udp_only"}, fh)
    r = run_ferry("ss-server", "-c", path)
    assert r.returncode == 2 and "udp_only: ferry relays TCP too" in r.stderr.decode(), r.stderr.decode()


@pytest.mark.deadline(30)
def test_without_u_no_udp(fsrv, flocal):
    """Without -u, ss-server binds no UDP port and ss-local refuses UDP
    ASSOCIATE with 0x07, as before."""
    srv = fsrv()
    assert udp_sockets_on(int(srv.addr.rsplit(":", 1)[1])) == 0
    loc = flocal(srv.addr)
    _, rep, _ = _associate(loc)
    assert rep == 7, "UDP ASSOCIATE without -u: expected 0x07, got %r" % rep


@pytest.mark.deadline(40)
def test_local_finds_server_by_name(fsrv, flocal, echo):
    """-s NAME:PORT: ss-local resolves the server (through --dns-server);
    datagrams sent before the answer are dropped and counted, never queued."""
    e = echo()
    srv = fsrv("-u")
    loc = flocal("web.ferry.test:%s" % srv.addr.rsplit(":", 1)[1], "-u")
    t, relay = associate(loc)
    u = udp_client(timeout=0.3)
    hdr = s5_udp_header("127.0.0.1", e.port)
    got = None
    for i in range(int(scaled(20))):
        u.sendto(hdr + b"named %d" % i, relay)
        try:
            got = u.recvfrom(65535)[0]
            break
        except socket.timeout:
            continue
    assert got is not None and got[10:].startswith(b"named "), "no reply through a server found by name"
    t.close()
    d = loc.wait_sessions(1, timeout=5, pred=lambda d: "udp_up_dgrams" in d)[-1]
    assert int(d["udp_up_dgrams"]) >= 1 and int(d["udp_down_dgrams"]) >= 1, d["_line"]


def test_udp_refused_with_parents_and_tunnel_to():
    """Datagrams cannot go through --via parents (they would leave
    directly), and ss-local's fixed-target tunnel has no UDP: one line each,
    exit 2."""
    r = run_ferry("ss-server", "-l", "127.0.0.1:0", "-u", "-k", PW, "--via", "socks5://127.0.0.1:1")
    assert r.returncode == 2 and "--udp with --via" in r.stderr.decode(), r.stderr.decode()
    r = run_ferry("ss-local", "-l", "127.0.0.1:0", "-s", "127.0.0.1:1", "-u", "-k", PW, "--tunnel-to", "127.0.0.1:2")
    assert r.returncode == 2 and "--udp with --tunnel-to" in r.stderr.decode(), r.stderr.decode()


@pytest.mark.deadline(60)
@pytest.mark.parametrize("run_as", [False, True], ids=["root", "run-as-nobody"])
def test_reload_keeps_the_udp_port(ferry, request, echo, run_as):
    """A reload that changes an ss-server -u listener keeps its UDP socket
    (shared with the new listener, not bound again: after --run-as a new
    bind could not join the old socket's port): datagrams are answered
    before, across and after three reloads, by one socket."""
    if run_as:
        if os.geteuid() != 0:
            pytest.skip("--run-as needs root")
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("no user 'nobody'")
    e = echo()
    port = free_port()
    # nobody reads the file again at each reload: a directory it may enter.
    d = tempfile.mkdtemp(prefix="ferry-ssu-")
    request.addfinalizer(lambda: shutil.rmtree(d, ignore_errors=True))
    os.chmod(d, 0o755)
    path = os.path.join(d, "ss.yaml")

    def conf(maxconn):
        return ("%slisteners:\n  - {name: s, mode: ss-server, listen: \"127.0.0.1:%d\", password: \"%s\", "
                "udp: true, allow-dest: [\"127.0.0.1/32\"], maxconn: %d}\n"
                % ("run-as: nobody\n" if run_as else "", port, PW, maxconn))
    with open(path, "w") as fh:
        fh.write(conf(100))
    os.chmod(path, 0o644)
    f = ferry("run", "-c", path, listen=("127.0.0.1", port))
    u = udp_client()

    def answered(tag):
        u.sendto(seal(addr_of("127.0.0.1", e.port) + tag), ("127.0.0.1", port))
        return unseal(u.recvfrom(65535)[0]).endswith(tag)
    assert answered(b"before")
    for i in range(3):
        with open(path, "w") as fh:
            fh.write(conf(200 + i))
        n = f.log().count(": reloaded ")
        f.signal(signal.SIGHUP)
        assert peers.wait_until(lambda: f.log().count(": reloaded ") > n or "reload failed" in f.log(), scaled(5))
        assert "reload failed" not in f.log(), f.log()[-2000:]
        assert answered(b"after %d" % i)
    assert udp_sockets_on(port) == 1
