"""HTTP proxying on the SOCKS port (the mixed port, src/relay/front_http.c).

Real clients: curl -x http:// for CONNECT (to a local TLS server with an
openssl-made self-signed certificate, curl -k) and for plain http://
(absolute form), both with a sha256-checked download; -U right and wrong.
Raw sockets for what curl does not send: malformed heads, methods not
proxied, the rewritten head as the origin sees it.
"""

import base64
import functools
import http.server
import os
import socket
import ssl
import subprocess
import threading

import pytest

import peers
from conftest import closed_port, curl, file_sha256, need, scaled
from peers import read_until_close, recv_exact, recv_line
from test_capture import parse_hexdump, stop

USER, PASS = "alice", "S3cr3t-P4ss-x9"
DNS_RECORDS = {"web.ferry.test": ["127.0.0.1"], "blocked.ferry.test": ["127.0.0.1"]}


@pytest.fixture
def dns(fakedns):
    return fakedns(records=DNS_RECORDS)


@pytest.fixture
def socks(ferry, dns):
    """socks(*args) -> ferry socks (HTTP on by default) with the fake DNS."""
    def start(*args, **kw):
        return ferry("socks", "--dns-server", dns.addr, *args, **kw)
    return start


@pytest.fixture(scope="module")
def tls_server(bigfile, tmp_path_factory):
    """An HTTPS server (python ssl, a self-signed certificate made by the
    openssl CLI) serving the bigfile directory, in a thread."""
    need("openssl")
    d = tmp_path_factory.mktemp("tls")
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=bigfile["dir"]))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def raw_request(f, data, timeout=3.0):
    """Sends data on a new connection; everything until ferry closes."""
    s = f.connect()
    s.sendall(data)
    got, how = read_until_close(s, scaled(timeout))
    s.close()
    assert how in ("eof", "reset"), "ferry kept the connection open (got %r)" % got[:80]
    return got


def status_of(resp):
    return int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.1 ") else None


def basic(user, pw):
    return "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


# --------------------------------------------------------------------------
# curl


@pytest.mark.deadline(60)
@pytest.mark.parametrize("auth", ["none", "users"])
def test_curl_plain_http_download(socks, http4, bigfile, workdir, auth):
    """curl -x http:// with an http:// URL: absolute form, forwarded in
    origin form; the file arrives intact and the log says proto=http."""
    args = ["--user", "%s:%s" % (USER, PASS)] if auth == "users" else []
    f = socks(*args)
    out = os.path.join(workdir, "mid.bin")
    cargs = ["-U", "%s:%s" % (USER, PASS)] if auth == "users" else []
    r = curl("-x", "http://" + f.addr, *cargs, "-o", out, http4.url("mid.bin"), timeout=60)
    assert r.returncode == 0, r.stderr
    assert file_sha256(out) == bigfile["mid"]
    s = f.wait_sessions(1)[0]
    assert s["proto"] == "http" and s["dest"] == "127.0.0.1:%d" % http4.port, s["_line"]
    assert s["user"] == (USER if auth == "users" else "-"), s["_line"]
    assert s["end"] == "upstream_closed", s["_line"]
    assert PASS not in f.log()


@pytest.mark.deadline(60)
@pytest.mark.parametrize("auth", ["none", "users"])
def test_curl_connect_to_tls_server(socks, tls_server, bigfile, workdir, auth):
    """curl -x http:// with an https:// URL: CONNECT, then TLS end to end."""
    args = ["--user", "%s:%s" % (USER, PASS)] if auth == "users" else []
    f = socks(*args)
    out = os.path.join(workdir, "mid.bin")
    cargs = ["-U", "%s:%s" % (USER, PASS)] if auth == "users" else []
    r = curl("-k", "-x", "http://" + f.addr, *cargs, "-o", out, "https://127.0.0.1:%d/mid.bin" % tls_server,
             timeout=60)
    assert r.returncode == 0, r.stderr
    assert file_sha256(out) == bigfile["mid"]
    s = f.wait_sessions(1)[0]
    assert s["proto"] == "http" and s["dest"] == "127.0.0.1:%d" % tls_server, s["_line"]
    assert int(s["down"]) > bigfile["mid_len"], s["_line"]


@pytest.mark.deadline(60)
def test_curl_proxytunnel_plain_http_by_name(socks, http4, bigfile, workdir):
    """CONNECT to a name (resolved by ferry), curl -p for a plain URL."""
    f = socks()
    out = os.path.join(workdir, "mid.bin")
    r = curl("-p", "-x", "http://" + f.addr, "-o", out, "http://web.ferry.test:%d/mid.bin" % http4.port, timeout=60)
    assert r.returncode == 0, r.stderr
    assert file_sha256(out) == bigfile["mid"]
    assert f.wait_sessions(1)[0]["dest"] == "web.ferry.test:%d" % http4.port


@pytest.mark.deadline(60)
@pytest.mark.parametrize("creds", ["wrong", "unknown-user", "none"])
@pytest.mark.parametrize("url", ["http", "https"])
def test_curl_wrong_credentials_407(socks, http4, tls_server, workdir, creds, url):
    f = socks("--user", "%s:%s" % (USER, PASS))
    cargs = {"wrong": ["-U", "%s:nope" % USER], "unknown-user": ["-U", "bob:%s" % PASS], "none": []}[creds]
    target = http4.url("mid.bin") if url == "http" else "https://127.0.0.1:%d/mid.bin" % tls_server
    out = os.path.join(workdir, "x")
    r = curl("-k", "-x", "http://" + f.addr, *cargs, "-o", out, "-w", "%{http_code}", target, timeout=20)
    if url == "http":
        assert r.stdout == b"407", (r.stdout, r.stderr)
    else:
        assert r.returncode != 0 and b"407" in r.stderr, r.stderr
    s = f.wait_sessions(1)[0]
    assert s["end"] == ("no_method" if creds == "none" else "auth_failed"), s["_line"]
    assert s["user"] == {"wrong": USER, "unknown-user": "bob", "none": "-"}[creds], s["_line"]
    assert s["upstream"] == "-", s["_line"]


def test_407_challenge_and_allow_anonymous(socks, identify):
    up = identify("A")
    f = socks("--user", "%s:%s" % (USER, PASS))
    resp = raw_request(f, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % up.port)
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 407 Proxy Authentication Required\r\n"), resp
    assert b'\r\nProxy-Authenticate: Basic realm="ferry"' in head
    assert b"\r\nConnection: close" in head
    assert len(body) == int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    # Not Basic at all: 407 too.
    resp = raw_request(f, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nProxy-Authorization: Bearer x\r\n\r\n" % up.port)
    assert status_of(resp) == 407
    assert up.accepted == 0
    g = socks("--user", "%s:%s" % (USER, PASS), "--allow-anonymous")
    s = g.connect()
    s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % up.port)
    assert recv_line(s) == b"HTTP/1.1 200 Connection established\r\n"
    assert recv_line(s) == b"\r\n"
    assert recv_line(s) == b"ID:A\n"
    s.close()


# --------------------------------------------------------------------------
# what the origin sees, early data


def test_absolute_form_rewritten_for_the_origin(socks, identify):
    """The origin gets the request in origin form with Host from the URL,
    without hop-by-hop headers, with Connection: close; the body and the
    bytes after it follow as sent (the identify server echoes them)."""
    up = identify("A")
    f = socks("--user", "%s:%s" % (USER, PASS))
    req = (b"POST http://127.0.0.1:%d/a/b?q=1#frag HTTP/1.1\r\n" % up.port +
           b"Host: elsewhere.test\r\nUser-Agent: t\r\nProxy-Connection: keep-alive\r\n" +
           b"Proxy-Authorization: " + basic(USER, PASS).encode() + b"\r\n" +
           b"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n" +
           b"Content-Length: 4\r\n\r\nbody")
    s = f.connect()
    s.sendall(req)
    assert recv_line(s) == b"ID:A\n"
    want = (b"POST /a/b?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: t\r\nContent-Length: 4\r\n"
            b"Connection: close\r\n\r\nbody" % up.port)
    assert recv_exact(s, len(want)) == want
    s.close()
    line = f.wait_sessions(1)[0]
    assert line["user"] == USER and line["proto"] == "http", line["_line"]


def test_next_request_on_a_reused_connection_never_reaches_the_first_origin(socks, identify):
    """Clients reuse a proxy connection when the response did not say
    Connection: close: curl even for another host, chromium for the same
    origin (its favicon). An origin that keeps the connection open despite
    the forwarded Connection: close (the identify server here; any HTTP/1.1
    server that ignores it, or one that wants the next request) must not
    get that next request: it is meant for another host, and it comes in
    absolute form with the client's Proxy-Authorization, which ferry strips
    only from the first head. ferry ends the connection there (the client
    then retries on a new one) instead of relaying it."""
    up = identify("A")
    f = socks("--user", "%s:%s" % (USER, PASS))
    auth = b"Proxy-Authorization: " + basic(USER, PASS).encode() + b"\r\n"
    s = f.connect()
    s.sendall(b"GET http://127.0.0.1:%d/one HTTP/1.1\r\nHost: 127.0.0.1\r\n" % up.port + auth + b"\r\n")
    assert recv_line(s) == b"ID:A\n"
    first = b"GET /one HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % up.port
    assert recv_exact(s, len(first)) == first
    second = b"GET http://web.ferry.test:%d/two HTTP/1.1\r\nHost: web.ferry.test\r\n" % up.port + auth + b"\r\n"
    s.sendall(second)
    got, how = read_until_close(s, scaled(3), limit=len(second) - 1)
    s.close()
    assert basic(USER, PASS).encode() not in got and b"/two" not in got, \
        "the first origin got the next request, Proxy-Authorization and all: %r" % got
    assert how in ("eof", "reset"), how
    line = f.wait_sessions(1)[0]
    assert line["end"] == "http_next_request", line["_line"]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_request_body_relayed_whole_then_next_request_ends(socks, identify, framing):
    """The body goes to the origin as the request frames it, split across
    writes, chunk trailers included; the first byte past it ends the
    session, and none of it is relayed."""
    up = identify("A")
    f = socks()
    s = f.connect()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if framing == "chunked":
        body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        hdr = b"Transfer-Encoding: chunked\r\n"
    else:
        body = b"hello world"
        hdr = b"Content-Length: 11\r\n"
    s.sendall(b"POST http://127.0.0.1:%d/up HTTP/1.1\r\nHost: x\r\n" % up.port + hdr + b"\r\n")
    assert recv_line(s) == b"ID:A\n"
    head = b"POST /up HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % up.port + hdr + b"Connection: close\r\n\r\n"
    assert recv_exact(s, len(head)) == head
    for i in range(0, len(body), 4):          # the body in pieces, each echoed before the next
        s.sendall(body[i:i + 4])
        assert recv_exact(s, len(body[i:i + 4])) == body[i:i + 4]
    s.sendall(b"GET http://127.0.0.1:%d/next HTTP/1.1\r\n\r\n" % up.port)
    got, how = read_until_close(s, scaled(3), limit=64)
    s.close()
    assert got == b"" and how in ("eof", "reset"), (got, how)
    line = f.wait_sessions(1)[0]
    assert line["end"] == "http_next_request", line["_line"]


def test_connect_early_data(socks, identify):
    """Bytes sent right behind the CONNECT head reach the upstream."""
    up = identify("A")
    f = socks()
    s = f.connect()
    s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost\r\n\r\nearly bytes" % up.port)
    assert recv_line(s) == b"HTTP/1.1 200 Connection established\r\n"
    assert recv_line(s) == b"\r\n"
    assert recv_line(s) == b"ID:A\n"
    assert recv_exact(s, 11) == b"early bytes"
    s.close()


def test_head_split_in_many_reads(socks, identify):
    up = identify("A")
    f = socks()
    s = f.connect()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nUser-Agent: slow\r\n\r\n" % up.port
    for i in range(0, len(req), 3):
        s.sendall(req[i:i + 3])
    assert recv_line(s) == b"HTTP/1.1 200 Connection established\r\n"
    s.close()


# --------------------------------------------------------------------------
# errors, each a proper HTTP response


def test_policy_denial_403(socks, identify):
    up = identify("A")
    f = socks("--deny-dest", "127.0.0.1:%d" % up.port, "--deny-dest", "blocked.ferry.test")
    for req in (b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % up.port,
                b"GET http://127.0.0.1:%d/ HTTP/1.1\r\n\r\n" % up.port,
                b"CONNECT blocked.ferry.test:%d HTTP/1.1\r\n\r\n" % up.port):
        assert status_of(raw_request(f, req)) == 403, req
    assert up.accepted == 0
    ends = [x["end"] for x in f.wait_sessions(3)]
    assert ends == ["denied"] * 3, f.log()[-2000:]


def test_refused_port_502(socks):
    f = socks()
    port = closed_port()
    for req in (b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % port, b"GET http://127.0.0.1:%d/ HTTP/1.1\r\n\r\n" % port,
                b"CONNECT nx.ferry.test:80 HTTP/1.1\r\n\r\n"):
        resp = raw_request(f, req)
        assert resp.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), resp
    r = curl("-x", "http://" + f.addr, "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:%d/" % port)
    assert r.stdout == b"502"


@pytest.mark.deadline(30)
def test_connect_timeout_504(socks, blackhole):
    b = blackhole()
    f = socks("--connect-timeout", "1s")
    resp = raw_request(f, b"CONNECT %s:%d HTTP/1.1\r\n\r\n" % (b.host.encode(), b.port), timeout=5)
    assert resp.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n"), resp
    assert f.wait_sessions(1)[0]["end"] == "connect_timeout"


MALFORMED = {
    "origin-form": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "handshake_error"),
    "https-scheme": (b"GET https://x/ HTTP/1.1\r\n\r\n", 400, "handshake_error"),
    "no-port": (b"CONNECT x HTTP/1.1\r\n\r\n", 400, "handshake_error"),
    "bad-header": (b"GET http://x/ HTTP/1.1\r\nBad Header: 1\r\n\r\n", 400, "handshake_error"),
    "bad-version": (b"GET http://x/ HTTP/2.0\r\n\r\n", 505, "handshake_error"),
    "not-http": (b"HELLO\r\n\r\n", 400, "handshake_error"),
    "webdav": (b"PROPFIND http://x/ HTTP/1.1\r\n\r\n", 405, "bad_command"),
    "too-many-headers": (b"GET http://x/ HTTP/1.1\r\n" + b"X: y\r\n" * 65 + b"\r\n", 431, "handshake_error"),
    "head-too-large": (b"GET http://x/ HTTP/1.1\r\nX: " + b"a" * 20000, 431, "handshake_error"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_answered_and_ferry_keeps_serving(socks, identify, name):
    up = identify("A")
    f = socks()
    req, status, end = MALFORMED[name]
    resp = raw_request(f, req)
    assert status_of(resp) == status, resp[:200]
    assert b"\r\nConnection: close\r\n" in resp
    assert f.wait_sessions(1)[0]["end"] == end
    assert up.accepted == 0
    s = f.connect()
    s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % up.port)
    assert recv_line(s) == b"HTTP/1.1 200 Connection established\r\n"
    s.close()


def test_no_http_refuses_without_answer(socks, identify):
    up = identify("A")
    f = socks("--no-http")
    assert "http=off" in f.log()
    assert raw_request(f, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % up.port) == b""
    assert f.wait_sessions(1)[0]["end"] == "unknown_protocol"
    assert up.accepted == 0


# --------------------------------------------------------------------------
# the same port still speaks SOCKS; ss-local's front too; secrets


def test_socks5_socks4_and_http_on_one_port(socks, http4, bigfile, workdir):
    f = socks()
    for i, proxy in enumerate(("socks5h://", "socks4://", "http://", "socks4a://", "socks5://")):
        out = os.path.join(workdir, "o%d" % i)
        r = curl("-x", proxy + f.addr, "-o", out, http4.url("mid.bin"), timeout=60)
        assert r.returncode == 0, (proxy, r.stderr)
        assert file_sha256(out) == bigfile["mid"], proxy
    protos = [x["proto"] for x in f.wait_sessions(5)]
    assert sorted(protos) == sorted(["socks5", "socks4", "http", "socks4a", "socks5"]), protos


@pytest.mark.deadline(60)
def test_http_through_ss_local(ferry, http4, tls_server, bigfile, workdir):
    srv = ferry("ss-server", "-k", "pw", "--drain-timeout", "1s")
    loc = ferry("ss-local", "-s", srv.addr, "-k", "pw", "--drain-timeout", "1s")
    out = os.path.join(workdir, "a")
    r = curl("-x", "http://" + loc.addr, "-o", out, http4.url("mid.bin"), timeout=60)
    assert r.returncode == 0, r.stderr
    assert file_sha256(out) == bigfile["mid"]
    r = curl("-k", "-x", "http://" + loc.addr, "-o", out, "https://127.0.0.1:%d/mid.bin" % tls_server, timeout=60)
    assert r.returncode == 0, r.stderr
    assert file_sha256(out) == bigfile["mid"]
    assert [x["proto"] for x in loc.wait_sessions(2)] == ["http", "http"]


@pytest.mark.deadline(60)
@pytest.mark.parametrize("secrets", [False, True], ids=["redacted", "capture-secrets"])
def test_proxy_authorization_redacted_in_hexdump(socks, identify, secrets):
    """The Proxy-Authorization value is stars in --hexdump, also when it
    arrives in pieces, unless --capture-secrets; it never reaches the
    origin."""
    up = identify("A")
    f = socks("--user", "%s:%s" % (USER, PASS), "--hexdump", *(["--capture-secrets"] if secrets else []))
    value = basic(USER, PASS).encode()
    head = b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nProxy-Authorization: " % up.port
    s = f.connect()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(head + value[:10])
    peers.wait_until(lambda: "len=%d" % (len(head) + 10) in f.log(), scaled(3))
    s.sendall(value[10:] + b"\r\n\r\n")
    assert recv_line(s) == b"HTTP/1.1 200 Connection established\r\n"
    s.close()
    sess = f.wait_sessions(1)[0]
    # The dumps have their own writer thread: the session's line can come
    # before its last dump. Stopping ferry drains them (as in test_capture).
    stop(f)
    dump = parse_hexdump(f.log())
    up_bytes = bytes(dump[(int(sess["sess"]), "client>upstream")])
    want = head + (value if secrets else b"*" * len(value)) + b"\r\n\r\n"
    assert up_bytes.startswith(want), up_bytes[:120]
    assert (value in up_bytes) == secrets


@pytest.mark.deadline(60)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_next_request_starred_in_capture(socks, identify, workdir, framing):
    """A next request on the connection is never forwarded, and the capture
    of the client's leg shows it as stars, Proxy-Authorization and all; the
    first request's body is kept as sent when its head says how long it is
    (a chunked body, whose end only its chunks tell, is starred too)."""
    up = identify("A")
    cap = os.path.join(workdir, "next.pcap")
    f = socks("--user", "%s:%s" % (USER, PASS), "--capture", cap)
    auth = b"Proxy-Authorization: " + basic(USER, PASS).encode() + b"\r\n"
    if framing == "chunked":
        hdr, body = b"Transfer-Encoding: chunked\r\n", b"4\r\nBODY\r\n0\r\n\r\n"
    else:
        hdr, body = b"Content-Length: 4\r\n", b"BODY"
    s = f.connect()
    s.sendall(b"POST http://127.0.0.1:%d/one HTTP/1.1\r\nHost: x\r\n" % up.port + hdr + auth + b"\r\n" + body)
    assert recv_line(s) == b"ID:A\n"
    fwd = b"POST /one HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % up.port + hdr + b"Connection: close\r\n\r\n" + body
    assert recv_exact(s, len(fwd)) == fwd
    s.sendall(b"GET http://other.example/two HTTP/1.1\r\nHost: other.example\r\n" + auth + b"\r\n")
    read_until_close(s, scaled(3), limit=64)
    s.close()
    assert f.wait_sessions(1)[0]["end"] == "http_next_request"
    stop(f)
    data = open(cap, "rb").read()
    assert basic(USER, PASS).encode() not in data, "a Proxy-Authorization in clear in the capture"
    assert b"/two" not in data and b"other.example" not in data
    # The body as forwarded and its echo on both legs (3), and as the client
    # sent it, unless chunked (starred).
    assert data.count(b"BODY") == (4 if framing == "content-length" else 3), data.count(b"BODY")


@pytest.mark.deadline(60)
def test_pipelined_request_held_while_the_first_answer_arrives_whole(socks, http4, bigfile):
    """A stray CRLF after a request is dropped (RFC 9112 2.2), and a
    pipelined second request is held, never forwarded, while the first's
    6 MB answer comes back whole; the origin's close (it was asked for
    Connection: close) then ends the session."""
    f = socks()
    s = f.connect()
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n\r\n" % http4.url("mid.bin").encode()
              + b"GET http://127.0.0.1:%d/other.bin HTTP/1.1\r\nHost: x\r\n\r\n" % http4.port)
    got, how = read_until_close(s, scaled(20))
    s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head[:200]
    assert how == "eof" and len(body) == bigfile["mid_len"] and peers.sha256(body) == bigfile["mid"], \
        (how, len(body))
    line = f.wait_sessions(1)[0]
    assert line["end"] != "http_next_request" and int(line["down"]) >= bigfile["mid_len"], line["_line"]
    http4.log.seek(0)
    served = http4.log.read()
    assert b"/other.bin" not in served, "the held request reached the origin"
