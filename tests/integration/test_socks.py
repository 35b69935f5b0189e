"""Integration tests for `ferry socks` (SOCKS 4, 4a, 5) through real clients
(curl, ncat, proxychains4, PySocks) and raw sockets for every reply code.

Name resolution always goes to a fake DNS server on loopback (--dns-server):
web.ferry.test -> 127.0.0.1, web6.ferry.test -> ::1, dual.ferry.test -> both,
*.invalid -> NXDOMAIN, *.stall.ferry.test -> never answered.
"""

import collections
import os
import select
import socket
import struct
import subprocess
import time

import pytest

import peers
from conftest import closed_port, curl, file_sha256, free_port, need, scaled
from peers import read_until_close, recv_exact, recv_line

USER, PASS = "alice", "S3cr3t-P4ss-x9"
DNS_RECORDS = {
    "web.ferry.test": ["127.0.0.1"],
    "blocked.ferry.test": ["127.0.0.1"],
    "web6.ferry.test": ["::1"],
    "dual.ferry.test": ["127.0.0.1", "::1"],
}


@pytest.fixture
def dns(fakedns):
    return fakedns(records=DNS_RECORDS, silent_suffixes=("stall.ferry.test",))


@pytest.fixture
def socks(ferry, dns):
    """socks(*args) -> ferry socks with --dns-server pointing at the fake DNS."""
    def start(*args, **kw):
        a = list(args)
        if "--dns-server" not in a:
            a = ["--dns-server", dns.addr] + a
        return ferry("socks", *a, **kw)
    return start


# --------------------------------------------------------------------------
# raw SOCKS client


def s5_greet(s, methods=(0,)):
    s.sendall(bytes([5, len(methods)] + list(methods)))
    r = recv_exact(s, 2, "SOCKS5 method selection")
    assert r[0] == 5, "method selection version byte %r" % r
    return r[1]


def s5_auth_msg(user, pw):
    u, p = user.encode(), pw.encode()
    return bytes([1, len(u)]) + u + bytes([len(p)]) + p


def s5_auth(s, user, pw):
    s.sendall(s5_auth_msg(user, pw))
    r = recv_exact(s, 2, "RFC 1929 status")
    assert r[0] == 1, "RFC 1929 reply version must be 1, got %r" % r
    return r[1]


def s5_req(cmd, host, port, atyp=None):
    if atyp is None:
        try:
            return bytes([5, cmd, 0, 1]) + socket.inet_pton(socket.AF_INET, host) + struct.pack("!H", port)
        except OSError:
            pass
        try:
            return bytes([5, cmd, 0, 4]) + socket.inet_pton(socket.AF_INET6, host) + struct.pack("!H", port)
        except OSError:
            pass
        h = host.encode()
        return bytes([5, cmd, 0, 3, len(h)]) + h + struct.pack("!H", port)
    return bytes([5, cmd, 0, atyp]) + host + struct.pack("!H", port)


def s5_reply(s):
    hdr = recv_exact(s, 4, "SOCKS5 reply header")
    assert hdr[0] == 5 and hdr[2] == 0, "malformed SOCKS5 reply header %r" % hdr
    atyp = hdr[3]
    if atyp == 1:
        host = socket.inet_ntop(socket.AF_INET, recv_exact(s, 4, "BND.ADDR"))
    elif atyp == 4:
        host = socket.inet_ntop(socket.AF_INET6, recv_exact(s, 16, "BND.ADDR"))
    elif atyp == 3:
        n = recv_exact(s, 1)[0]
        host = recv_exact(s, n).decode()
    else:
        raise AssertionError("reply with unknown atyp %d: %r" % (atyp, hdr))
    port = struct.unpack("!H", recv_exact(s, 2, "BND.PORT"))[0]
    return hdr[1], host, port


def s5_open(f, host, port, user=None, pw=None, timeout=5.0):
    """Connect through ferry; returns (sock, rep, bnd_host, bnd_port)."""
    s = f.connect(timeout=timeout)
    if user is None:
        m = s5_greet(s, (0,))
        assert m == 0, "no-auth greeting answered with method %#x" % m
    else:
        m = s5_greet(s, (2,))
        assert m == 2, "user/pass greeting answered with method %#x" % m
        st = s5_auth(s, user, pw)
        assert st == 0, "auth with good credentials failed: status %d" % st
    s.sendall(s5_req(1, host, port))
    rep, bh, bp = s5_reply(s)
    return s, rep, bh, bp


def s5_connect_ok(f, host, port, **kw):
    s, rep, bh, bp = s5_open(f, host, port, **kw)
    assert rep == 0, "CONNECT %s:%s failed with reply %#04x" % (host, port, rep)
    return s


def s4_req(port, ip="127.0.0.1", user=b"", domain=None):
    if domain is not None:
        return struct.pack("!BBH", 4, 1, port) + bytes([0, 0, 0, 1]) + user + b"\0" + domain.encode() + b"\0"
    return struct.pack("!BBH", 4, 1, port) + socket.inet_aton(ip) + user + b"\0"


def s4_reply(s):
    r = recv_exact(s, 8, "SOCKS4 reply")
    assert r[0] == 0, "SOCKS4 reply version byte must be 0: %r" % r
    return r[1]


def expect_closed(s, timeout, what):
    data, how = read_until_close(s, timeout)
    assert how in ("eof", "reset"), "%s: connection not closed within %.1fs (got %r)" % (what, timeout, data[:40])
    s.close()
    return data


def echo_ok(s, name):
    assert recv_line(s, what="upstream identity") == b"ID:%s\n" % name.encode()
    m = os.urandom(16).hex().encode()
    s.sendall(m)
    assert recv_exact(s, len(m), "echo") == m


def session_for(f, pred, what, n=1):
    ss = f.wait_sessions(n, pred=pred)
    assert len(ss) >= n, "no session log line for %s; log:\n%s" % (what, f.log()[-3000:])
    return ss[-1]


# --------------------------------------------------------------------------
# curl


CURL_MODES = {
    "socks4": ("--socks4", "127.0.0.1", "socks4"),
    "socks4a": ("--socks4a", "web.ferry.test", "socks4a"),
    "socks5": ("--socks5", "127.0.0.1", "socks5"),
    "socks5-hostname": ("--socks5-hostname", "web.ferry.test", "socks5"),
}


@pytest.mark.deadline(60)
@pytest.mark.parametrize("auth", [False, True], ids=["anon", "auth"])
@pytest.mark.parametrize("mode", list(CURL_MODES))
def test_curl_download_checksum(socks, http4, bigfile, workdir, mode, auth):
    opt, host, proto = CURL_MODES[mode]
    args = []
    cargs = []
    if auth:
        args = ["--user", "%s:%s" % (USER, PASS)]
        if mode.startswith("socks4"):
            args.append("--allow-socks4")
        else:
            cargs = ["-U", "%s:%s" % (USER, PASS)]
    f = socks(*args)
    out = os.path.join(workdir, "out.bin")
    url = "http://%s:%d/mid.bin" % (host, http4.port)
    r = curl(opt, f.addr, *cargs, "-o", out, url, timeout=60)
    assert r.returncode == 0, "curl %s failed rc=%d: %s\nferry log:\n%s" % (
        opt, r.returncode, r.stderr.decode(), f.log()[-2000:])
    assert file_sha256(out) == bigfile["mid"], "downloaded file differs (size %d)" % os.path.getsize(out)
    s = session_for(f, None, "the download")
    assert s.get("proto") == proto, "proto= should be %s: %s" % (proto, s["_line"])
    assert s.get("dest") == "%s:%d" % (host, http4.port), "dest= wrong: %s" % s["_line"]
    assert s.get("listener") == "socks", s["_line"]
    if auth and not mode.startswith("socks4"):
        assert s.get("user") == USER, s["_line"]
    if not auth:
        assert s.get("user") == "-", "user= should be - without auth: %s" % s["_line"]
    assert int(s["down"]) > bigfile["mid_len"], s["_line"]
    assert PASS not in f.log(), "the password appears in ferry's log"


@pytest.mark.deadline(30)
@pytest.mark.parametrize("creds", [None, (USER, "wrong-password"), ("mallory", PASS)],
                         ids=["none", "wrong-pass", "wrong-user"])
def test_curl_socks5_rejected_without_good_credentials(socks, http4, workdir, creds):
    f = socks("--user", "%s:%s" % (USER, PASS))
    cargs = ["-U", "%s:%s" % creds] if creds else []
    r = curl("--socks5", f.addr, *cargs, "-o", os.path.join(workdir, "x"), http4.url("mid.bin"), timeout=20)
    assert r.returncode != 0, "curl got through ferry with credentials %s" % (creds,)
    assert PASS not in f.log() and "wrong-password" not in f.log(), "a password appears in ferry's log"


@pytest.mark.deadline(30)
def test_curl_ipv6_target(socks, http6, bigfile, workdir):
    f = socks()
    out = os.path.join(workdir, "out6.bin")
    r = curl("--socks5", f.addr, "-o", out, http6.url("mid.bin"), timeout=30)
    assert r.returncode == 0, "curl to [::1] via socks5 failed: %s" % r.stderr.decode()
    assert file_sha256(out) == bigfile["mid"]
    out2 = os.path.join(workdir, "out6h.bin")
    r = curl("--socks5-hostname", f.addr, "-o", out2, "http://web6.ferry.test:%d/mid.bin" % http6.port, timeout=30)
    assert r.returncode == 0, "curl to web6.ferry.test (AAAA only) via socks5h failed: %s" % r.stderr.decode()
    assert file_sha256(out2) == bigfile["mid"]
    session_for(f, None, "ipv6 downloads", n=2)
    dests = sorted(x.get("dest", "") for x in f.sessions())
    assert len(dests) == 2 and "::1" in dests[0] and dests[0].endswith(":%d" % http6.port) \
        and dests[1] == "web6.ferry.test:%d" % http6.port, "dest= values: %s" % dests


# --------------------------------------------------------------------------
# ncat


@pytest.mark.deadline(30)
@pytest.mark.parametrize("ptype,auth", [("socks4", False), ("socks5", False), ("socks5", True)],
                         ids=["socks4", "socks5", "socks5-auth"])
def test_ncat_through_socks(socks, identify, ptype, auth):
    up = identify("nc")
    need("ncat")
    f = socks(*(["--user", "%s:%s" % (USER, PASS)] if auth else []))
    cmd = ["ncat", "--proxy", f.addr, "--proxy-type", ptype]
    if auth:
        cmd += ["--proxy-auth", "%s:%s" % (USER, PASS)]
    cmd += ["127.0.0.1", str(up.port)]
    r = subprocess.run(cmd, input=b"hello via ncat\n", capture_output=True, timeout=scaled(15))
    assert r.stdout == b"ID:nc\nhello via ncat\n", "ncat %s got %r rc=%d %r" % (ptype, r.stdout, r.returncode, r.stderr)
    s = session_for(f, None, "ncat")
    assert s.get("proto") == ptype and s.get("dest") == up.addr, s["_line"]
    if auth:
        assert s.get("user") == USER, s["_line"]


# --------------------------------------------------------------------------
# proxychains4


@pytest.mark.deadline(40)
@pytest.mark.parametrize("auth", [False, True], ids=["anon", "auth"])
def test_proxychains_curl_with_proxy_dns(socks, http4, bigfile, workdir, auth):
    need("proxychains4")
    need("curl")
    f = socks(*(["--user", "%s:%s" % (USER, PASS)] if auth else []))
    conf = os.path.join(workdir, "proxychains.conf")
    with open(conf, "w") as fh:
        fh.write("strict_chain\nproxy_dns\nremote_dns_subnet 224\ntcp_read_time_out 15000\n"
                 "tcp_connect_time_out 8000\n[ProxyList]\nsocks5 127.0.0.1 %d%s\n"
                 % (f.port, (" %s %s" % (USER, PASS)) if auth else ""))
    out = os.path.join(workdir, "pc.bin")
    url = "http://web.ferry.test:%d/mid.bin" % http4.port
    r = subprocess.run(["proxychains4", "-f", conf, "-q", "curl", "-sS", "--max-time", str(int(scaled(30))),
                        "-o", out, url], capture_output=True, timeout=scaled(40))
    assert r.returncode == 0, "proxychains4 curl failed rc=%d: %s" % (r.returncode, r.stderr.decode())
    assert file_sha256(out) == bigfile["mid"]
    s = session_for(f, None, "proxychains")
    assert s.get("dest") == "web.ferry.test:%d" % http4.port, \
        "with proxy_dns the host name should reach ferry: %s" % s["_line"]
    assert s.get("proto") == "socks5", s["_line"]


# --------------------------------------------------------------------------
# PySocks


@pytest.mark.deadline(30)
@pytest.mark.parametrize("ver,rdns,auth", [
    ("SOCKS5", True, False), ("SOCKS5", False, False), ("SOCKS5", True, True), ("SOCKS5", False, True),
    ("SOCKS4", True, False), ("SOCKS4", False, False)],
    ids=["5-rdns", "5-local", "5-rdns-auth", "5-local-auth", "4a-rdns", "4-local"])
def test_pysocks(socks, identify, ver, rdns, auth):
    need("socks")
    import socks as pysocks
    up = identify("py")
    f = socks(*(["--user", "%s:%s" % (USER, PASS)] if auth else []))
    s = pysocks.socksocket()
    s.settimeout(scaled(5))
    kw = {"username": USER, "password": PASS} if auth else {}
    s.set_proxy(getattr(pysocks, ver), "127.0.0.1", f.port, rdns=rdns, **kw)
    host = "web.ferry.test" if rdns else "localhost"
    try:
        s.connect((host, up.port))
        echo_ok(s, "py")
    finally:
        s.close()
    s = session_for(f, None, "pysocks")
    want_proto = {"SOCKS5": "socks5", "SOCKS4": "socks4a" if rdns else "socks4"}[ver]
    assert s.get("proto") == want_proto, s["_line"]
    want_dest = ("web.ferry.test:%d" if rdns else "127.0.0.1:%d") % up.port
    assert s.get("dest") == want_dest, s["_line"]


# --------------------------------------------------------------------------
# reply codes, raw


@pytest.mark.deadline(20)
def test_success_reply_carries_real_bound_address_ipv4(socks, identify):
    up = identify("A")
    f = socks()
    s, rep, bh, bp = s5_open(f, "127.0.0.1", up.port)
    assert rep == 0
    echo_ok(s, "A")
    assert up.peers, "upstream saw no connection"
    assert (bh, bp) == tuple(up.peers[-1]), \
        "BND.ADDR:PORT %s:%d should be ferry's local address as the upstream sees it: %s" % (bh, bp, up.peers[-1])


@pytest.mark.deadline(20)
def test_success_reply_carries_real_bound_address_ipv6(socks, identify):
    up = identify("B", host="::1")
    f = socks()
    s, rep, bh, bp = s5_open(f, "::1", up.port)
    assert rep == 0
    echo_ok(s, "B")
    assert (bh, bp) == tuple(up.peers[-1][:2]), \
        "IPv6 target: BND should be [%s]:%d, got [%s]:%d" % (up.peers[-1][0], up.peers[-1][1], bh, bp)


@pytest.mark.deadline(20)
def test_domain_request_resolved_by_configured_dns(socks, identify, dns):
    up = identify("A")
    f = socks()
    s = s5_connect_ok(f, "web.ferry.test", up.port)
    echo_ok(s, "A")
    s.close()
    assert "web.ferry.test" in dns.names_queried(), "ferry did not ask --dns-server (queries: %s)" % dns.queries
    sess = session_for(f, None, "domain")
    assert sess.get("dest") == "web.ferry.test:%d" % up.port


@pytest.mark.deadline(20)
def test_reply_01_general_failure_when_out_of_fds(socks, identify, clients):
    up = identify("A")
    limit = 40
    f = socks("--threads", "1", "--handshake-timeout", "60s", nofile=limit)
    accepted = []
    stalled = False
    for _ in range(limit + 5):
        before = f.fd_count()
        c = f.connect()
        clients.append(c)
        if not peers.wait_until(lambda: f.fd_count() > before, scaled(0.5)):
            stalled = True
            break
        accepted.append(c)
    assert f.alive(), "ferry died when it ran out of fds"
    if not stalled or f.fd_count() < limit or not accepted:
        pytest.skip("could not drive ferry to exactly its fd limit (fds %d / %d)" % (f.fd_count(), limit))
    s = accepted[0]
    m = s5_greet(s, (0,))
    assert m == 0
    s.sendall(s5_req(1, "127.0.0.1", up.port))
    rep, _, _ = s5_reply(s)
    assert rep == 1, "CONNECT while ferry cannot create a socket (EMFILE) should get 0x01 general failure, got %#04x" % rep
    expect_closed(s, scaled(3), "after 0x01")
    ss = f.wait_sessions(1, pred=lambda x: x.get("end") == "local_error")
    assert ss, "expected a session with end=local_error:\n" + f.log()[-2000:]


@pytest.mark.deadline(20)
@pytest.mark.parametrize("policy,target", [
    (["--deny-dest", "127.0.0.0/8"], "ip"),
    (["--allow-dest", "127.0.0.2/32"], "ip"),
    (["--deny-dest", "127.0.0.0/8"], "domain-resolving-into-denied-cidr"),
    (["--deny-dest", "blocked.ferry.test"], "denied-domain"),
    (["--allow-dest", "127.0.0.1:1"], "port-not-allowed"),
    (["--deny-dest", "127.0.0.0/8"], "ipv4-mapped-ipv6"),
], ids=["deny-cidr", "allow-cidr", "deny-cidr-via-dns", "deny-host", "allow-hostport", "deny-mapped-v6"])
def test_reply_02_not_allowed(socks, identify, policy, target):
    up = identify("A")
    f = socks(*policy)
    host = {"ip": "127.0.0.1", "domain-resolving-into-denied-cidr": "web.ferry.test",
            "denied-domain": "blocked.ferry.test", "port-not-allowed": "127.0.0.1",
            "ipv4-mapped-ipv6": "::ffff:127.0.0.1"}[target]
    s, rep, _, _ = s5_open(f, host, up.port)
    assert rep == 2, "%s to %s: expected 0x02 not allowed, got %#04x" % (policy, host, rep)
    expect_closed(s, scaled(3), "after 0x02")
    assert up.accepted == 0, "a denied destination was connected to anyway"
    sess = session_for(f, None, "denied")
    assert sess.get("end") == "denied", sess["_line"]


@pytest.mark.deadline(20)
@pytest.mark.parametrize("policy,host", [
    (["--deny-dest", "www.example.com"], "www.example.com"),
    (["--deny-dest", "*.example.org"], "deep.sub.example.org"),
    (["--deny-dest", "*.example.org"], "example.org"),
    (["--allow-dest", "web.ferry.test"], "other.example.net"),
], ids=["exact", "wildcard-sub", "wildcard-apex", "not-on-name-allow-list"])
def test_denied_name_never_reaches_the_resolver(socks, dns, identify, policy, host):
    """Issue #16, 3: a name rule is checked before resolving. The denied name
    is not sent to the DNS server (which does not know it: resolving would
    fail), and the client gets 0x02 with end=denied, not 0x04 and
    resolve_failed."""
    up = identify("A")
    f = socks(*policy)
    s, rep, _, _ = s5_open(f, host, up.port)
    assert rep == 2, "%s to %s: expected 0x02 not allowed, got %#04x" % (policy, host, rep)
    expect_closed(s, scaled(3), "after 0x02")
    sess = session_for(f, None, "denied name")
    assert sess.get("end") == "denied", sess["_line"]
    assert not any(host.split(".")[-2] in n for n in dns.names_queried()), \
        "a denied name was sent to the resolver: %s" % dns.queries


@pytest.mark.deadline(20)
def test_address_rule_before_a_name_rule_still_decides_after_resolving(socks, dns, identify):
    """First match wins over the ordered list: an address rule ahead of a
    name rule can only be judged once the name is resolved, so the name is
    resolved and the address rule decides (docs/CONFIG.md)."""
    up = identify("A")
    f = socks("--allow-dest", "127.0.0.1/32", "--deny-dest", "web.ferry.test")
    s = s5_connect_ok(f, "web.ferry.test", up.port)
    echo_ok(s, "A")
    assert any(n.startswith("web.ferry.test") for n in dns.names_queried()), dns.queries


def host_addrs():
    """This host's non-loopback addresses (IPv6 link-local left out: it
    needs a scope id to be reached), from `ip -o addr`."""
    try:
        out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, timeout=5).stdout.decode()
    except (OSError, subprocess.TimeoutExpired):
        return []
    addrs = []
    for line in out.splitlines():
        parts = line.split()
        for kw in ("inet", "inet6"):
            if kw in parts:
                a = parts[parts.index(kw) + 1].split("/")[0]
                if not (a.startswith("127.") or a == "::1" or a.startswith("fe80")):
                    addrs.append(a)
    return addrs


def public_socks(socks):
    """A SOCKS listener on 0.0.0.0 (so the public defaults apply) that only
    loopback clients may use."""
    port = free_port()
    return socks("-l", "0.0.0.0:%d" % port, "--allow", "127.0.0.1/32", listen=("127.0.0.1", port))


@pytest.mark.deadline(20)
@pytest.mark.parametrize("host", ["100.100.100.200", "fd00:ec2::254"], ids=["alibaba-cgn", "aws-ula"])
def test_public_listener_denies_metadata_addresses(socks, host):
    """Cloud metadata services in shared CGN space (Alibaba) and unique-local
    IPv6 (AWS) are refused by default with 0x02, before any connect: the
    session ends "denied", not with a network error (issue #20, 6)."""
    f = public_socks(socks)
    s, rep, _, _ = s5_open(f, host, 80)
    assert rep == 2, "CONNECT to %s: expected 0x02 not allowed, got %#04x" % (host, rep)
    expect_closed(s, scaled(3), "after 0x02")
    sess = session_for(f, None, "denied")
    assert sess.get("end") == "denied", sess["_line"]


@pytest.mark.deadline(20)
def test_public_listener_denies_host_addresses(socks, identify):
    """The host's own addresses reach its services bound to 0.0.0.0, as
    loopback would: refused by default (issue #20, 6)."""
    addrs = host_addrs()
    if not addrs:
        pytest.skip("no non-loopback address on this host")
    f = public_socks(socks)
    for addr in addrs:
        up = identify("own", host=addr)
        s, rep, _, _ = s5_open(f, addr, up.port)
        assert rep == 2, "CONNECT to this host's %s: expected 0x02 not allowed, got %#04x" % (addr, rep)
        expect_closed(s, scaled(3), "after 0x02")
        assert up.accepted == 0, "this host's own address %s was connected to" % addr
    lines = f.wait_sessions(len(addrs))
    assert len(lines) == len(addrs) and all(x.get("end") == "denied" for x in lines), f.log()


@pytest.mark.deadline(20)
def test_allow_dest_lets_listed_destination_through(socks, identify):
    up = identify("A")
    f = socks("--allow-dest", "127.0.0.1:%d" % up.port, "--deny-dest", "127.0.0.0/8")
    s = s5_connect_ok(f, "127.0.0.1", up.port)
    echo_ok(s, "A")


@pytest.mark.deadline(20)
def test_reply_04_for_nxdomain(socks, dns, identify):
    up = identify("A")
    f = socks()
    s, rep, _, _ = s5_open(f, "no-such-host.invalid", up.port)
    assert rep in (3, 4), "NXDOMAIN should get 0x04 host unreachable (or 0x03), got %#04x" % rep
    expect_closed(s, scaled(3), "after NXDOMAIN reply")
    assert any(n.startswith("no-such-host.invalid") for n in dns.names_queried()), \
        "ferry did not query --dns-server: %s" % dns.queries
    sess = session_for(f, None, "nxdomain")
    assert sess.get("end") == "resolve_failed", sess["_line"]


@pytest.mark.deadline(30)
def test_abandoned_lookups_are_capped(socks, dns, identify):
    """Finding 7: a client that asks for a stalled name and resets keeps a
    DNS query running to its timeout. --resolve-max-inflight 4 allows one
    such abandoned query per thread; the next name is refused at once with
    0x04 (end=resolve_limit, counted in a warning), a literal still works."""
    up = identify("A")
    f = socks("--resolve-max-inflight", "4", "--resolve-timeout", "3s", "--threads", "1")
    s = f.connect()
    assert s5_greet(s, (0,)) == 0
    s.sendall(s5_req(1, "a.stall.ferry.test", up.port))
    assert peers.wait_until(lambda: any("a.stall" in n for n in dns.names_queried()), scaled(3))
    peers.set_linger0(s)        # a FIN is a half-close; a reset ends the session
    s.close()
    session_for(f, lambda x: x.get("end") == "client_reset", "the abandoned lookup")
    t0 = time.monotonic()
    s, rep, _, _ = s5_open(f, "b.stall.ferry.test", up.port)
    assert rep == 4, "a lookup over the cap should get 0x04 at once, got %#04x" % rep
    assert time.monotonic() - t0 < scaled(1), "the refusal waited for DNS"
    expect_closed(s, scaled(3), "after the 0x04 reply")
    sess = session_for(f, lambda x: "b.stall" in x.get("dest", ""), "the refused lookup")
    assert sess.get("end") == "resolve_limit", sess["_line"]
    assert not any("b.stall" in n for n in dns.names_queried()), "the refused name was sent to DNS"
    assert "DNS lookups refused: 1 so far" in f.log(), f.log()[-2000:]
    s = s5_connect_ok(f, "127.0.0.1", up.port)
    echo_ok(s, "A")


@pytest.mark.deadline(30)
def test_stalled_dns_does_not_block_others_and_times_out_with_04(socks, identify):
    up = identify("A")
    f = socks("--resolve-timeout", "1500ms", "--threads", "1")
    stuck = f.connect()
    assert s5_greet(stuck, (0,)) == 0
    stuck.sendall(s5_req(1, "x.stall.ferry.test", up.port))
    t0 = time.monotonic()
    time.sleep(0.1)
    t1 = time.monotonic()
    s = s5_connect_ok(f, "127.0.0.1", up.port)
    echo_ok(s, "A")
    dt_ip = time.monotonic() - t1
    t2 = time.monotonic()
    s2 = s5_connect_ok(f, "web.ferry.test", up.port)
    echo_ok(s2, "A")
    dt_dns = time.monotonic() - t2
    assert dt_ip < scaled(0.5), "CONNECT to an IP literal took %.2fs while another client waited on DNS" % dt_ip
    assert dt_dns < scaled(0.5), "a resolvable name took %.2fs while another name was stalled" % dt_dns
    stuck.settimeout(scaled(6))
    rep, _, _ = s5_reply(stuck)
    dt = time.monotonic() - t0
    assert rep == 4, "stalled resolution should end with 0x04, got %#04x" % rep
    assert 1.2 <= dt <= 1.5 + scaled(2), "--resolve-timeout 1500ms answered after %.2fs" % dt
    sess = session_for(f, lambda x: "stall" in x.get("dest", ""), "stalled")
    assert sess.get("end") == "resolve_failed", sess["_line"]


@pytest.mark.deadline(20)
def test_reply_05_connection_refused(socks):
    f = socks("--connect-timeout", "10s")
    port = closed_port()
    t0 = time.monotonic()
    s, rep, _, _ = s5_open(f, "127.0.0.1", port)
    assert rep == 5, "closed port should get 0x05 connection refused, got %#04x" % rep
    assert time.monotonic() - t0 < scaled(1.5), "refusal should be reported at once"
    expect_closed(s, scaled(3), "after 0x05")
    sess = session_for(f, None, "refused")
    assert sess.get("end") == "connect_refused", sess["_line"]


@pytest.mark.deadline(20)
def test_reply_06_ttl_expired_on_connect_timeout(socks, blackhole):
    bh = blackhole()
    f = socks("--connect-timeout", "1s")
    t0 = time.monotonic()
    s, rep, _, _ = s5_open(f, "127.0.0.1", bh.port, timeout=scaled(8))
    dt = time.monotonic() - t0
    assert rep == 6, "connect timeout should get 0x06 TTL expired, got %#04x" % rep
    assert 0.8 <= dt <= 1 + scaled(2.5), "--connect-timeout 1s answered after %.2fs" % dt
    expect_closed(s, scaled(3), "after 0x06")
    sess = session_for(f, None, "connect timeout")
    assert sess.get("end") == "connect_timeout", sess["_line"]


@pytest.mark.deadline(20)
def test_reply_07_command_not_supported(socks, identify):
    up = identify("A")
    f = socks()
    s = f.connect()
    assert s5_greet(s) == 0
    s.sendall(s5_req(9, "127.0.0.1", up.port))
    rep, _, _ = s5_reply(s)
    assert rep == 7, "command 9 should get 0x07, got %#04x" % rep
    expect_closed(s, scaled(3), "after 0x07")


@pytest.mark.deadline(20)
@pytest.mark.parametrize("cmd,want", [(2, 0), (3, 0)], ids=["BIND", "UDP-ASSOCIATE"])
def test_bind_and_udp_get_a_valid_reply(socks, cmd, want):
    """BIND (test_bind.py) and UDP ASSOCIATE (test_udp.py) answer 0x00."""
    f = socks()
    s = f.connect()
    assert s5_greet(s) == 0
    s.sendall(s5_req(cmd, "0.0.0.0", 0))
    rep, _, _ = s5_reply(s)
    assert rep == want, "cmd %d: expected %#04x, got %#04x" % (cmd, want, rep)
    s.close()
    # still serving
    s2 = f.connect()
    assert s5_greet(s2) == 0


@pytest.mark.deadline(20)
def test_reply_08_address_type_not_supported(socks):
    f = socks()
    s = f.connect()
    assert s5_greet(s) == 0
    s.sendall(bytes([5, 1, 0, 5]) + b"\x7f\x00\x00\x01\x00\x50")
    rep, _, _ = s5_reply(s)
    assert rep == 8, "atyp 5 should get 0x08, got %#04x" % rep
    expect_closed(s, scaled(3), "after 0x08")


@pytest.mark.deadline(20)
def test_socks4_granted_and_rejected(socks, identify):
    up = identify("A")
    f = socks()
    s = f.connect()
    s.sendall(s4_req(up.port, user=b"bob"))
    assert s4_reply(s) == 0x5A
    echo_ok(s, "A")
    s = f.connect()
    s.sendall(s4_req(up.port, domain="web.ferry.test"))
    assert s4_reply(s) == 0x5A, "SOCKS4a domain request should be granted"
    echo_ok(s, "A")
    s = f.connect()
    s.sendall(s4_req(closed_port()))
    assert s4_reply(s) == 0x5B, "SOCKS4 to a closed port should get 0x5B"
    expect_closed(s, scaled(3), "after 0x5B")
    s = f.connect()
    s.sendall(s4_req(up.port, domain="nope.invalid"))
    assert s4_reply(s) == 0x5B, "SOCKS4a NXDOMAIN should get 0x5B"
    expect_closed(s, scaled(3), "after 0x5B")
    ss = f.wait_sessions(4)
    protos = collections.Counter(x.get("proto") for x in ss)
    assert protos == {"socks4": 2, "socks4a": 2}, [x["_line"] for x in ss]


@pytest.mark.deadline(20)
def test_socks4_denied_dest_gets_5b(socks, identify):
    up = identify("A")
    f = socks("--deny-dest", "127.0.0.0/8")
    s = f.connect()
    s.sendall(s4_req(up.port))
    assert s4_reply(s) == 0x5B
    assert up.accepted == 0


# --------------------------------------------------------------------------
# authentication


@pytest.mark.deadline(20)
def test_no_auth_refused_with_ff_when_users_configured(socks):
    f = socks("--user", "%s:%s" % (USER, PASS))
    s = f.connect()
    m = s5_greet(s, (0,))
    assert m == 0xFF, "offering only NO AUTH to a server with users must get 0xFF, got %#04x" % m
    expect_closed(s, scaled(3), "after 0xFF")


@pytest.mark.deadline(20)
def test_server_picks_userpass_when_both_offered(socks):
    f = socks("--user", "%s:%s" % (USER, PASS))
    s = f.connect()
    assert s5_greet(s, (0, 2)) == 2, "with users configured the server must choose method 0x02"


@pytest.mark.deadline(20)
def test_allow_anonymous(socks, identify):
    up = identify("A")
    f = socks("--user", "%s:%s" % (USER, PASS), "--allow-anonymous")
    s = s5_connect_ok(f, "127.0.0.1", up.port)
    echo_ok(s, "A")
    s.close()
    s = s5_connect_ok(f, "127.0.0.1", up.port, user=USER, pw=PASS)
    echo_ok(s, "A")
    s.close()
    users = sorted(x.get("user") for x in f.wait_sessions(2))
    assert users == sorted(["-", USER]), "anonymous then authenticated session: user= values %s" % users


@pytest.mark.deadline(20)
def test_allow_anonymous_still_picks_userpass_when_both_offered(socks, identify):
    """--allow-anonymous must not let a client that offers both methods skip
    the password: 05 02 00 02 gets 0x02, a good password is logged as the
    user, a wrong one is refused and closed."""
    up = identify("A")
    f = socks("--user", "%s:%s" % (USER, PASS), "--allow-anonymous")
    s = f.connect()
    assert s5_greet(s, (0, 2)) == 2, "with users and --allow-anonymous, NO AUTH + USER/PASS must get 0x02"
    assert s5_auth(s, USER, PASS) == 0, "good credentials refused"
    s.sendall(s5_req(1, "127.0.0.1", up.port))
    assert s5_reply(s)[0] == 0
    echo_ok(s, "A")
    s.close()
    line = session_for(f, lambda x: x.get("end") == "client_closed", "the authenticated session")
    assert line.get("user") == USER, "session not logged as %s: %s" % (USER, line["_line"])
    s = f.connect()
    assert s5_greet(s, (0, 2)) == 2
    assert s5_auth(s, USER, "wrong") != 0, "wrong password accepted after a greeting that also offered NO AUTH"
    expect_closed(s, scaled(3), "after auth failure")
    assert up.accepted == 1


# Same-length wrong passwords: only the byte compare can refuse them (a
# length check alone would not).
SAME_LEN_FIRST = chr(ord(PASS[0]) ^ 1) + PASS[1:]
SAME_LEN_LAST = PASS[:-1] + chr(ord(PASS[-1]) ^ 1)


@pytest.mark.deadline(20)
@pytest.mark.parametrize("user,pw", [(USER, "wrong"), ("bob", PASS), (USER, PASS + "x"), (USER, ""),
                                     (USER, SAME_LEN_FIRST), (USER, SAME_LEN_LAST)],
                         ids=["wrong-pass", "unknown-user", "longer-pass", "empty-pass",
                              "same-len-first-byte", "same-len-last-byte"])
def test_bad_credentials_rejected_and_closed(socks, identify, user, pw):
    up = identify("A")
    f = socks("--user", "%s:%s" % (USER, PASS), "--user", "carol:other")
    s = f.connect()
    assert s5_greet(s, (2,)) == 2
    st = s5_auth(s, user, pw)
    assert st != 0, "bad credentials %s:%s accepted" % (user, pw)
    expect_closed(s, scaled(3), "after auth failure")
    assert up.accepted == 0
    assert PASS not in f.log(), "password in log"


@pytest.mark.deadline(20)
def test_second_user_and_users_file(socks, identify, workdir):
    up = identify("A")
    uf = os.path.join(workdir, "users")
    with open(uf, "w") as fh:
        fh.write("dave:fromfile1\nerin:fromfile2\n")
    f = socks("--user", "%s:%s" % (USER, PASS), "--users-file", uf)
    for u, p in ((USER, PASS), ("dave", "fromfile1"), ("erin", "fromfile2")):
        s = s5_connect_ok(f, "127.0.0.1", up.port, user=u, pw=p)
        echo_ok(s, "A")
        s.close()
    s = f.connect()
    assert s5_greet(s, (2,)) == 2
    assert s5_auth(s, "dave", "fromfile2") != 0, "dave must not log in with erin's password"
    s.close()
    f.wait_sessions(4)
    users = sorted(x.get("user") for x in f.sessions() if x.get("end") == "client_closed")
    assert users == sorted([USER, "dave", "erin"]), "user= of the three good sessions: %s" % users
    log = f.log()
    for p in (PASS, "fromfile1", "fromfile2"):
        assert p not in log, "password %r in log" % p


@pytest.mark.deadline(20)
def test_user_passwords_not_in_cmdline(socks, identify):
    # Both spellings, --user X and --user=X; the users still log in.
    up = identify("A")
    f = socks("--user", "%s:%s" % (USER, PASS), "--user=bob:Pw2-Bob")
    with open("/proc/%d/cmdline" % f.pid, "rb") as fh:
        cl = fh.read()
    for secret in (PASS, "Pw2-Bob"):
        assert secret.encode() not in cl, "a --user password is visible in /proc/%d/cmdline: %r" % (f.pid, cl)
    assert b"--user" in cl and b"socks" in cl, "cmdline lost its other arguments: %r" % cl
    for u, p in ((USER, PASS), ("bob", "Pw2-Bob")):
        s = s5_connect_ok(f, "127.0.0.1", up.port, user=u, pw=p)
        echo_ok(s, "A")
        s.close()


@pytest.mark.deadline(20)
def test_socks4_refused_when_auth_on_unless_allowed(socks, identify):
    up = identify("A")
    f = socks("--user", "%s:%s" % (USER, PASS))
    s = f.connect()
    s.sendall(s4_req(up.port, user=USER.encode()))
    assert s4_reply(s) == 0x5B, "SOCKS4 must be refused when users are configured"
    expect_closed(s, scaled(3), "refused socks4")
    assert up.accepted == 0
    g = socks("--user", "%s:%s" % (USER, PASS), "--allow-socks4")
    s = g.connect()
    s.sendall(s4_req(up.port, user=USER.encode()))
    assert s4_reply(s) == 0x5A, "--allow-socks4 should let SOCKS4 through"
    echo_ok(s, "A")


# --------------------------------------------------------------------------
# log lines carry what clients send only sanitised (issue #20, 8)


LOG_LINE_START = ("ferry: ",)


def assert_no_forged_lines(log, forged):
    """Every line is one of ferry's: a timestamped line or a "ferry: " one."""
    lines = log.splitlines()
    bad = [x for x in lines if not (x[:4].isdigit() and x[4:5] == "-") and not x.startswith(LOG_LINE_START)]
    assert not bad and not any(x.startswith(forged) for x in lines), "forged log lines: %r\n%s" % (bad, log)


@pytest.mark.deadline(20)
def test_log_domain_with_newline_forges_no_line(socks):
    """The parser refuses only NUL in a domain: a raw newline must not
    start a line of ferry's log (the resolve-failed debug line)."""
    f = socks("--log-level", "debug")
    name = b"x\nX info fake=1.invalid"
    s = f.connect()
    assert s5_greet(s) == 0
    s.sendall(s5_req(1, bytes([len(name)]) + name, 80, atyp=3))
    rep, _, _ = s5_reply(s)
    assert rep != 0, "a name with a newline was resolved"
    expect_closed(s, scaled(3), "after the failure reply")
    session_for(f, lambda x: "end" in x, "the failed session")
    log = f.log()
    assert "resolve x?X?info?fake?1.invalid failed" in log, log
    assert_no_forged_lines(log, "X info fake=1")


@pytest.mark.deadline(20)
def test_log_socks4_userid_is_not_an_authenticated_user(socks, identify):
    """With users and --allow-socks4, a SOCKS4 USERID is whatever the client
    sent, with no password: logged as socks4_userid=, never as user=."""
    up = identify("A")
    f = socks("--user", "%s:%s" % (USER, PASS), "--allow-socks4")
    s = f.connect()
    s.sendall(s4_req(up.port, user=USER.encode()))
    assert s4_reply(s) == 0x5A
    echo_ok(s, "A")
    s.close()
    s = f.connect()
    s.sendall(s4_req(up.port, user=b"bob\nX info user=alice"))
    assert s4_reply(s) == 0x5A
    echo_ok(s, "A")
    s.close()
    lines = f.wait_sessions(2)
    assert len(lines) == 2, f.log()
    for x in lines:
        assert x.get("proto") == "socks4" and x.get("user") == "-", x["_line"]
        assert "user=%s" % USER not in x["_line"].replace("socks4_userid=", ""), x["_line"]
    assert sorted(x.get("socks4_userid") for x in lines) == sorted([USER, "bob?X?info?user?alice"]), f.log()
    assert_no_forged_lines(f.log(), "X info")


# --------------------------------------------------------------------------
# handshake robustness


@pytest.mark.deadline(20)
@pytest.mark.parametrize("auth", [False, True], ids=["noauth", "auth"])
def test_pipelined_handshake_and_payload_in_one_send(socks, identify, auth):
    up = identify("A")
    f = socks(*(["--user", "%s:%s" % (USER, PASS)] if auth else []))
    s = f.connect()
    payload = b"first-payload-" + os.urandom(2000).hex().encode()
    if auth:
        blob = b"\x05\x01\x02" + s5_auth_msg(USER, PASS) + s5_req(1, "127.0.0.1", up.port) + payload
    else:
        blob = b"\x05\x01\x00" + s5_req(1, "127.0.0.1", up.port) + payload
    s.sendall(blob)
    assert recv_exact(s, 2) == (b"\x05\x02" if auth else b"\x05\x00")
    if auth:
        assert recv_exact(s, 2) == b"\x01\x00"
    rep, _, _ = s5_reply(s)
    assert rep == 0
    got = recv_exact(s, 5 + len(payload), "ID + echo of the pipelined payload")
    assert got == b"ID:A\n" + payload, "pipelined payload lost or corrupted: %r" % got[:60]


@pytest.mark.deadline(20)
def test_pipelined_socks4a(socks, identify):
    up = identify("A")
    f = socks()
    s = f.connect()
    s.sendall(s4_req(up.port, user=b"u", domain="web.ferry.test") + b"hello4a")
    assert s4_reply(s) == 0x5A
    assert recv_exact(s, 5 + 7) == b"ID:A\nhello4a"


def dribble(s, data, delay=0.01):
    for i in range(len(data)):
        s.sendall(data[i:i + 1])
        time.sleep(delay)


@pytest.mark.deadline(30)
def test_one_byte_at_a_time_handshake(socks, identify):
    up = identify("A")
    f = socks("--user", "%s:%s" % (USER, PASS), "--allow-socks4")
    s = f.connect()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    dribble(s, b"\x05\x01\x02")
    assert recv_exact(s, 2) == b"\x05\x02"
    dribble(s, s5_auth_msg(USER, PASS))
    assert recv_exact(s, 2) == b"\x01\x00"
    dribble(s, s5_req(1, "web.ferry.test", up.port))
    rep, _, _ = s5_reply(s)
    assert rep == 0
    echo_ok(s, "A")
    s = f.connect()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    dribble(s, s4_req(up.port, user=b"x", domain="web.ferry.test"))
    assert s4_reply(s) == 0x5A
    echo_ok(s, "A")


@pytest.mark.deadline(30)
@pytest.mark.parametrize("sent", [b"", b"\x05\x01", b"\x05\x01\x00"], ids=["silent", "half-greeting", "no-request"])
def test_handshake_timeout(socks, sent):
    f = socks("--handshake-timeout", "1")
    s = f.connect()
    if sent:
        s.sendall(sent)
    t0 = time.monotonic()
    data, how = read_until_close(s, scaled(6))
    dt = time.monotonic() - t0
    assert how in ("eof", "reset"), "silent client not closed by --handshake-timeout 1 (waited %.1fs)" % dt
    assert 0.8 <= dt <= 1 + scaled(2), "handshake timeout of 1s fired after %.2fs" % dt
    sess = session_for(f, None, "handshake timeout")
    assert sess.get("end") == "handshake_timeout", sess["_line"]


@pytest.mark.deadline(30)
def test_handshake_timeout_not_reset_by_trickling_bytes(socks):
    f = socks("--handshake-timeout", "1")
    s = f.connect()
    s.sendall(b"\x05\x01\x00")
    assert recv_exact(s, 2) == b"\x05\x00"
    req = s5_req(1, "a" * 200 + ".invalid", 80)
    t0 = time.monotonic()
    closed = False
    for i in range(len(req)):
        try:
            s.sendall(req[i:i + 1])
        except OSError:
            closed = True
            break
        r, _, _ = select.select([s], [], [], 0.25)
        if r:
            try:
                if not s.recv(100):
                    closed = True
                    break
            except OSError:
                closed = True
                break
        if time.monotonic() - t0 > 1 + scaled(3):
            break
    dt = time.monotonic() - t0
    assert closed, "a client trickling one byte per 250ms kept its handshake open for %.1fs (timeout 1s)" % dt
    assert dt <= 1 + scaled(2), "trickling client closed only after %.2fs" % dt


@pytest.mark.deadline(20)
def test_handshake_timeout_does_not_apply_after_connect(socks, identify):
    up = identify("A")
    f = socks("--handshake-timeout", "1")
    s = s5_connect_ok(f, "127.0.0.1", up.port)
    assert recv_line(s) == b"ID:A\n"
    time.sleep(1.6)
    s.sendall(b"still here")
    assert recv_exact(s, 10) == b"still here", "relayed session was cut by the handshake timeout"


GARBAGE = {
    "random": bytes([0x17]) + os.urandom(300),
    "http": b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
    "socks4a-unterminated-domain": struct.pack("!BBH", 4, 1, 80) + b"\0\0\0\1" + b"u\0" + b"d" * 65536,
    "socks4-unterminated-userid": struct.pack("!BBH", 4, 1, 80) + b"\x7f\0\0\1" + b"u" * 65536,
    "socks5-zero-methods": b"\x05\x00",
    "socks5-bad-request-version": b"\x05\x01\x00" + b"\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50",
    "socks5-empty-domain": b"\x05\x01\x00" + b"\x05\x01\x00\x03\x00\x00\x50",
    "socks5-auth-bad-subversion": b"\x05\x01\x02" + b"\x05\x05alice\x01x",
}


@pytest.mark.deadline(30)
@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_closed_and_ferry_keeps_serving(socks, identify, name):
    up = identify("A")
    args = ["--handshake-timeout", "30s"]
    if "auth" in name:
        args += ["--user", "%s:%s" % (USER, PASS)]
    if name == "http":
        args += ["--no-http"]   # else an HTTP proxy request (test_http_proxy.py)
    f = socks(*args)
    bystander = s5_connect_ok(f, "127.0.0.1", up.port, **({"user": USER, "pw": PASS} if "auth" in name else {}))
    assert recv_line(bystander) == b"ID:A\n"
    s = f.connect()
    try:
        s.sendall(GARBAGE[name])
    except OSError:
        pass   # closed while we were still sending: fine
    data, how = read_until_close(s, scaled(3))
    s.close()
    assert how in ("eof", "reset"), "%s: ferry kept the connection open (%d bytes back)" % (name, len(data))
    assert len(data) <= 12, "%s: unexpected answer %r" % (name, data[:40])
    assert up.accepted == 1, "garbage caused an upstream connection"
    bystander.sendall(b"ok?")
    assert recv_exact(bystander, 3) == b"ok?", "an established session broke after garbage on another connection"
    s2 = s5_connect_ok(f, "127.0.0.1", up.port, **({"user": USER, "pw": PASS} if "auth" in name else {}))
    echo_ok(s2, "A")
    want = "unknown_protocol" if name in ("random", "http") else "handshake_error"
    ends = [x.get("end") for x in f.wait_sessions(1, pred=lambda x: x.get("end") == want)]
    assert ends, "garbage should be logged with end=%s:\n%s" % (want, f.log()[-2000:])


def _refuse_wrong_password(f, up):
    s = f.connect()
    assert s5_greet(s, (2,)) == 2
    assert s5_auth(s, USER, "not-the-password") != 0
    return s


def _refuse_odd_user(f, up):
    s = f.connect()
    assert s5_greet(s, (2,)) == 2
    assert s5_auth(s, "ev il=x\nsess=9", "nope") != 0
    return s


def _refuse_no_method(f, up):
    s = f.connect()
    assert s5_greet(s, (0,)) == 0xFF
    return s


def _refuse_socks4(f, up):
    s = f.connect()
    s.sendall(s4_req(up.port, user=b"bob"))
    assert s4_reply(s) == 0x5B
    return s


def _refuse_command(f, up):
    s = f.connect()
    assert s5_greet(s, (2,)) == 2 and s5_auth(s, USER, PASS) == 0
    s.sendall(s5_req(9, "127.0.0.1", up.port))
    assert s5_reply(s)[0] == 7
    return s


def _refuse_socks4_command(f, up):
    s = f.connect()
    s.sendall(struct.pack("!BBH", 4, 9, up.port) + b"\x7f\0\0\1" + b"\0")
    assert s4_reply(s) == 0x5B
    return s


def _refuse_atyp(f, up):
    s = f.connect()
    assert s5_greet(s, (2,)) == 2 and s5_auth(s, USER, PASS) == 0
    s.sendall(b"\x05\x01\x00\x09" + b"\x7f\0\0\1" + struct.pack("!H", up.port))
    assert s5_reply(s)[0] == 8
    return s


def _refuse_http(f, up):
    """HTTP on the SOCKS port, without the credentials users call for: 407."""
    s = f.connect()
    s.sendall(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
    data = recv_line(s)
    assert data.startswith(b"HTTP/1.1 407 "), data
    return s


REFUSALS = {
    "wrong-password": (_refuse_wrong_password, "auth_failed", {"user": USER, "proto": "socks5"}, True),
    "odd-user-name": (_refuse_odd_user, "auth_failed", {"user": "ev?il?x?sess?9"}, True),
    "no-method": (_refuse_no_method, "no_method", {"user": "-"}, True),
    "socks4-with-users": (_refuse_socks4, "socks4_refused", {"proto": "socks4", "user": "-"}, True),
    "command": (_refuse_command, "bad_command", {"user": USER, "dest": None}, True),
    "socks4-command": (_refuse_socks4_command, "bad_command", {"proto": "socks4"}, False),
    "bad-atyp": (_refuse_atyp, "bad_atyp", {"user": USER}, True),
    "http": (_refuse_http, "no_method", {"proto": "http", "user": "-", "dest": "example.com:80"}, True),
}


@pytest.mark.deadline(20)
@pytest.mark.parametrize("name", list(REFUSALS))
def test_each_refusal_has_its_own_end_reason(socks, identify, name):
    """Issue #16, 10: every SOCKS refusal is told apart in the log (a wrong
    password names the user tried, sanitised), and every session line of
    the listener carries the same keys."""
    up = identify("A")
    how, end, fields, users = REFUSALS[name]
    f = socks(*(["--user", "%s:%s" % (USER, PASS)] if users else []))
    s = how(f, up)
    expect_closed(s, scaled(3), name)
    assert up.accepted == 0
    line = session_for(f, None, name)
    assert line.get("end") == end, line["_line"]
    for k, v in fields.items():
        if v is None:
            v = "127.0.0.1:%d" % up.port
        assert line.get(k) == v, "%s=%r expected, got: %s" % (k, v, line["_line"])
    ok = s5_connect_ok(f, "127.0.0.1", up.port, **({"user": USER, "pw": PASS} if users else {}))
    echo_ok(ok, "A")
    ok.close()
    lines = f.wait_sessions(2)
    keys = [sorted(k for k in x if k != "_line") for x in lines]
    assert keys[0] == keys[1], "refusal and success lines differ in keys:\n%s" % "\n".join(x["_line"] for x in lines)


@pytest.mark.deadline(60)
def test_many_concurrent_socks_sessions_no_cross_talk(socks, identify, clients):
    a, b = identify("A"), identify("B", host="::1")
    f = socks("--threads", "2")
    n = 300
    socks_ = []
    for i in range(n):
        s = f.connect(timeout=scaled(10))
        clients.append(s)
        target = ("web.ferry.test", a.port) if i % 3 == 0 else (("127.0.0.1", a.port) if i % 3 == 1 else ("::1", b.port))
        s.sendall(b"\x05\x01\x00" + s5_req(1, *target))
        socks_.append((s, "A" if i % 3 != 2 else "B"))
    for i, (s, name) in enumerate(socks_):
        assert recv_exact(s, 2) == b"\x05\x00"
        rep, _, _ = s5_reply(s)
        assert rep == 0, "session %d got %#04x" % (i, rep)
    for i, (s, name) in enumerate(socks_):
        s.sendall(b"<%d>" % i)
    for i, (s, name) in enumerate(socks_):
        want = b"ID:%s\n<%d>" % (name.encode(), i)
        got = recv_exact(s, len(want), "session %d" % i)
        assert got == want, "session %d: cross talk, got %r want %r" % (i, got, want)


# --------------------------------------------------------------------------
# addresses and defaults


@pytest.mark.deadline(20)
def test_prefer_ipv6(socks, servers):
    for _ in range(10):
        v4 = servers(peers.h_identify, name="v4")
        try:
            servers(peers.h_identify, host="::1", port=v4.port, name="v6")
            break
        except OSError:
            continue
    else:
        pytest.skip("could not get the same port on 127.0.0.1 and ::1")
    f = socks()
    s = s5_connect_ok(f, "dual.ferry.test", v4.port)
    assert recv_line(s) == b"ID:v4\n", "without --prefer-ipv6 a dual-stack name should use IPv4"
    g = socks("--prefer-ipv6")
    s = s5_connect_ok(g, "dual.ferry.test", v4.port)
    assert recv_line(s) == b"ID:v6\n", "--prefer-ipv6 should connect to the AAAA address"


@pytest.mark.deadline(20)
def test_falls_back_to_the_next_resolved_address(socks, identify, servers):
    """dual.ferry.test has ::1 and 127.0.0.1; with --prefer-ipv6 and nothing
    on [::1]:port, ferry must try 127.0.0.1 next."""
    v4 = identify("v4")
    probe = socket.socket(socket.AF_INET6)
    try:
        probe.bind(("::1", v4.port))
    except OSError:
        pytest.skip("[::1]:%d is taken" % v4.port)
    finally:
        probe.close()
    f = socks("--prefer-ipv6")
    s, rep, _, _ = s5_open(f, "dual.ferry.test", v4.port)
    assert rep == 0, "::1 refused; ferry should fall back to 127.0.0.1, got reply %#04x" % rep
    assert recv_line(s) == b"ID:v4\n"


@pytest.mark.deadline(20)
def test_ipv6_dns_server(ferry, fakedns, identify):
    up = identify("A")
    d6 = fakedns(records=DNS_RECORDS, host="::1")
    f = ferry("socks", "--dns-server", d6.addr)
    s = s5_connect_ok(f, "web.ferry.test", up.port)
    echo_ok(s, "A")
    assert "web.ferry.test" in d6.names_queried(), "the [::1] DNS server was not asked"


@pytest.mark.deadline(20)
def test_socks_listens_on_ipv6(socks, identify):
    up = identify("A")
    f = socks(host="::1")
    s = s5_connect_ok(f, "127.0.0.1", up.port)
    echo_ok(s, "A")


@pytest.mark.deadline(20)
def test_no_argument_ferry_is_socks_on_127_0_0_1_1080(ferry, identify):
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", 1080))
    except OSError:
        pytest.skip("127.0.0.1:1080 is busy")
    finally:
        probe.close()
    up = identify("A")
    f = ferry(listen=("127.0.0.1", 1080))
    s = s5_connect_ok(f, "127.0.0.1", up.port)
    echo_ok(s, "A")
    s.close()
    assert "127.0.0.1:1080" in f.log(), "startup line should name the listen address: %r" % f.log()[:300]


@pytest.mark.deadline(20)
def test_socks_log_line(socks, identify):
    up = identify("A")
    f = socks("--user", "%s:%s" % (USER, PASS))
    s = s5_connect_ok(f, "web.ferry.test", up.port, user=USER, pw=PASS)
    cport = s.getsockname()[1]
    assert recv_line(s) == b"ID:A\n"
    s.sendall(b"x" * 100)
    recv_exact(s, 100)
    s.close()
    sess = session_for(f, None, "socks session")
    want = {"listener": "socks", "proto": "socks5", "user": USER, "dest": "web.ferry.test:%d" % up.port,
            "client": "127.0.0.1:%d" % cport, "upstream": up.addr, "up": "100", "down": "105",
            "end": "client_closed"}
    got = {k: sess.get(k) for k in want}
    assert got == want, "socks log line: %s" % sess["_line"]
    assert PASS not in f.log(), "password in log"


# --------------------------------------------------------------------------
# odd requests and clients that vanish mid-way


@pytest.mark.deadline(20)
@pytest.mark.parametrize("name", [b"a" * 255, b"a" * 64 + b".invalid", b"bad\x00name.ferry.test", b"..", b"x" * 63 + b"." + b"y" * 63 + b"." + b"z" * 63 + b"." + b"w" * 62],
                         ids=["255-chars-one-label", "64-char-label", "embedded-nul", "dots", "long-valid-shape"])
def test_odd_domain_names_get_an_error_reply(socks, identify, name):
    up = identify("A")
    f = socks()
    s = f.connect()
    assert s5_greet(s) == 0
    s.sendall(bytes([5, 1, 0, 3, len(name)]) + name + struct.pack("!H", up.port))
    s.settimeout(scaled(6))
    rep, _, _ = s5_reply(s)
    assert rep in (1, 2, 3, 4), "domain %r: expected an error reply, got %#04x" % (name[:20], rep)
    expect_closed(s, scaled(3), "after error reply")
    assert up.accepted == 0
    ok = s5_connect_ok(f, "127.0.0.1", up.port)
    echo_ok(ok, "A")


@pytest.mark.deadline(20)
def test_socks_half_close(socks, servers):
    answer = os.urandom(1024 * 1024)

    def handler(srv, c, peer):
        got = bytearray()
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
        srv.record(bytes(got))
        c.sendall(answer)

    srv = servers(handler)
    f = socks()
    s = s5_connect_ok(f, "127.0.0.1", srv.port)
    s.sendall(b"request-body")
    s.shutdown(socket.SHUT_WR)
    ev = srv.wait_events(1, scaled(5))
    assert ev == [b"request-body"], "upstream did not get the body then EOF: %r" % ev
    got, how = read_until_close(s, scaled(10))
    assert (how, len(got)) == ("eof", len(answer)) and got == answer, \
        "answer after client half-close: %s, %d of %d bytes" % (how, len(got), len(answer))


@pytest.mark.deadline(40)
def test_clients_vanishing_mid_handshake_resolve_and_connect(socks, blackhole, identify):
    """Clients that disappear (FIN or RST) while the session is in the
    handshake, waiting on DNS, or waiting on connect: ferry must clean each
    up once, keep serving, and release every fd."""
    up = identify("A")
    bh = blackhole()
    f = socks("--resolve-timeout", "1s", "--connect-timeout", "1s")
    base = f.fd_count()
    n = 0
    for i in range(60):
        c = f.connect()
        stage = i % 3
        if stage == 0:
            c.sendall(b"\x05\x01")                       # mid greeting
        elif stage == 1:
            c.sendall(b"\x05\x01\x00" + s5_req(1, "h%d.stall.ferry.test" % i, 80))   # resolving
            time.sleep(0.01)
        else:
            c.sendall(b"\x05\x01\x00" + s5_req(1, "127.0.0.1", bh.port))  # connecting
            time.sleep(0.01)
        if i % 2:
            peers.set_linger0(c)
        c.close()
        n += 1
    ss = f.wait_sessions(n, timeout=8)
    assert len(ss) == n, "expected %d session lines, got %d:\n%s" % (n, len(ss), f.log()[-2000:])
    assert f.alive(), "ferry died"
    s = s5_connect_ok(f, "web.ferry.test", up.port)
    echo_ok(s, "A")
    s.close()
    assert peers.wait_until(lambda: f.fd_count() <= base + 4, scaled(3)), \
        "fds not released: %d now, %d at start" % (f.fd_count(), base)


@pytest.mark.deadline(30)
def test_sigterm_with_sessions_in_every_state(socks, blackhole, identify, clients):
    up = identify("A")
    bh = blackhole()
    f = socks("--resolve-timeout", "30s", "--connect-timeout", "30s", "--handshake-timeout", "30s",
              "--drain-timeout", "1s")
    c = f.connect()
    clients.append(c)
    c.sendall(b"\x05\x01")                                   # handshaking
    c = f.connect()
    clients.append(c)
    c.sendall(b"\x05\x01\x00" + s5_req(1, "q.stall.ferry.test", 80))  # resolving
    c = f.connect()
    clients.append(c)
    c.sendall(b"\x05\x01\x00" + s5_req(1, "127.0.0.1", bh.port))  # connecting
    r = s5_connect_ok(f, "127.0.0.1", up.port)                  # relaying
    clients.append(r)
    time.sleep(0.3)
    f.signal(15)
    rc = f.wait(1 + scaled(4))
    f.expect_exit = True
    assert rc == 0, "ferry with sessions handshaking/resolving/connecting/relaying: exit %s after SIGTERM" % rc
    for c in clients:
        _, how = read_until_close(c, scaled(2))
        assert how in ("eof", "reset"), "a client was left open after ferry exited"
