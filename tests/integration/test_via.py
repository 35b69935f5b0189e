"""Integration tests for --via (parent proxies, issue #18): ferry reaches the
destination through a parent proxy, speaking the parent's handshake as a
client.

Parents: a second ferry (SOCKS5 with a password, its HTTP front on the same
port, SOCKS4a), shadowsocks-libev's ss-server, and microsocks as a foreign
SOCKS5 server. The child ferry gets a fake DNS server of its own with no
records, and the parents one that knows web.ferry.test: a download by that
name only works if the child passed it on unresolved, and the child's DNS
server must never be asked.
"""

import os
import shutil
import socket
import struct
import subprocess
import time

import pytest

import peers
from conftest import closed_port, curl, file_sha256, free_port, listening, run_ferry, scaled
from peers import recv_exact, recv_line

PW = "parent-secret-7"
SS_PW = "ss-parent-pw-9"
NAME = "web.ferry.test"


@pytest.fixture
def pdns(fakedns):
    """The parents' DNS: knows NAME."""
    return fakedns(records={NAME: ["127.0.0.1"]})


@pytest.fixture
def cdns(fakedns):
    """The child's DNS: knows nothing, and must never be asked."""
    return fakedns(records={})


@pytest.fixture
def parent(ferry, pdns):
    """parent(*args) -> a ferry socks parent (SOCKS 4/4a/5 and HTTP on one port)."""
    def start(*args):
        return ferry("socks", "--dns-server", pdns.addr, "--threads", "1", *args)
    return start


@pytest.fixture
def child(ferry, cdns):
    """child(*via, *args) -> a ferry with --via for each URL in via."""
    def start(via, *args, mode="socks"):
        a = []
        for v in via:
            a += ["--via", v]
        return ferry(mode, "--dns-server", cdns.addr, "--threads", "1", *a, *args)
    return start


def s5_open(addr, host, port, timeout=5.0):
    """SOCKS5 CONNECT by name (ATYP domain): (sock, reply code)."""
    h, p = addr.rsplit(":", 1)
    s = peers.connect(h, int(p), timeout=scaled(timeout))
    s.sendall(b"\x05\x01\x00")
    assert recv_exact(s, 2, "method selection") == b"\x05\x00"
    hb = host.encode()
    try:
        req = b"\x05\x01\x00\x01" + socket.inet_aton(host)
    except OSError:
        req = b"\x05\x01\x00\x03" + bytes([len(hb)]) + hb
    s.sendall(req + struct.pack("!H", port))
    hdr = recv_exact(s, 4, "SOCKS5 reply")
    assert hdr[0] == 5, hdr
    n = {1: 4, 4: 16}.get(hdr[3])
    if n is None:
        n = recv_exact(s, 1)[0]
    recv_exact(s, n + 2, "BND")
    return s, hdr[1]


def echo_ok(s, name):
    """The identify peer speaks first, then echoes."""
    assert recv_line(s, what="upstream identity") == b"ID:%s\n" % name.encode()
    m = os.urandom(3000)
    s.sendall(m)
    assert recv_exact(s, len(m), "echo") == m


def download_ok(proxy_args, url, bigfile, workdir, key="mid"):
    out = os.path.join(workdir, "dl-%d.bin" % time.monotonic_ns())
    r = curl(*proxy_args, "-o", out, url, timeout=60)
    assert r.returncode == 0, "curl failed: %s" % r.stderr.decode(errors="replace")
    assert file_sha256(out) == bigfile[key], "downloaded file differs"
    os.unlink(out)


def http_status(proxy, url, extra=()):
    r = curl("-o", "/dev/null", "-w", "%{http_code}", "-x", proxy, *extra, url, timeout=20)
    return r.stdout.decode().strip()


def session(f, pred, what):
    ss = f.wait_sessions(1, pred=pred)
    assert ss, "no session line for %s; log:\n%s" % (what, f.log()[-3000:])
    return ss[-1]


def log_has(f, text):
    return peers.wait_until(lambda: text in f.log(), scaled(5))


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as fh:
        return fh.read().replace(b"\0", b" ").decode(errors="replace")


# --------------------------------------------------------------------------
# through each kind of parent


@pytest.mark.deadline(90)
def test_socks5_parent_with_password(parent, child, http4, bigfile, workdir, cdns):
    p = parent("--user", "bob:" + PW)
    c = child(["socks5://bob:%s@%s" % (PW, p.addr)])
    url = http4.url("mid.bin", host=NAME)
    download_ok(["--socks5-hostname", c.addr], url, bigfile, workdir)
    # the name went to the parent unresolved, under the parent's user
    line = session(p, lambda s: s.get("user") == "bob", "the parent's session")
    assert line["dest"] == "%s:%d" % (NAME, http4.port)
    assert cdns.names_queried() == [], "the child resolved the name itself"
    assert session(c, lambda s: "dest" in s, "the child's session")["upstream"] == p.addr
    # the password never shows: not in ps, not in the child's log
    assert PW not in cmdline(c.pid)
    assert "bob:x" in cmdline(c.pid)
    assert PW not in c.log()
    assert "via=socks5://%s" % p.addr in c.log()


@pytest.mark.deadline(90)
def test_http_parent_on_the_socks_port(parent, child, http4, bigfile, workdir, cdns):
    p = parent("--user", "bob:" + PW)
    c = child(["http://bob:%s@%s" % (PW, p.addr)])
    url = http4.url("mid.bin", host=NAME)
    download_ok(["--socks5-hostname", c.addr], url, bigfile, workdir)
    # an HTTP client of the child: absolute form, and CONNECT
    download_ok(["-x", "http://" + c.addr], url, bigfile, workdir)
    download_ok(["-p", "-x", "http://" + c.addr], url, bigfile, workdir)
    lines = p.wait_sessions(3, pred=lambda s: s.get("proto") == "http")
    assert len(lines) == 3 and all(s["dest"] == "%s:%d" % (NAME, http4.port) for s in lines), p.log()
    assert cdns.names_queried() == []
    assert PW not in c.log() and PW not in cmdline(c.pid)


@pytest.mark.deadline(60)
def test_socks4a_parent(parent, child, identify, cdns):
    p = parent()
    srv = identify("S4")
    c = child(["socks4a://someone@" + p.addr])
    s, rep = s5_open(c.addr, NAME, srv.port)
    assert rep == 0
    echo_ok(s, "S4")
    s.close()
    line = session(p, lambda s: s.get("proto") == "socks4a", "the parent's SOCKS4a session")
    assert line["dest"] == "%s:%d" % (NAME, srv.port)
    assert cdns.names_queried() == []


def libev_ss_server(workdir, method="chacha20-ietf-poly1305"):
    path = shutil.which("ss-server")
    if not path:
        pytest.skip("ss-server is not installed (apt-get install shadowsocks-libev)")
    port = free_port()
    log = open(os.path.join(workdir, "libev-ss-server.log"), "wb")
    proc = subprocess.Popen([path, "-s", "127.0.0.1", "-p", str(port), "-k", SS_PW, "-m", method, "-v"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    if not peers.wait_until(lambda: proc.poll() is not None or listening(proc.pid, port), scaled(5)) \
            or proc.poll() is not None:
        proc.kill()
        pytest.fail("ss-server did not listen")
    return proc, port, log


@pytest.mark.deadline(90)
def test_ss_parent_libev(child, http4, bigfile, workdir, cdns):
    proc, port, log = libev_ss_server(workdir)
    try:
        c = child(["ss://chacha20-ietf-poly1305:%s@127.0.0.1:%d" % (SS_PW, port)])
        # ss-server resolves with the system resolver: a name it knows
        download_ok(["--socks5-hostname", c.addr], http4.url("mid.bin", host="localhost"), bigfile, workdir)
        download_ok(["-x", "http://" + c.addr], http4.url("mid.bin", host="localhost"), bigfile, workdir)
        assert cdns.names_queried() == []
        assert SS_PW not in cmdline(c.pid) and SS_PW not in c.log()
        log.flush()
        with open(log.name, "rb") as fh:
            text = fh.read().decode(errors="replace")
        assert "connect to localhost:%d" % http4.port in text, text[-2000:]
    finally:
        proc.terminate()
        proc.wait(5)
        log.close()


@pytest.mark.deadline(60)
def test_microsocks_parent(child, identify, workdir, cdns):
    path = shutil.which("microsocks")
    if not path:
        pytest.skip("microsocks is not installed (apt-get install microsocks)")
    port = free_port()
    out = open(os.path.join(workdir, "microsocks.log"), "wb")
    proc = subprocess.Popen([path, "-i", "127.0.0.1", "-p", str(port), "-u", "bob", "-P", PW],
                            stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        assert peers.wait_until(lambda: listening(proc.pid, port), scaled(5)), "microsocks did not listen"
        srv = identify("MS")
        c = child(["socks5://bob:%s@127.0.0.1:%d" % (PW, port)])
        s, rep = s5_open(c.addr, "localhost", srv.port)
        assert rep == 0
        echo_ok(s, "MS")
        s.close()
        # microsocks logs the name as asked
        def logged():
            with open(out.name, "rb") as fh:
                return b"connected to localhost:%d" % srv.port in fh.read()
        assert peers.wait_until(logged, scaled(5)), "microsocks did not log the name"
        # a wrong password: microsocks refuses the sub-negotiation
        bad = child(["socks5://bob:wrong@127.0.0.1:%d" % port])
        s, rep = s5_open(bad.addr, "localhost", srv.port)
        assert rep == 0x01
        s.close()
        assert log_has(bad, "refused the user name or password"), bad.log()
    finally:
        proc.terminate()
        proc.wait(5)
        out.close()


# --------------------------------------------------------------------------
# chains


@pytest.mark.deadline(90)
def test_chain_of_two_parents(parent, child, http4, bigfile, workdir, cdns):
    last = parent("--user", "eve:" + PW)
    first = parent()
    c = child(["socks5://%s" % first.addr, "http://eve:%s@%s" % (PW, last.addr)])
    url = http4.url("mid.bin", host=NAME)
    download_ok(["--socks5-hostname", c.addr], url, bigfile, workdir)
    download_ok(["-x", "http://" + c.addr], url, bigfile, workdir)
    # the first parent was asked for the second, the second for the name
    assert session(first, lambda s: "dest" in s, "the first parent")["dest"] == last.addr
    line = session(last, lambda s: s.get("user") == "eve", "the last parent")
    assert line["dest"] == "%s:%d" % (NAME, http4.port)
    assert cdns.names_queried() == []


@pytest.mark.deadline(90)
def test_chain_ending_in_ss(parent, child, http4, bigfile, workdir):
    proc, port, log = libev_ss_server(workdir)
    try:
        first = parent()
        c = child(["socks5://" + first.addr, "ss://chacha20-ietf-poly1305:%s@127.0.0.1:%d" % (SS_PW, port)])
        download_ok(["--socks5-hostname", c.addr], http4.url("mid.bin", host="localhost"), bigfile, workdir)
        assert session(first, lambda s: "dest" in s, "the first parent")["dest"] == "127.0.0.1:%d" % port
    finally:
        proc.terminate()
        proc.wait(5)
        log.close()


@pytest.mark.deadline(60)
def test_relay_and_ss_server_listeners_with_a_parent(parent, child, ferry, identify, pdns):
    p = parent()
    srv = identify("R")
    r = child(["socks5://" + p.addr], "-u", "%s:%d" % (NAME, srv.port), mode="relay")
    s = r.connect()
    echo_ok(s, "R")
    s.close()
    assert session(p, lambda s: "dest" in s, "the parent")["dest"] == "%s:%d" % (NAME, srv.port)
    # ss-server --via: ferry ss-local -> ferry ss-server -> parent -> destination
    ssrv = child(["socks5://" + p.addr], "-k", SS_PW, mode="ss-server")
    loc = ferry("ss-local", "-s", ssrv.addr, "-k", SS_PW, "--threads", "1")
    s, rep = s5_open(loc.addr, NAME, srv.port)
    assert rep == 0
    echo_ok(s, "R")
    s.close()


# --------------------------------------------------------------------------
# failures reach the client in its protocol


@pytest.mark.deadline(60)
@pytest.mark.parametrize("scheme", ["socks5", "http", "socks4a"])
def test_dead_parent(child, scheme):
    c = child(["%s://127.0.0.1:%d" % (scheme, closed_port())])
    s, rep = s5_open(c.addr, NAME, 80)
    assert rep == 0x05, "a refused connection to the parent is 'connection refused'"
    s.close()
    assert http_status("http://" + c.addr, "http://%s:80/" % NAME) == "502"
    line = session(c, lambda s: s.get("end") == "connect_refused", "the refused session")
    assert line["dest"] == "%s:80" % NAME


@pytest.mark.deadline(60)
@pytest.mark.parametrize("scheme", ["socks5", "http"])
def test_parent_refuses_wrong_password(parent, child, scheme, identify):
    p = parent("--user", "bob:" + PW)
    srv = identify("X")
    c = child(["%s://bob:wrong@%s" % (scheme, p.addr)])
    s, rep = s5_open(c.addr, NAME, srv.port)
    assert rep == 0x01
    s.close()
    assert http_status("http://" + c.addr, "http://%s:%d/" % (NAME, srv.port)) == "502"
    assert log_has(c, "failed: ") and "wrong" not in c.log()
    assert not [x for x in p.sessions() if x.get("end") != "auth_failed"], p.log()


@pytest.mark.deadline(60)
@pytest.mark.parametrize("scheme", ["socks5", "http", "socks4a"])
def test_parent_cannot_reach_the_destination(parent, child, scheme):
    p = parent()
    c = child(["%s://%s" % (scheme, p.addr)])
    dead = closed_port()
    s, rep = s5_open(c.addr, NAME, dead)
    # SOCKS5 passes the parent's 0x05 through, HTTP's 502 maps to 0x05;
    # SOCKS4 has one code for every failure.
    assert rep == (0x01 if scheme == "socks4a" else 0x05)
    s.close()
    assert http_status("http://" + c.addr, "http://%s:%d/" % (NAME, dead)) == "502"


@pytest.mark.deadline(60)
def test_parent_policy_denial_passes_through(parent, child):
    p = parent("--deny-dest", NAME)
    c = child(["socks5://" + p.addr])
    s, rep = s5_open(c.addr, NAME, 80)
    assert rep == 0x02
    s.close()
    h = child(["http://" + p.addr])
    assert http_status("http://" + h.addr, "http://%s:80/" % NAME) == "403"


@pytest.mark.deadline(60)
def test_own_policy_applies_before_the_parent(parent, child, identify):
    p = parent()
    srv = identify("D")
    c = child(["socks5://" + p.addr], "--deny-dest", NAME, "--deny-dest", "127.0.0.2/32")
    for host in (NAME, "127.0.0.2"):
        s, rep = s5_open(c.addr, host, srv.port)
        assert rep == 0x02, host
        s.close()
    assert http_status("http://" + c.addr, "http://%s:%d/" % (NAME, srv.port)) == "403"
    time.sleep(0.2)   # bounded: anything sent to the parent would have been logged by now
    assert p.sessions() == [], "the parent was asked for a denied destination:\n" + p.log()


@pytest.mark.deadline(60)
def test_silent_parent_times_out(child, servers):
    silent = servers(peers.h_silent)
    c = child(["socks5://127.0.0.1:%d" % silent.port], "--connect-timeout", "500ms")
    s, rep = s5_open(c.addr, NAME, 80)
    assert rep == 0x06
    s.close()
    assert log_has(c, "no answer in time"), c.log()


# --------------------------------------------------------------------------
# configuration


@pytest.mark.parametrize("spec,why", [
    ("socks5://h", "missing :PORT"),
    ("ftp://h:1", "expected socks5://"),
    ("ss://nope:pw@h:1", "unknown method"),
    ("socks4a://u:pw@h:1", "user id, not a password"),
])
def test_bad_via_is_one_line_naming_the_flag(spec, why):
    r = run_ferry("socks", "-l", "127.0.0.1:0", "--via", spec)
    err = r.stderr.decode()
    assert r.returncode != 0
    assert err.count("\n") == 1 and "--via" in err and why in err, err
    assert "pw" not in err


def test_ss_parent_must_be_last():
    r = run_ferry("socks", "--via", "ss://aes-128-gcm:pw@h:1", "--via", "socks5://h:2")
    assert r.returncode != 0 and "must be the last --via" in r.stderr.decode()


def test_via_does_not_apply_to_ss_local():
    r = run_ferry("ss-local", "-s", "h:1", "-k", "x", "--via", "socks5://h:2")
    assert r.returncode != 0 and "'--via' does not apply" in r.stderr.decode()


def test_yaml_via_list_and_errors(workdir):
    good = os.path.join(workdir, "good.yaml")
    with open(good, "w") as fh:
        fh.write("listeners:\n"
                 "  - name: a\n    mode: socks\n    listen: 127.0.0.1:1\n"
                 "    via: socks5://u:pw@127.0.0.1:2\n"
                 "  - name: b\n    mode: relay\n    listen: 127.0.0.1:3\n    upstream: h:1\n"
                 "    via:\n      - http://127.0.0.1:4\n      - ss://aes-128-gcm:pw@127.0.0.1:5\n")
    r = run_ferry("check", "-c", good)
    assert r.returncode == 0, r.stderr.decode()
    bad = os.path.join(workdir, "bad.yaml")
    with open(bad, "w") as fh:
        fh.write("listeners:\n"
                 "  - name: a\n    mode: socks\n    listen: 127.0.0.1:1\n"
                 "    via:\n      - socks5://127.0.0.1:2\n      - socks5://u:topsecret@nohost\n")
    r = run_ferry("check", "-c", bad)
    err = r.stderr.decode()
    assert r.returncode != 0
    assert "%s:7:9: via: missing :PORT" % bad in err, err
    assert "topsecret" not in err


@pytest.mark.deadline(30)
def test_udp_associate_refused_behind_a_parent(parent, child):
    """Datagrams would leave directly, not through the parent: 0x07."""
    p = parent()
    c = child(["socks5://" + p.addr])
    h, port = c.addr.rsplit(":", 1)
    s = peers.connect(h, int(port), timeout=scaled(5))
    s.sendall(b"\x05\x01\x00")
    assert recv_exact(s, 2) == b"\x05\x00"
    s.sendall(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
    assert recv_exact(s, 2, "reply")[1] == 0x07
    s.close()


def h_parent_then_banner(srv, c, peer):
    """A fake parent that answers and, in the same write, sends a
    destination's banner (a server that speaks first), then echoes. The
    request it got is recorded for the test."""
    first = c.recv(1)
    if first == b"\x05":
        n = recv_exact(c, 1, "NMETHODS")[0]
        recv_exact(c, n, "methods")
        c.sendall(b"\x05\x00")
        hdr = recv_exact(c, 5, "request")
        name = recv_exact(c, hdr[4] + 2, "name")
        srv.events.append(name[:-2])
        c.sendall(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x01BANNER\n")
    else:
        head = first
        while not head.endswith(b"\r\n\r\n"):
            head += recv_exact(c, 1, "CONNECT head")
        srv.events.append(head.split(b" ")[1])
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\nBANNER\n")
    peers.echo_loop(c)


@pytest.mark.deadline(30)
@pytest.mark.parametrize("scheme", ["socks5", "http"])
def test_bytes_behind_the_parents_answer_reach_the_client(child, servers, scheme):
    fake = servers(h_parent_then_banner)
    c = child(["%s://%s" % (scheme, fake.addr)])
    s, rep = s5_open(c.addr, NAME, 25)
    assert rep == 0
    assert recv_line(s, what="banner") == b"BANNER\n"
    m = os.urandom(2000)
    s.sendall(m)
    assert recv_exact(s, len(m), "echo") == m
    s.close()
    want = NAME.encode() if scheme == "socks5" else b"%s:25" % NAME.encode()
    assert fake.events == [want]
