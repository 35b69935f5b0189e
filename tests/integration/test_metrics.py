"""Integration tests for --metrics (docs/METRICS.md): the scrape is valid
for `promtool check metrics`, counts what a known set of connections did
(accepted, refused by reason, bytes, handshake failures), holds no secret,
and a real Prometheus server scraping ferry every second answers a query
with the expected count.

Prometheus and promtool come with Debian's `prometheus` package
(scripts/install-deps); the tests are skipped without them.
"""

import json
import os
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import closed_port, free_port, need, run_ferry, scaled
from peers import recv_exact, recv_line

USER, PASS = "alice", "s3cr3t-Pa55"
SS_PW = "ss-Very-Secret-Key-9"


def scrape(addr):
    """The text at addr's /metrics; waits for the socket (ferry binds it
    after its listeners, which is what the harness waits for)."""
    deadline = time.monotonic() + scaled(5)
    while True:
        try:
            with urllib.request.urlopen("http://%s/metrics" % addr, timeout=scaled(5)) as r:
                assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                return r.read().decode()
        except urllib.error.URLError as e:
            if not isinstance(e.reason, ConnectionRefusedError) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def value(text, name, **labels):
    """The sample name{labels...} (labels a subset, in any order), or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, v = line.rpartition(" ")
        if series.split("{")[0] != name:
            continue
        if all('%s="%s"' % kv in series for kv in labels.items()):
            return float(v)
    return None


def wait_value(addr, name, want, timeout=5.0, **labels):
    deadline = time.monotonic() + scaled(timeout)
    while True:
        got = value(scrape(addr), name, **labels)
        if got == want or time.monotonic() > deadline:
            assert got == want, "%s%s: %r, want %r" % (name, labels, got, want)
            return
        time.sleep(0.05)


def promtool_ok(text):
    need("promtool")
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=scaled(20))
    assert r.returncode == 0, "promtool: %s%s" % (r.stdout.decode(), r.stderr.decode())


def s5_open(f, port, user=None, pw=None):
    """SOCKS5 CONNECT to 127.0.0.1:port; the socket, or the reply code."""
    s = f.connect()
    s.sendall(b"\x05\x01" + (b"\x02" if user else b"\x00"))
    method = recv_exact(s, 2)[1]
    if user:
        assert method == 2
        s.sendall(b"\x01" + bytes([len(user)]) + user.encode() + bytes([len(pw)]) + pw.encode())
        if recv_exact(s, 2)[1] != 0:
            s.close()
            return "auth"
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", port))
    rep = recv_exact(s, 10)
    if rep[1] != 0:
        s.close()
        return rep[1]
    return s


def test_socks_scrape_valid_counts_and_no_secret(ferry, identify):
    up = identify("A")
    maddr = "127.0.0.1:%d" % free_port()
    f = ferry("socks", "--user", "%s:%s" % (USER, PASS), "--metrics", maddr, "--metrics-users", "--threads", "2")
    s = s5_open(f, up.port, USER, PASS)
    assert recv_line(s) == b"ID:A\n"
    s.sendall(b"x" * 1000)
    assert recv_exact(s, 1000) == b"x" * 1000
    s.close()
    assert s5_open(f, up.port, USER, "wrong-" + PASS) == "auth"
    assert s5_open(f, closed_port(), USER, PASS) == 5       # connection refused
    f.wait_sessions(3)

    wait_value(maddr, "ferry_listener_current_connections", 0, listener="socks")
    text = scrape(maddr)
    promtool_ok(text)
    assert PASS not in text
    assert value(text, "ferry_listener_connections_total", listener="socks") == 3
    assert value(text, "ferry_listener_refused_connections_total", listener="socks", reason="auth") == 1
    assert value(text, "ferry_handshake_failures_total", proto="socks", reason="auth_failed") == 1
    assert value(text, "ferry_handshake_failures_total", proto="socks", reason="connect_refused") == 1
    assert value(text, "ferry_session_ends_total", listener="socks", reason="client_closed") == 1
    assert value(text, "ferry_received_bytes_total", listener="socks", direction="up") == 1000
    # Written, as on the wire: to clients the SOCKS replies too (method 2 + auth 2 + request 10 for the
    # good session, 2 + 2 for the wrong password, 2 + 2 + 10 for the refused one) and "ID:A\n" + echo.
    assert value(text, "ferry_sent_bytes_total", listener="socks", direction="down") == 1005 + 14 + 4 + 14
    assert value(text, "ferry_sent_bytes_total", listener="socks", direction="up") == 1000
    assert value(text, "ferry_session_duration_seconds_count", listener="socks") == 3
    # Only the user who authenticated; the wrong password counts under no user.
    assert value(text, "ferry_user_sessions_total", listener="socks", user=USER) == 2
    assert value(text, "ferry_build_info") == 1
    assert value(text, "process_open_fds") > 0
    assert value(text, "process_resident_memory_bytes") > 0


def test_ss_server_probe_counted_key_never_shown(ferry):
    maddr = "127.0.0.1:%d" % free_port()
    f = ferry("ss-server", "-k", SS_PW, "-m", "aes-128-gcm", "--handshake-timeout", "400ms",
              "--metrics", maddr, drain=False)
    s = f.connect()
    s.sendall(os.urandom(80))          # not this key's stream: a probe
    wait_value(maddr, "ferry_handshake_failures_total", 1, proto="ss-server", reason="probe")
    s.close()
    text = scrape(maddr)
    promtool_ok(text)
    assert SS_PW not in text


def test_metrics_refuses_public_address_and_other_paths(ferry):
    r = run_ferry("socks", "-l", "127.0.0.1:%d" % free_port(), "--metrics", "0.0.0.0:%d" % free_port())
    assert r.returncode != 0 and b"--metrics-open" in r.stderr
    maddr = "127.0.0.1:%d" % free_port()
    ferry("socks", "--metrics", maddr)
    scrape(maddr)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen("http://%s/proxies" % maddr, timeout=scaled(5))
    assert e.value.code == 404


def test_api_serves_metrics_too(ferry):
    api = "127.0.0.1:%d" % free_port()
    ferry("relay", "-u", "127.0.0.1:9", "--api", api)
    text = scrape(api)
    promtool_ok(text)
    assert value(text, "ferry_server_up", listener="relay", server="127.0.0.1:9") == 1


# --------------------------------------------------------------------------
# a real Prometheus server


@pytest.fixture
def prometheus(tmp_path):
    """prometheus(target) -> query(expr): a Prometheus server on loopback
    scraping target every second (its own temporary storage)."""
    need("prometheus")
    procs = []

    def start(target):
        port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                       "scrape_configs:\n  - job_name: ferry\n    static_configs:\n"
                       "      - targets: ['%s']\n" % target)
        log = open(tmp_path / "prometheus.log", "wb")
        p = subprocess.Popen(["prometheus", "--config.file=%s" % cfg, "--storage.tsdb.path=%s" % (tmp_path / "data"),
                              "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        procs.append(p)

        def query(expr):
            url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": expr}))
            try:
                with urllib.request.urlopen(url, timeout=scaled(2)) as r:
                    res = json.load(r)["data"]["result"]
            except (OSError, ValueError, KeyError):
                return None
            return float(res[0]["value"][1]) if res else None
        return query

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_query(query, expr, want, timeout=20.0):
    deadline = time.monotonic() + scaled(timeout)
    got = None
    while time.monotonic() < deadline:
        got = query(expr)
        if got == want:
            return
        time.sleep(0.25)
    assert got == want, "prometheus: %s = %r, want %r" % (expr, got, want)


def test_prometheus_scrapes_known_counts(ferry, identify, prometheus):
    up = identify("A")
    maddr = "127.0.0.1:%d" % free_port()
    f = ferry("relay", "-u", "127.0.0.1:%d" % up.port, "--metrics", maddr, "--threads", "2",
              "--deny", "127.0.0.2", "--maxconn", "2")
    query = prometheus(maddr)
    n = 5
    for _ in range(n):
        c = f.connect()
        assert recv_line(c) == b"ID:A\n"
        c.sendall(b"y" * 100)
        assert recv_exact(c, 100) == b"y" * 100
        c.close()
        # Its slot comes back when ferry has seen the close (both ways):
        # with --maxconn 2, two not yet given back would refuse the next.
        wait_value(maddr, "ferry_listener_current_connections", 0, listener="relay")
    # Refused: one by the ACL (source 127.0.0.2), one over --maxconn 2
    # once the sessions above have given their slots back.
    wait_value(maddr, "ferry_listener_current_connections", 0, listener="relay")
    c = f.connect(source="127.0.0.2")
    assert c.recv(16) == b""
    c.close()
    held = [f.connect(), f.connect()]
    for c in held:
        assert recv_line(c) == b"ID:A\n"
    c = f.connect()
    assert c.recv(16) == b""
    c.close()
    for c in held:
        c.close()
    f.wait_sessions(n + 2)

    wait_query(query, 'ferry_listener_connections_total{listener="relay"}', n + 2)
    wait_query(query, 'ferry_listener_refused_connections_total{listener="relay",reason="acl"}', 1)
    wait_query(query, 'ferry_listener_refused_connections_total{listener="relay",reason="limit"}', 1)
    wait_query(query, 'ferry_received_bytes_total{listener="relay",direction="up"}', n * 100)
    wait_query(query, 'ferry_server_connections_total{listener="relay"}', n + 2)
    wait_query(query, 'ferry_listener_current_connections{listener="relay"}', 0)
    wait_query(query, 'up{job="ferry"}', 1)
