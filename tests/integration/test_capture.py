"""Integration tests for --capture, --capture-rotate, --capture-filter and
--hexdump: real clients (curl) through real listeners, then tshark reads the
pcap files and reassembles every TCP stream (`-z follow,tcp,raw,N`).

Byte-exactness: the HTTP server here records exactly what it received and
what it sent on each connection, and curl's output is hashed.  For every
captured leg, each direction must equal (sha256) what crossed that socket:
- upstream leg: client->server == what the server received, server->client
  == what it sent;
- client leg: the same, behind the SOCKS handshake for SOCKS listeners (its
  bytes are checked too);
- Shadowsocks: the plaintext legs as above, and the encrypted leg as seen
  by ferry ss-local equals the one seen by ferry ss-server, both ways.
Every file must also be free of TCP analysis warnings (previous segment
not captured, ACKed unseen segment, ...) and of bad checksums.
"""

import glob
import os
import re
import select
import signal
import socket
import subprocess
import time

import pytest

import peers
from conftest import curl, free_port, listening, need, run_ferry, scaled

BODY = os.urandom(300 * 1024 + 77)   # > 64 KiB chunks: several segments per read


# --------------------------------------------------------------------------
# an HTTP server that records the exact bytes of each connection


def make_http(body):
    def h(srv, c, peer):
        req = b""
        while b"\r\n\r\n" not in req:
            d = c.recv(65536)
            if not d:
                break
            req += d
        resp = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body
        c.sendall(resp)
        c.shutdown(socket.SHUT_WR)
        while True:
            d = c.recv(65536)
            if not d:
                break
            req += d
        srv.record({"peer": peer, "got": req, "sent": resp})
    return h


@pytest.fixture
def http(servers):
    def make(host="127.0.0.1"):
        return servers(make_http(BODY), host=host)
    return make


# --------------------------------------------------------------------------
# tshark


def tshark(*args, timeout=60):
    r = subprocess.run(["tshark"] + [str(a) for a in args], capture_output=True,
                       timeout=scaled(timeout), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, "tshark %s failed: %s" % (args, r.stderr.decode(errors="replace"))
    return r.stdout.decode()


def parse_node(s):
    m = re.match(r"^\[?(.*?)\]?:(\d+)$", s.strip())
    return m.group(1), int(m.group(2))


def streams(path):
    """Every TCP stream of a file: list of dicts with node0/node1 (host,
    port) and the bytes each node sent (a = node0 -> node1, b = back)."""
    ids = sorted({int(x) for x in tshark("-r", path, "-T", "fields", "-e", "tcp.stream").split()})
    if not ids:
        return []
    args = ["-r", path, "-q"]
    for i in ids:
        args += ["-z", "follow,tcp,raw,%d" % i]
    out = tshark(*args)
    res = []
    cur = None
    for line in out.splitlines():
        if line.startswith("Filter: tcp.stream eq"):
            cur = {"a": bytearray(), "b": bytearray()}
            res.append(cur)
        elif cur is None:
            continue
        elif line.startswith("Node 0: "):
            cur["node0"] = parse_node(line[8:])
        elif line.startswith("Node 1: "):
            cur["node1"] = parse_node(line[8:])
        elif line.startswith("===="):
            cur = None
        elif line.startswith("\t"):
            cur["b"] += bytes.fromhex(line.strip())
        elif line.strip() and re.match(r"^[0-9a-f]+$", line.strip()):
            cur["a"] += bytes.fromhex(line.strip())
    assert len(res) == len(ids), out[:2000]
    return res


def leg(sts, port):
    """The stream whose server side (node 1) listens on port."""
    found = [s for s in sts if s["node1"][1] == port]
    assert len(found) == 1, "want one stream to port %d, have %s" % (port, [(s["node0"], s["node1"]) for s in sts])
    return found[0]


def assert_clean(path):
    """No TCP analysis flags (gaps, unseen ACKs, window problems...) and no
    bad TCP or IPv4 header checksums."""
    bad = tshark("-r", path, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
                 "-Y", "tcp.analysis.flags || tcp.checksum.status == 0 || ip.checksum.status == 0")
    assert bad.strip() == "", "tshark flags packets in %s:\n%s" % (path, bad[:3000])


def stop(f):
    problems = f.stop()
    assert not problems, problems


def check_plain_leg(st, got, sent):
    assert peers.sha256(bytes(st["a"])) == peers.sha256(got), "client->server bytes differ (%d vs %d)" % (len(st["a"]), len(got))
    assert peers.sha256(bytes(st["b"])) == peers.sha256(sent), "server->client bytes differ (%d vs %d)" % (len(st["b"]), len(sent))


def fetch(url, workdir, *args):
    out = os.path.join(workdir, "out.bin")
    r = curl("-o", out, *args, url)
    assert r.returncode == 0, r.stderr
    with open(out, "rb") as fh:
        assert peers.sha256(fh.read()) == peers.sha256(BODY)


# --------------------------------------------------------------------------


@pytest.mark.deadline(90)
def test_relay_both_legs_byte_exact(ferry, http, workdir):
    need("tshark")
    srv = http()
    cap = os.path.join(workdir, "relay.pcap")
    f = ferry("relay", "-u", srv.addr, "--capture", cap)
    fetch("http://%s/x" % f.addr, workdir)
    ev = srv.wait_events(1, scaled(5))[0]
    f.wait_sessions(1)
    stop(f)
    assert "1 file" in f.log() and "dropped" not in f.log(), f.log()
    sts = streams(cap)
    assert len(sts) == 2
    client_leg, up_leg = leg(sts, f.port), leg(sts, srv.port)
    check_plain_leg(up_leg, ev["got"], ev["sent"])
    check_plain_leg(client_leg, ev["got"], ev["sent"])
    # real addresses and ports: the server saw the upstream leg's source
    assert up_leg["node0"] == (ev["peer"][0], ev["peer"][1])
    assert client_leg["node1"] == ("127.0.0.1", f.port)
    assert_clean(cap)
    # SYN, FIN both ways on each leg
    flags = tshark("-r", cap, "-Y", "tcp.flags.syn==1 || tcp.flags.fin==1", "-T", "fields", "-e", "tcp.stream")
    assert len(flags.split()) == 2 * (2 + 2), flags


@pytest.mark.deadline(90)
def test_socks5_both_legs_byte_exact(ferry, http, workdir):
    need("tshark")
    srv = http()
    cap = os.path.join(workdir, "socks.pcap")
    f = ferry("socks", "--capture", cap)
    fetch("http://localhost:%d/x" % srv.port, workdir, "--socks5-hostname", f.addr)
    ev = srv.wait_events(1, scaled(5))[0]
    f.wait_sessions(1)
    stop(f)
    sts = streams(cap)
    assert len(sts) == 2
    client_leg, up_leg = leg(sts, f.port), leg(sts, srv.port)
    check_plain_leg(up_leg, ev["got"], ev["sent"])
    # the client leg is the SOCKS handshake, then the same bytes
    a, b = bytes(client_leg["a"]), bytes(client_leg["b"])
    hello = a[:2 + a[1]]                  # 05 NMETHODS METHODS...
    assert hello[0] == 5 and 0 in hello[2:], a[:40]
    req = b"\x05\x01\x00\x03" + bytes([len("localhost")]) + b"localhost" + srv.port.to_bytes(2, "big")
    assert a[len(hello):].startswith(req), a[:40]
    assert peers.sha256(a[len(hello) + len(req):]) == peers.sha256(ev["got"])
    assert b.startswith(b"\x05\x00\x05\x00\x00"), b[:20]
    reply_len = 2 + (10 if b[5] == 1 else 22)
    assert peers.sha256(b[reply_len:]) == peers.sha256(ev["sent"])
    assert_clean(cap)


@pytest.mark.deadline(90)
def test_ipv6_sessions_are_ipv6_packets(ferry, http, workdir):
    need("tshark")
    try:
        srv = http("::1")
    except OSError as e:
        pytest.skip("no IPv6 loopback: %s" % e)
    cap = os.path.join(workdir, "v6.pcap")
    f = ferry("relay", "-u", srv.addr, "--capture", cap, host="::1")
    fetch("http://[::1]:%d/x" % f.port, workdir)
    ev = srv.wait_events(1, scaled(5))[0]
    f.wait_sessions(1)
    stop(f)
    sts = streams(cap)
    client_leg, up_leg = leg(sts, f.port), leg(sts, srv.port)
    check_plain_leg(up_leg, ev["got"], ev["sent"])
    check_plain_leg(client_leg, ev["got"], ev["sent"])
    assert client_leg["node0"][0] == "::1" and up_leg["node1"][0] == "::1"
    v4 = tshark("-r", cap, "-Y", "ip")
    v6 = tshark("-r", cap, "-Y", "ipv6")
    assert v4.strip() == "" and len(v6.splitlines()) > 10
    assert_clean(cap)


@pytest.mark.deadline(120)
def test_rotation_files_read_alone_and_together(ferry, http, workdir):
    need("tshark")
    need("mergecap")
    srv = http()
    cap = os.path.join(workdir, "rot.pcap")
    f = ferry("relay", "-u", srv.addr, "--capture", cap, "--capture-rotate", "64k")
    fetch("http://%s/x" % f.addr, workdir)
    ev = srv.wait_events(1, scaled(5))[0]
    f.wait_sessions(1)
    stop(f)
    files = [cap] + sorted(glob.glob(os.path.join(workdir, "rot.*.pcap")),
                           key=lambda p: int(p.rsplit(".", 2)[1]))
    assert len(files) >= 5, files
    for i, p in enumerate(files[1:], 1):
        assert p == os.path.join(workdir, "rot.%d.pcap" % i)
    total = 0
    for p in files:
        n = len(tshark("-r", p).splitlines())   # each file stands alone
        assert n > 0, p
        total += n
        assert os.path.getsize(p) < 64 * 1024 + 65536, p   # SIZE plus at most one packet
    merged = os.path.join(workdir, "merged.pcap")
    subprocess.run(["mergecap", "-a", "-w", merged] + files, check=True, capture_output=True)
    sts = streams(merged)
    check_plain_leg(leg(sts, srv.port), ev["got"], ev["sent"])
    check_plain_leg(leg(sts, f.port), ev["got"], ev["sent"])
    assert_clean(merged)


@pytest.mark.deadline(90)
def test_filter_client_and_port(ferry, http, workdir):
    need("tshark")
    a, b = http(), http()
    # client filter: nobody from 10/8 here, so nothing at all is recorded
    cap1 = os.path.join(workdir, "none.pcap")
    f1 = ferry("relay", "-u", a.addr, "--capture", cap1, "--capture-filter", "client=10.0.0.0/8")
    fetch("http://%s/x" % f1.addr, workdir)
    f1.wait_sessions(1)
    stop(f1)
    assert tshark("-r", cap1).strip() == ""
    # port filter on a SOCKS listener: only sessions to b's port, and their
    # client leg in full (it waited for the verdict)
    cap2 = os.path.join(workdir, "port.pcap")
    f2 = ferry("socks", "--capture", cap2, "--capture-filter", "client=127.0.0.0/8,port=%d" % b.port)
    fetch("http://127.0.0.1:%d/x" % a.port, workdir, "--socks5", f2.addr)
    fetch("http://127.0.0.1:%d/x" % b.port, workdir, "--socks5", f2.addr)
    ev = b.wait_events(1, scaled(5))[0]
    f2.wait_sessions(2)
    stop(f2)
    sts = streams(cap2)
    assert len(sts) == 2, [(s["node0"], s["node1"]) for s in sts]
    up = leg(sts, b.port)
    check_plain_leg(up, ev["got"], ev["sent"])
    cl = leg(sts, f2.port)
    assert bytes(cl["a"]).startswith(b"\x05") and b"\x05\x01\x00\x01\x7f\x00\x00\x01" in bytes(cl["a"])
    assert bytes(cl["a"]).endswith(ev["got"]) and bytes(cl["b"]).endswith(ev["sent"])
    assert_clean(cap2)


def parse_hexdump(text):
    """{(sess, dir): bytes} from xxd-style dumps, checking offsets run on."""
    out = {}
    cur = None
    hdr = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z sess=(\d+) (client>upstream|upstream>client) "
                     r"len=(\d+) offset=(\d+)$")
    line_re = re.compile(r"^([0-9a-f]{8,16}): ((?:[0-9a-f ]{4} ){8}) (.{1,16})$")
    for line in text.splitlines():
        m = hdr.match(line)
        if m:
            cur = (int(m.group(1)), m.group(2))
            buf = out.setdefault(cur, bytearray())
            assert int(m.group(4)) == len(buf), line
            continue
        m = line_re.match(line)
        if m and cur:
            data = bytes.fromhex(m.group(2).replace(" ", ""))
            assert int(m.group(1), 16) == len(out[cur]), line
            text_col = "".join(chr(c) if 32 <= c < 127 else "." for c in data)
            assert m.group(3) == text_col, line
            out[cur] += data
    return out


@pytest.mark.deadline(60)
def test_hexdump_stderr_and_file(ferry, http, workdir):
    srv = http()
    f = ferry("relay", "-u", srv.addr, "--hexdump")
    fetch("http://%s/x" % f.addr, workdir)
    ev = srv.wait_events(1, scaled(5))[0]
    sess = f.wait_sessions(1)[0]
    stop(f)
    d = parse_hexdump(f.log())
    sid = int(sess["sess"])
    assert bytes(d[(sid, "client>upstream")]) == ev["got"]
    assert peers.sha256(bytes(d[(sid, "upstream>client")])) == peers.sha256(ev["sent"])
    first = ev["got"][:16]
    want = "00000000: " + " ".join(first[i:i + 2].hex() for i in range(0, 16, 2)) + "  " + \
        "".join(chr(c) if 32 <= c < 127 else "." for c in first)
    assert want in f.log()

    path = os.path.join(workdir, "dump.txt")
    f2 = ferry("socks", "--hexdump-file", path)
    fetch("http://127.0.0.1:%d/x" % srv.port, workdir, "--socks5", f2.addr)
    sess = f2.wait_sessions(1)[0]
    stop(f2)
    assert "client>upstream" not in f2.log()
    with open(path) as fh:
        d = parse_hexdump(fh.read())
    sid = int(sess["sess"])
    ev2 = srv.wait_events(2, scaled(5))[1]
    assert bytes(d[(sid, "client>upstream")]).endswith(ev2["got"])
    assert bytes(d[(sid, "upstream>client")]).endswith(ev2["sent"])


@pytest.mark.deadline(120)
def test_shadowsocks_legs(ferry, http, workdir):
    need("tshark")
    srv = http()
    pw = "capture-test-pw"
    cs = os.path.join(workdir, "ss-server.pcap")
    cl = os.path.join(workdir, "ss-local.pcap")
    fs = ferry("ss-server", "-k", pw, "--capture", cs, "--drain-timeout", "1s")
    fl = ferry("ss-local", "-s", fs.addr, "-k", pw, "--capture", cl, "--drain-timeout", "1s")
    fetch("http://127.0.0.1:%d/x" % srv.port, workdir, "--socks5", fl.addr)
    ev = srv.wait_events(1, scaled(5))[0]
    fl.wait_sessions(1)
    fs.wait_sessions(1)
    stop(fl)
    stop(fs)
    ss = streams(cs)
    ls = streams(cl)
    # ss-server: plaintext to the web server
    check_plain_leg(leg(ss, srv.port), ev["got"], ev["sent"])
    # ss-local: plaintext SOCKS + HTTP on the client leg
    c = leg(ls, fl.port)
    assert bytes(c["a"]).endswith(ev["got"]) and bytes(c["b"]).endswith(ev["sent"])
    # the encrypted leg, as both ends saw it
    enc_l, enc_s = leg(ls, fs.port), leg(ss, fs.port)
    assert enc_l["node0"] == enc_s["node0"]
    assert peers.sha256(bytes(enc_l["a"])) == peers.sha256(bytes(enc_s["a"])) and len(enc_l["a"]) > len(ev["got"])
    assert peers.sha256(bytes(enc_l["b"])) == peers.sha256(bytes(enc_s["b"])) and len(enc_l["b"]) > len(ev["sent"])
    assert_clean(cs)
    assert_clean(cl)


def test_capture_option_errors(workdir):
    cases = [
        (["relay", "-l", "127.0.0.1:1", "-u", "127.0.0.1:2", "--capture-rotate", "10x"], "'10x'"),
        (["relay", "-l", "127.0.0.1:1", "-u", "127.0.0.1:2", "--capture", "a.pcap", "--capture-filter",
          "port=99999"], "'port=99999'"),
        (["relay", "-l", "127.0.0.1:1", "-u", "127.0.0.1:2", "--capture-filter", "port=80"], "needs --capture"),
        (["socks", "-l", "127.0.0.1:1", "--user", "a:b", "--capture-secrets"], "needs --capture FILE or --hexdump"),
        (["relay", "-l", "127.0.0.1:1", "-u", "127.0.0.1:2", "--capture", "a.pcap", "--capture-secrets"],
         "--capture-secrets"),
        (["relay", "-l", "127.0.0.1:1", "-u", "127.0.0.1:2", "--capture", os.path.join(workdir, "no/dir.pcap")],
         "no/dir.pcap"),
    ]
    for args, want in cases:
        r = run_ferry(*args)
        err = r.stderr.decode()
        assert r.returncode != 0 and want in err and err.count("\n") == 1, (args, err)


# --------------------------------------------------------------------------
# the files hold relayed plaintext and are opened as root (issue #20, 4)


@pytest.mark.deadline(60)
def test_capture_and_hexdump_files_are_0600(ferry, http, workdir):
    srv = http()
    cap = os.path.join(workdir, "priv.pcap")
    dump = os.path.join(workdir, "priv.txt")
    with open(dump, "w") as fh:           # left world-readable by an earlier run
        fh.write("old\n")
    os.chmod(dump, 0o644)
    f = ferry("relay", "-u", srv.addr, "--capture", cap, "--capture-rotate", "1k", "--hexdump-file", dump)
    fetch("http://%s/x" % f.addr, workdir)
    f.wait_sessions(1)
    stop(f)
    rotated = glob.glob(os.path.join(workdir, "priv.*.pcap"))
    assert rotated, os.listdir(workdir)
    for p in [cap, dump] + rotated:
        assert os.stat(p).st_mode & 0o7777 == 0o600, (p, oct(os.stat(p).st_mode))


def test_capture_to_stdout(ferry, identify, workdir):
    up = identify()
    f = ferry("relay", "-u", up.addr, "--capture", "-")
    stop(f)
    assert open(f.out_path, "rb").read()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"), f.log()


@pytest.mark.parametrize("opt", ["--capture", "--hexdump-file"])
def test_symlink_at_capture_or_hexdump_path_is_refused(opt, workdir):
    target = os.path.join(workdir, "precious")
    with open(target, "w") as fh:
        fh.write("keep me\n")
    os.chmod(target, 0o644)
    link = os.path.join(workdir, "out.link")
    os.symlink(target, link)
    r = run_ferry("relay", "-l", "127.0.0.1:%d" % free_port(), "-u", "127.0.0.1:2", opt, link)
    err = r.stderr.decode()
    assert r.returncode != 0 and link in err and "symbolic link" in err and err.count("\n") == 1, err
    with open(target) as fh:
        assert fh.read() == "keep me\n"
    assert os.stat(target).st_mode & 0o7777 == 0o644
    assert os.path.islink(link)


# --------------------------------------------------------------------------
# what a new user met (issue #16)

SOCKS_USER, SOCKS_PASS = "alice", "S3cret"
STARS = b"*" * len(SOCKS_PASS)


def auth_msg(pw=SOCKS_PASS):
    u, p = SOCKS_USER.encode(), pw.encode()
    return b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p


def socks_listener(ferry, mode, *extra):
    """A SOCKS front with --user (socks, or ss-local with its ss-server)."""
    args = ["--user", "%s:%s" % (SOCKS_USER, SOCKS_PASS)] + list(extra)
    if mode == "socks":
        return ferry("socks", *args)
    fs = ferry("ss-server", "-k", "pw", "--drain-timeout", "1s")
    return ferry("ss-local", "-s", fs.addr, "-k", "pw", "--drain-timeout", "1s", *args)


def client_leg_bytes(cap, port):
    return bytes(leg(streams(cap), port)["a"])


@pytest.mark.deadline(90)
@pytest.mark.parametrize("mode", ["socks", "ss-local"])
@pytest.mark.parametrize("secrets", [False, True], ids=["redacted", "capture-secrets"])
def test_socks_password_redacted_in_capture_and_hexdump(ferry, http, workdir, mode, secrets):
    """The RFC 1929 password is stars of the same length in --capture and
    --hexdump (stderr), unless --capture-secrets."""
    need("tshark")
    srv = http()
    cap = os.path.join(workdir, "auth.pcap")
    f = socks_listener(ferry, mode, "--capture", cap, "--hexdump", *(["--capture-secrets"] if secrets else []))
    fetch("http://127.0.0.1:%d/x" % srv.port, workdir, "--socks5", f.addr,
          "--proxy-user", "%s:%s" % (SOCKS_USER, SOCKS_PASS))
    sess = f.wait_sessions(1)[0]
    stop(f)
    want = auth_msg() if secrets else auth_msg("*" * len(SOCKS_PASS))
    with open(cap, "rb") as fh:
        raw = fh.read()
    assert (SOCKS_PASS.encode() in raw) == secrets
    a = client_leg_bytes(cap, f.port)
    assert a[2 + a[1]:].startswith(want), a[:40]   # after the greeting 05 NMETHODS METHODS
    assert_clean(cap)
    dump = parse_hexdump(f.log())
    up = bytes(dump[(int(sess["sess"]), "client>upstream")])
    assert up == a, (up[:40], a[:40])
    assert (SOCKS_PASS in f.log()) == secrets


@pytest.mark.deadline(60)
def test_socks_password_split_across_reads_is_redacted(ferry, identify, workdir):
    """The password arrives in pieces (each its own read): every piece is
    redacted, in the capture and in the dump."""
    need("tshark")
    up = identify()
    cap = os.path.join(workdir, "split.pcap")
    f = socks_listener(ferry, "socks", "--capture", cap, "--hexdump")
    msg = auth_msg()
    cut = msg.index(b"S3") + 2                    # "...alice\x06S3" | "cret"
    pieces = [b"\x05\x01\x02", msg[:6], msg[6:cut], msg[cut:]]
    s = f.connect()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i, p in enumerate(pieces):
        s.sendall(p)
        if i == 0:
            assert s.recv(2) == b"\x05\x02"
        time.sleep(0.15)
    assert s.recv(2) == b"\x01\x00"
    port = up.port
    s.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big"))
    r = s.recv(10)
    assert r[:2] == b"\x05\x00", r
    s.close()
    sess = f.wait_sessions(1)[0]
    stop(f)
    with open(cap, "rb") as fh:
        raw = fh.read()
    assert SOCKS_PASS.encode() not in raw
    a = client_leg_bytes(cap, f.port)
    assert a.startswith(b"\x05\x01\x02" + auth_msg("*" * len(SOCKS_PASS))), a
    dump = parse_hexdump(f.log())
    assert bytes(dump[(int(sess["sess"]), "client>upstream")]).startswith(b"\x05\x01\x02" + msg[:8] + STARS)
    # each piece was its own read
    chunks = re.findall(r"sess=%s client>upstream len=(\d+)" % sess["sess"], f.log())
    assert [int(c) for c in chunks[:4]] == [len(p) for p in pieces], chunks
    assert "cret" not in f.log()


def test_capture_stdout_cannot_rotate(workdir):
    """--capture - with --capture-rotate would write files named -.1, -.2...
    in the working directory: refused, on the command line and in YAML."""
    r = run_ferry("relay", "-l", "127.0.0.1:%d" % free_port(), "-u", "127.0.0.1:2", "--capture", "-",
                  "--capture-rotate", "1k")
    err = r.stderr.decode()
    assert r.returncode != 0 and err.count("\n") == 1, err
    assert "--capture -" in err and "--capture-rotate" in err, err
    path = os.path.join(workdir, "rot.yaml")
    with open(path, "w") as fh:
        fh.write('listeners:\n  - {name: r, mode: relay, listen: "127.0.0.1:%d", upstream: "127.0.0.1:2",\n'
                 '     capture: "-", capture-rotate: 1k}\n' % free_port())
    for cmd in ("check", "run"):
        r = run_ferry(cmd, "-c", path)
        err = r.stderr.decode()
        assert r.returncode != 0 and "--capture -" in err and "--capture-rotate" in err, err
    assert not glob.glob(os.path.join(workdir, "-*")) and not glob.glob("-.*")


def test_capture_to_a_terminal_is_refused(workdir):
    """pcap is binary: --capture - with stdout on a terminal is refused at
    start-up, with one line."""
    import pty
    master, slave = pty.openpty()
    try:
        argv = [os.environ.get("FERRY_BIN", "ferry"), "relay", "-l", "127.0.0.1:%d" % free_port(),
                "-u", "127.0.0.1:2", "--capture", "-"]
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
        try:
            _, err = p.communicate(timeout=scaled(5))
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise AssertionError("ferry ran with its pcap going to a terminal")
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    try:
        out = os.read(master, 4096)
    except OSError:
        out = b""
    os.close(master)
    err = err.decode()
    assert p.returncode != 0 and err.count("\n") == 1 and "terminal" in err and "--capture -" in err, err
    assert b"\xd4\xc3\xb2\xa1" not in out and b"\xa1\xb2\xc3\xd4" not in out


def pcap_records(data):
    """Complete records in a pcap byte stream (after its 24-byte header)."""
    n, off = 0, 24
    while off + 16 <= len(data):
        caplen = int.from_bytes(data[off + 8:off + 12], "little")
        if off + 16 + caplen > len(data):
            break
        off += 16 + caplen
        n += 1
    return n


@pytest.mark.deadline(60)
def test_capture_pipe_closed_early(ferry, identify, workdir):
    """`ferry ... --capture - | head -c 100`: once the reader is gone, the
    capture stops (said once, with the reason), and the final count is of
    the packets that were written, not of those that were not."""
    import threading
    up = identify()
    port = free_port()
    rfd, wfd = os.pipe()
    argv = [os.environ.get("FERRY_BIN", "ferry"), "relay", "-l", "127.0.0.1:%d" % port, "-u", up.addr,
            "--capture", "-", "--drain-timeout", "1s"]
    log = os.path.join(workdir, "ferry.stderr")
    with open(log, "wb") as errf:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=wfd, stderr=errf)
    os.close(wfd)
    got = bytearray()
    done = threading.Event()

    def reader():
        while not done.is_set():
            if not select.select([rfd], [], [], 0.05)[0]:
                continue
            try:
                d = os.read(rfd, 65536)
            except OSError:
                break
            if not d:
                break
            got.extend(d)
    t = threading.Thread(target=reader, daemon=True)
    t.start()

    def session():
        s = socket.create_connection(("127.0.0.1", port), timeout=scaled(5))
        s.sendall(b"hello")
        s.recv(100)
        s.close()

    def settle():
        deadline, last = time.monotonic() + scaled(5), -1
        while time.monotonic() < deadline:
            if len(got) == last and last > 24:
                return
            last = len(got)
            time.sleep(0.3)

    try:
        deadline = time.monotonic() + scaled(5)
        while not listening(p.pid, port) and time.monotonic() < deadline:
            time.sleep(0.02)
        for _ in range(3):
            session()
        settle()
        # the reader leaves: what it read is everything that was written
        done.set()
        t.join(scaled(5))
        os.close(rfd)
        for _ in range(5):
            session()
        time.sleep(0.5)
        for _ in range(5):
            session()
        time.sleep(0.3)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(scaled(10))
    text = open(log).read()
    assert p.returncode == 0, (p.returncode, text)
    lines = [l for l in text.splitlines() if "capture '-'" in l]
    assert len([l for l in lines if "stopped" in l and "Broken pipe" in l]) == 1, text
    final = lines[-1]
    m = re.search(r"(\d+) packets written", final)
    assert m, text
    assert int(m.group(1)) == pcap_records(bytes(got)), (len(got), text)
    assert re.search(r"\d+ not written", final), text
