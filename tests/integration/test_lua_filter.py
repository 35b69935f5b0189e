"""Integration tests for Lua filters (--filter FILE.lua, docs/FILTERS.md):
the example scripts in front of real peers (redis-server, an HTTP server
through curl, a byte-at-a-time client), the failure modes (a loop, a
memory hog, a syntax error), and a filter on SOCKS and ss-server
listeners (curl --socks5-hostname, shadowsocks-libev's ss-local).
"""

import os
import shutil
import socket
import subprocess
import time

import pytest

import peers
from conftest import REPO, SANITIZED, curl, free_port, listening, run_ferry, scaled
from peers import read_until_close, recv_exact
from test_ss import PW, libev, libev_local  # noqa: F401 - libev is a fixture

EXAMPLES = os.path.join(REPO, "examples", "filters")


def example(name):
    return os.path.join(EXAMPLES, name)


def script(workdir, name, text):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def need(prog):
    path = shutil.which(prog)
    if not path:
        pytest.skip("%s is not installed" % prog)
    return path


# --------------------------------------------------------------------------
# peers


def h_show_headers(srv, c, peer):
    """An HTTP server that answers each request with its header block."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d:
            return
        buf += d
    head = buf.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    srv.record(head)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(head), head))


def h_record_chunks(srv, c, peer):
    """Records every recv() as it came, and echoes it."""
    while True:
        d = c.recv(65536)
        if not d:
            return
        srv.record(d)
        c.sendall(d)


@pytest.fixture
def redis(workdir):
    """A redis-server on a free loopback port, no persistence."""
    path = need("redis-server")
    cli = need("redis-cli")
    proc = None
    for _ in range(3):
        port = free_port()
        proc = subprocess.Popen([path, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", workdir],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if peers.wait_until(lambda: proc.poll() is not None or listening(proc.pid, port), scaled(10)) \
                and proc.poll() is None:
            break
        proc.kill()
        proc.wait()
        proc = None
    assert proc, "redis-server did not start"

    def run(p, *args):
        r = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(p)] + list(args), capture_output=True,
                           timeout=scaled(10), stdin=subprocess.DEVNULL)
        return r.stdout.decode().strip() + r.stderr.decode().strip()

    yield {"port": port, "addr": "127.0.0.1:%d" % port, "cli": run}
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def filter_errors(f):
    return [line for line in f.log().splitlines() if "filter_error" in line]


# --------------------------------------------------------------------------
# (a) redis behind redis_readonly.lua


@pytest.mark.deadline(60)
def test_redis_readonly(ferry, redis):
    cli = redis["cli"]
    assert cli(redis["port"], "SET", "k", "v1") == "OK"
    f = ferry("relay", "-u", redis["addr"], "--filter", example("redis_readonly.lua"))
    assert cli(f.port, "GET", "k") == "v1"
    out = cli(f.port, "SET", "k", "v2")
    assert "READONLY You can't write against a read only replica." in out, out
    out = cli(f.port, "INCR", "counter")
    assert "READONLY" in out, out
    assert cli(redis["port"], "GET", "k") == "v1", "the write went through"
    assert cli(redis["port"], "EXISTS", "counter") == "0"
    assert cli(f.port, "GET", "k") == "v1"
    assert "refused set" in f.log(), f.log()[-2000:]


# --------------------------------------------------------------------------
# (b) add_header.lua, seen by an HTTP server through curl


@pytest.mark.deadline(60)
def test_add_header_curl(ferry, servers):
    web = servers(h_show_headers)
    f = ferry("relay", "-u", web.addr, "--filter", example("add_header.lua"))
    r = curl("http://%s/hello" % f.addr)
    assert r.returncode == 0, r.stderr
    body = r.stdout.decode()
    assert body.startswith("GET /hello HTTP/1.1\r\nX-Via-Ferry: 1\r\n"), body
    assert body.count("X-Via-Ferry") == 1


# --------------------------------------------------------------------------
# (c) line_buffer.lua with a client writing one byte at a time


@pytest.mark.deadline(60)
def test_line_buffer_byte_writes(ferry, servers, clients):
    srv = servers(h_record_chunks)
    f = ferry("relay", "-u", srv.addr, "--filter", example("line_buffer.lua"))
    s = f.connect()
    clients.append(s)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    text = b"first line\nsecond\nthird and last\n"
    for b in text:
        s.sendall(bytes([b]))
        time.sleep(0.002)
    assert recv_exact(s, len(text), "the lines echoed") == text.upper()
    chunks = srv.wait_events(1, scaled(5))
    assert b"".join(chunks) == text.upper()
    for c in chunks:
        assert c.endswith(b"\n"), "a partial line reached the server: %r" % chunks
    s.sendall(b"tail")
    s.shutdown(socket.SHUT_WR)
    assert read_until_close(s, scaled(5)) == (b"TAIL", "eof")


# --------------------------------------------------------------------------
# (d) a hook that never returns


LOOP = """
function on_data(s, dir, chunk, eof)
  if chunk:find("spin") then
    while true do end
  end
  return chunk
end
"""


@pytest.mark.deadline(60)
def test_infinite_loop_ends_one_session(ferry, identify, clients, workdir):
    srv = identify("A")
    path = script(workdir, "loop.lua", LOOP)
    f = ferry("relay", "-u", srv.addr, "--filter", path, "--threads", "1")
    bad = f.connect()
    clients.append(bad)
    assert recv_exact(bad, 5, "greeting") == b"ID:A\n"
    good = f.connect()
    clients.append(good)
    assert recv_exact(good, 5, "greeting") == b"ID:A\n"
    t0 = time.monotonic()
    bad.sendall(b"please spin\n")
    good.sendall(b"hello\n")
    assert recv_exact(good, 6, "echo through the other session") == b"hello\n"
    read_until_close(bad, scaled(10))
    assert time.monotonic() - t0 < scaled(10)
    ends = f.wait_sessions(1, pred=lambda d: d.get("end") == "filter_error")
    assert ends, f.log()[-3000:]
    errs = filter_errors(f)
    assert any("loop.lua:4: instruction budget exceeded" in e for e in errs), errs
    good.sendall(b"again\n")
    assert recv_exact(good, 6, "echo after the error") == b"again\n"
    # The worker is idle again: no CPU burnt by the stopped hook.
    c0 = f.cpu_seconds()
    time.sleep(1.0)
    assert f.cpu_seconds() - c0 < 0.3, "ferry still busy after the filter error"


# --------------------------------------------------------------------------
# (e) a hook that allocates without end


HOG = """
function on_data(s, dir, chunk, eof)
  if chunk:find("hog") then
    local t = {}
    while true do t[#t + 1] = chunk:rep(64) .. #t end
  end
  return chunk
end
"""


@pytest.mark.deadline(90)
def test_memory_hog_ends_one_session(ferry, identify, clients, workdir):
    srv = identify("A")
    path = script(workdir, "hog.lua", HOG)
    f = ferry("relay", "-u", srv.addr, "--filter", path, "--threads", "1")
    rss0 = f.rss_kib()
    for i in range(3):
        s = f.connect()
        clients.append(s)
        assert recv_exact(s, 5, "greeting") == b"ID:A\n"
        s.sendall(b"hog %d\n" % i)
        read_until_close(s, scaled(20))
    ends = f.wait_sessions(3, pred=lambda d: d.get("end") == "filter_error")
    assert len(ends) == 3, f.log()[-3000:]
    errs = filter_errors(f)
    assert any("hog.lua:" in e and "memory" in e for e in errs), errs
    # One state per worker, capped at 64 MiB: never much more than that.
    # AddressSanitizer keeps freed blocks in a 256 MiB quarantine and adds
    # its shadow memory; without the cap the hog would take gigabytes.
    bound = (640 if SANITIZED else 100) * 1024
    assert f.rss_kib() - rss0 < bound, "RSS grew from %d to %d KiB" % (rss0, f.rss_kib())
    s = f.connect()
    clients.append(s)
    assert recv_exact(s, 5, "greeting") == b"ID:A\n"
    s.sendall(b"fine\n")
    assert recv_exact(s, 5, "echo after the memory error") == b"fine\n"


# --------------------------------------------------------------------------
# (f) a syntax error at start


@pytest.mark.deadline(30)
def test_syntax_error_exit_2(workdir):
    path = script(workdir, "bad.lua", "function on_data(s)\n  return 1 +\nend\n")
    r = run_ferry("relay", "-l", "127.0.0.1:%d" % free_port(), "-u", "127.0.0.1:1", "--filter", path)
    assert r.returncode == 2, r
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert "%s:3:" % path in lines[0], lines
    r = run_ferry("relay", "-l", "127.0.0.1:%d" % free_port(), "-u", "127.0.0.1:1", "--filter",
                  os.path.join(workdir, "missing.lua"))
    assert r.returncode == 2 and b"missing.lua" in r.stderr, r


@pytest.mark.deadline(30)
def test_check_loads_filters(workdir):
    bad = script(workdir, "bad.lua", "x = = 1\n")
    conf = script(workdir, "f.yaml", "listeners:\n  - name: r\n    mode: relay\n    listen: 127.0.0.1:%d\n"
                  "    upstream: 127.0.0.1:1\n    filter: %s\n" % (free_port(), bad))
    r = run_ferry("check", conf)
    assert r.returncode == 1, r
    assert ("%s:1:" % bad) in r.stderr.decode(), r.stderr
    with open(bad, "w") as fh:
        fh.write("function on_data(s, dir, chunk) return chunk end\n")
    r = run_ferry("check", conf)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------
# (g) SOCKS and ss-server listeners


@pytest.mark.deadline(60)
def test_filter_on_socks(ferry, servers):
    web = servers(h_show_headers)
    f = ferry("socks", "--filter", example("add_header.lua"))
    r = curl("--socks5-hostname", f.addr, "http://localhost:%d/s" % web.port)
    assert r.returncode == 0, r.stderr
    assert "X-Via-Ferry: 1\r\n" in r.stdout.decode(), r.stdout


@pytest.mark.deadline(60)
def test_filter_on_ss_server(ferry, servers, libev, fakedns):  # noqa: F811 - libev is a fixture
    web = servers(h_show_headers)
    dns = fakedns(records={"web.ferry.test": ["127.0.0.1"]})
    f = ferry("ss-server", "-k", PW, "--dns-server", dns.addr, "--drain-timeout", "1s",
              "--filter", example("add_header.lua"))
    loc = libev_local(libev, f.addr)
    r = curl("--socks5-hostname", loc.addr, "http://web.ferry.test:%d/ss" % web.port)
    assert r.returncode == 0, (r.stderr, f.log()[-2000:])
    assert "X-Via-Ferry: 1\r\n" in r.stdout.decode(), r.stdout
