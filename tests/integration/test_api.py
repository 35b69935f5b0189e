"""ferry --api: toxiproxy's HTTP API.

The real client (toxiproxy-node-client from npm, pinned in node/package.json)
drives a whole scenario on open connections; urllib checks status codes and
error shapes; raw sockets check keep-alive, pipelining and bounds.
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import urllib.error
import urllib.request

import pytest

import peers
from conftest import HERE, free_port, listening, run_ferry, scaled

NODE_DIR = os.path.join(HERE, "node")


def api_start(ferry, *args, upstream=None, mode="relay"):
    port = free_port()
    up = upstream or "127.0.0.1:%d" % free_port()
    target = ["-u", up] if mode == "relay" else []
    f = ferry(mode, *target, "--api", "127.0.0.1:%d" % port, "--threads", "2", *args)
    f.api = "http://127.0.0.1:%d" % port
    peers.wait_until(lambda: listening(f.pid, port), scaled(5))
    return f


def call(f, method, path, body=None, headers=None):
    """(status, parsed JSON or None)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(f.api + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=scaled(10)) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


@pytest.fixture(scope="session")
def node_client():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("needs node and npm (Debian packages nodejs, npm; scripts/install-deps)")
    mod = os.path.join(NODE_DIR, "node_modules", "toxiproxy-node-client")
    if not os.path.isdir(mod):
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, timeout=300)
        if r.returncode != 0:
            pytest.fail("npm ci failed in %s:\n%s" % (NODE_DIR, r.stderr.decode(errors="replace")[-3000:]))
    return node


@pytest.mark.deadline(90)
def test_toxiproxy_node_client_drives_proxies_and_toxics_on_open_connections(ferry, servers, node_client):
    echo = servers(peers.h_echo)
    f = api_start(ferry)
    env = dict(os.environ, FERRY_TIME_SCALE=str(scaled(1)))
    r = subprocess.run([node_client, os.path.join(NODE_DIR, "api_client.js"), f.api, echo.addr, "relay"],
                       capture_output=True, timeout=scaled(60), env=env)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, out
    assert "ALL OK" in out
    # Sessions the API ended say so.
    assert f.wait_sessions(1, pred=lambda s: s.get("end") == "api")


def test_proxy_errors_have_toxiproxys_shapes(ferry):
    f = api_start(ferry)
    assert call(f, "GET", "/proxies/nope") == (404, {"error": "proxy not found", "status": 404})
    st, body = call(f, "POST", "/proxies", {"name": "a"})
    assert (st, body) == (400, {"error": "missing required field: upstream", "status": 400})
    st, body = call(f, "POST", "/proxies", {"upstream": "127.0.0.1:1"})
    assert (st, body["error"]) == (400, "missing required field: name")
    st, body = call(f, "POST", "/proxies", b"{not json")
    assert st == 400 and body["error"].startswith("bad request body")
    st, body = call(f, "POST", "/proxies", {"name": "a", "listen": "localhost:0", "upstream": "127.0.0.1:1"})
    assert st == 201 and body["enabled"] is True and body["toxics"] == []
    assert call(f, "POST", "/proxies", {"name": "a", "upstream": "127.0.0.1:1"}) == \
        (409, {"error": "proxy already exists", "status": 409})
    # The relay's own port is taken: toxiproxy answers 500 with the bind error,
    # ferry names its listener that has the address (not "another process").
    st, body = call(f, "POST", "/proxies", {"name": "b", "listen": "%s" % f.addr, "upstream": "127.0.0.1:1"})
    assert (st, body["error"]) == (500, "cannot listen on %s: address in use by listener 'relay'" % f.addr), body
    st, body = call(f, "POST", "/proxies", {"name": "b", "listen": f.api[len("http://"):], "upstream": "127.0.0.1:1"})
    assert (st, body["error"]) == (500, "cannot listen on %s: address in use by the API" % f.api[7:]), body
    # Moving a to the relay's address is refused and leaves a where it was.
    before = call(f, "GET", "/proxies/a")[1]["listen"]
    st, body = call(f, "POST", "/proxies/a", {"listen": "%s" % f.addr})
    assert (st, body["error"]) == (500, "cannot listen on %s: address in use by listener 'relay'" % f.addr), body
    assert call(f, "GET", "/proxies/a")[1]["listen"] == before
    assert "b" not in call(f, "GET", "/proxies")[1]
    assert call(f, "GET", "/nothing")[0] == 404
    assert call(f, "DELETE", "/proxies")[0] in (404, 405)   # no such route: either answer is an error
    assert call(f, "GET", "/proxies", headers={"User-Agent": "Mozilla/5.0"}) == \
        (403, {"error": "User agent not allowed", "status": 403})
    assert call(f, "DELETE", "/proxies/a") == (204, None)
    assert call(f, "DELETE", "/proxies/a")[0] == 404


def test_proxy_names_follow_the_config_files_rule(ferry):
    """A proxy's name is logged as listener=NAME on each session line and is
    one segment of /proxies/NAME: a newline, space or '=' in it would forge
    lines or fields, a '/' would make it unreachable. The API takes the
    config file's rule: 1-31 of [A-Za-z0-9._-] (issues #20 8, #16 2)."""
    f = api_start(ferry)
    bad = ("a\nX info fake=1", "a b", "a=b", "a/b", "a:b", "", "n" * 32, "caf\u00e9")
    for name in bad:
        st, body = call(f, "POST", "/proxies", {"name": name, "upstream": "127.0.0.1:1"})
        assert st == 400 and body == {"error": body["error"], "status": 400} and "name" in body["error"], \
            (name, st, body)
    assert not set(bad) & set(call(f, "GET", "/proxies")[1])
    for name in ("a.b-c_d", "N" * 31):
        st, _ = call(f, "POST", "/proxies", {"name": name, "upstream": "127.0.0.1:1"})
        assert st == 201, name


def test_toxic_errors_have_toxiproxys_shapes(ferry):
    f = api_start(ferry)
    p = "/proxies/relay/toxics"
    assert call(f, "POST", p, {"type": "nope"}) == (400, {"error": "invalid toxic type", "status": 400})
    st, body = call(f, "POST", p, {"type": "latency", "stream": "sideways"})
    assert st == 400 and body["error"].startswith("stream was invalid")
    st, body = call(f, "POST", p, {"type": "latency", "attributes": {"latency": "fast"}})
    assert st == 400 and body["error"].startswith("bad request body")
    st, body = call(f, "POST", p, {"type": "latency", "stream": "upstream", "attributes": {"latency": 5}})
    assert st == 200 and body == {"name": "latency_upstream", "type": "latency", "stream": "upstream",
                                  "toxicity": 1.0, "attributes": {"latency": 5, "jitter": 0}}
    assert call(f, "POST", p, {"type": "latency", "stream": "upstream"}) == \
        (409, {"error": "toxic already exists", "status": 409})
    assert call(f, "GET", p + "/nope") == (404, {"error": "toxic not found", "status": 404})
    st, body = call(f, "POST", p + "/latency_upstream", {"toxicity": 0.5, "attributes": {"jitter": 2}})
    assert st == 200 and body["toxicity"] == 0.5 and body["attributes"] == {"latency": 5, "jitter": 2}
    assert call(f, "GET", "/proxies/relay")[1]["toxics"] == [body]
    assert call(f, "DELETE", p + "/latency_upstream") == (204, None)
    assert call(f, "GET", p) == (200, [])


def test_cli_toxics_show_through_the_api_and_reset_removes_them(ferry):
    f = api_start(ferry, "--toxic", "latency:latency=100,jitter=10", "--toxic", "bandwidth:rate=50,stream=upstream")
    st, toxics = call(f, "GET", "/proxies/relay/toxics")
    assert st == 200
    by = {t["type"]: t for t in toxics}
    assert by["latency"]["attributes"] == {"latency": 100, "jitter": 10}
    assert by["latency"]["stream"] == "downstream"
    assert by["bandwidth"]["attributes"] == {"rate": 50} and by["bandwidth"]["stream"] == "upstream"
    st, proxies = call(f, "GET", "/proxies")
    assert proxies["relay"]["listen"] == f.addr and proxies["relay"]["toxics"] == toxics
    assert call(f, "POST", "/reset") == (204, None)
    assert call(f, "GET", "/proxies/relay/toxics") == (200, [])


def test_populate_creates_and_updates(ferry):
    f = api_start(ferry)
    st, body = call(f, "POST", "/populate", [{"name": "x", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
                                             {"name": "y", "upstream": "127.0.0.1:2", "enabled": False}])
    assert st == 201 and [p["name"] for p in body["proxies"]] == ["x", "y"]
    assert body["proxies"][1]["enabled"] is False
    st, body = call(f, "POST", "/populate", [{"name": "y", "upstream": "127.0.0.1:3"}, {"name": "z"}])
    assert st == 400 and body["error"] == "missing required field: upstream"
    assert [p["upstream"] for p in body["proxies"]] == ["127.0.0.1:3"]


def test_update_moves_listener_and_upstream(ferry, servers):
    a, b = servers(peers.h_identify, name="A"), servers(peers.h_identify, name="B")
    f = api_start(ferry, upstream=a.addr)
    port = free_port()
    st, body = call(f, "POST", "/proxies/relay", {"listen": "127.0.0.1:%d" % port, "upstream": b.addr})
    assert st == 200 and body["listen"] == "127.0.0.1:%d" % port and body["upstream"] == b.addr
    s = peers.connect("127.0.0.1", port)
    assert peers.recv_line(s).strip() == b"ID:B"
    s.close()
    with pytest.raises(OSError):
        peers.connect(f.host, f.port, timeout=2)


def raw_status(f, headers):
    """Status of GET /version sent with exactly these header lines."""
    port = int(f.api.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=scaled(5))
    s.sendall(b"GET /version HTTP/1.1\r\n" + b"".join(h + b"\r\n" for h in headers) + b"Connection: close\r\n\r\n")
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_requests_a_web_page_may_send_are_refused(ferry):
    """A page cannot drive the loopback API: not by its Origin, its
    Sec-Fetch-Site, nor by rebinding its own name to 127.0.0.1 (Host)."""
    f = api_start(ferry)
    port = int(f.api.rsplit(":", 1)[1])
    for h in ([b"Host: evil.example"], [b"Host: evil.example:%d" % port], [b"Host: 127.0.0.1", b"Host: evil.example"],
              [b"Host: 127.0.0.1:%d" % port, b"Origin: http://evil.example"],
              [b"Host: 127.0.0.1:%d" % port, b"Sec-Fetch-Site: cross-site"],
              [b"Host: localhost", b"Sec-Fetch-Site: same-site"]):
        st, body = raw_status(f, h)
        assert st == 403 and body["status"] == 403 and "not allowed" in body["error"], (h, body)
    st, body = call(f, "POST", "/proxies", {"name": "o", "upstream": "127.0.0.1:1"},
                    headers={"Origin": "http://127.0.0.1:%d" % port})
    assert (st, body) == (403, {"error": "Origin not allowed", "status": 403})
    assert "o" not in call(f, "GET", "/proxies")[1]
    for h in ([b"Host: localhost:%d" % port], [b"Host: LOCALHOST"], [b"Host: 127.0.0.1:%d" % port],
              [b"Host: localhost", b"Sec-Fetch-Site: same-origin"], []):
        assert raw_status(f, h)[0] == 200, h
    # urllib as a client of http://localhost:PORT, as toxiproxy clients are often set up.
    f.api = "http://localhost:%d" % port
    assert call(f, "GET", "/version")[0] == 200


def s5_connect_v4(host, port, dest_port):
    """SOCKS5 CONNECT to 127.0.0.1:dest_port without auth: (socket, reply code)."""
    s = peers.connect(host, port)
    s.sendall(b"\x05\x01\x00")
    assert peers.recv_exact(s, 2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", dest_port))
    return s, peers.recv_exact(s, 10)[1]


@pytest.mark.parametrize("path", ["/proxies/socks", "/populate"])
def test_moving_an_open_socks_listener_to_a_public_address_is_refused(ferry, identify, path):
    """`ferry socks -l 0.0.0.0:P` is refused at start-up; the API must not
    get there by moving a loopback listener."""
    up = identify("A")
    f = api_start(ferry, mode="socks")
    port = free_port()
    move = {"listen": "0.0.0.0:%d" % port}
    st, body = call(f, "POST", path, [dict(move, name="socks")] if path == "/populate" else move)
    assert st == 400 and body["status"] == 400 and "open SOCKS proxy" in body["error"], body
    st, p = call(f, "GET", "/proxies/socks")
    assert st == 200 and p["listen"] == f.addr and p["enabled"] is True
    assert not listening(f.pid, port)
    s, rep = s5_connect_v4(f.host, f.port, up.port)
    assert rep == 0 and peers.recv_line(s).strip() == b"ID:A"
    s.close()


def test_moving_a_socks_listener_to_a_public_address_adds_the_default_denies(ferry, identify):
    """With an allow list it may go public, but then, as at start-up, it may
    not reach loopback (SSRF) unless told to."""
    up = identify("A")
    f = api_start(ferry, "--allow", "127.0.0.0/8", mode="socks")
    s, rep = s5_connect_v4(f.host, f.port, up.port)
    assert rep == 0
    s.close()
    port = free_port()
    assert call(f, "POST", "/proxies/socks", {"listen": "0.0.0.0:%d" % port})[0] == 200
    accepted = up.accepted
    s, rep = s5_connect_v4("127.0.0.1", port, up.port)
    assert rep == 2, "a public SOCKS listener reached loopback: reply %#04x" % rep
    s.close()
    assert up.accepted == accepted


def test_http_keep_alive_pipelining_and_bounds(ferry):
    f = api_start(ferry)
    port = int(f.api.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=scaled(5))
    req = b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    s.sendall(req * 3)
    got = b""
    while got.count(b"HTTP/1.1 200") < 3:
        chunk = s.recv(65536)
        assert chunk, got
        got += chunk
    # Still open (keep-alive): a chunked POST works too.
    s.sendall(b"POST /proxies HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\n{\"nam\r\n0\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 400")
    s.close()
    s = socket.create_connection(("127.0.0.1", port), timeout=scaled(5))
    s.sendall(b"POST /proxies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2000000\r\n\r\n")
    r = s.recv(65536)
    assert r.startswith(b"HTTP/1.1 413"), r
    assert s.recv(100) == b""    # and closed
    s.close()
    s = socket.create_connection(("127.0.0.1", port), timeout=scaled(5))
    s.sendall(b"GET /version HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 431")
    s.close()


def test_api_refuses_a_public_address_unless_open():
    r = run_ferry("relay", "-l", "127.0.0.1:%d" % free_port(), "-u", "127.0.0.1:1", "--api", "0.0.0.0:%d" % free_port())
    assert r.returncode == 2 and b"--api-open" in r.stderr


@pytest.mark.deadline(60)
def test_drain_with_runtime_listeners_and_open_sessions(ferry, servers):
    """SIGTERM with API-made listeners holding sessions: exits 0 (checked at
    teardown), after closing them at --drain-timeout."""
    echo = servers(peers.h_echo)
    f = api_start(ferry, upstream=echo.addr)
    socks = []
    for i in range(3):
        st, body = call(f, "POST", "/proxies", {"name": "d%d" % i, "listen": "127.0.0.1:0", "upstream": echo.addr})
        assert st == 201
        host, port = body["listen"].rsplit(":", 1)
        s = peers.connect(host, int(port))
        s.sendall(b"hi")
        assert peers.recv_exact(s, 2) == b"hi"
        socks.append(s)
    assert call(f, "POST", "/proxies/d1/toxics", {"type": "latency", "attributes": {"latency": 10}})[0] == 200
    call(f, "DELETE", "/proxies/d2")
    assert peers.wait_closed(socks[2], scaled(3))[0] in ("eof", "reset")
    problems = f.stop(timeout=scaled(10))
    assert not problems, problems + [f.log()[-3000:]]
    for s in socks:
        s.close()


SHOUT = """
function on_data(s, dir, chunk, eof)
  return chunk:upper()
end
"""


@pytest.mark.deadline(60)
def test_lua_toxic_through_toxiproxy_node_client(ferry, servers, node_client, workdir):
    """A protocol-aware toxic without a recompile: type lua, attribute file."""
    echo = servers(peers.h_echo)
    script = os.path.join(workdir, "shout.lua")
    with open(script, "w") as fh:
        fh.write(SHOUT)
    f = api_start(ferry)
    r = subprocess.run([node_client, os.path.join(NODE_DIR, "lua_toxic.js"), f.api, echo.addr, script],
                       capture_output=True, timeout=scaled(40))
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, out + f.log()[-2000:]
    assert "ALL OK" in out


def test_lua_toxic_on_the_command_line(ferry, servers, workdir):
    echo = servers(peers.h_echo)
    script = os.path.join(workdir, "shout.lua")
    with open(script, "w") as fh:
        fh.write(SHOUT)
    f = ferry("relay", "-u", echo.addr, "--toxic", "lua:file=%s,stream=upstream" % script)
    s = f.connect()
    s.sendall(b"quiet please")
    s.shutdown(socket.SHUT_WR)
    assert peers.read_until_close(s, scaled(5)) == (b"QUIET PLEASE", "eof")
    s.close()


def test_lua_toxic_with_a_bad_script_is_a_flag_error(ferry, workdir):
    script = os.path.join(workdir, "bad.lua")
    with open(script, "w") as fh:
        fh.write("function on_data(\n")
    r = run_ferry("relay", "-u", "127.0.0.1:9", "--toxic", "lua:file=%s" % script)
    assert r.returncode == 2
    err = r.stderr.decode()
    assert "--toxic" in err and "bad.lua:2:" in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_api_changes_are_logged(ferry):
    f = api_start(ferry)
    st, _ = call(f, "POST", "/proxies", {"name": "audit", "listen": "localhost:0", "upstream": "127.0.0.1:1"})
    assert st == 201
    st, _ = call(f, "POST", "/proxies/audit/toxics", {"type": "latency", "attributes": {"latency": 5}})
    assert st == 200
    st, _ = call(f, "GET", "/proxies")
    assert st == 200
    st, _ = call(f, "DELETE", "/proxies/audit")
    assert st == 204
    peers.wait_until(lambda: "DELETE /proxies/audit" in f.log(), scaled(5))
    lines = [ln for ln in f.log().splitlines() if "api: " in ln]
    assert any("POST /proxies -> 201" in ln for ln in lines), lines
    assert any("POST /proxies/audit/toxics -> 200" in ln for ln in lines), lines
    assert any("DELETE /proxies/audit -> 204" in ln for ln in lines), lines
    assert not any("GET /proxies" in ln for ln in lines), lines     # reads only at debug
