"""Integration tests for `ferry relay` through real clients and peers."""

import collections
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import peers
from conftest import (LOG_TS, SANITIZED, closed_port, curl, file_sha256, free_port, listening, need,
                      run_ferry, scaled, thread_count)
from peers import read_until_close, recv_exact, recv_line, sha256, wait_closed

MiB = 1024 * 1024
SESSION_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info sess=\d+ listener=relay "
                          r"client=\S+ upstream=\S+ up=\d+ down=\d+ dur_ms=\d+ end=[a-z_]+$")


def relay(ferry, *upstreams, args=(), **kw):
    a = ["relay"]
    for u in upstreams:
        a += ["-u", u]
    return ferry(*a, *args, **kw)


def one(sessions, what):
    assert len(sessions) == 1, "expected exactly one session log line for %s, got %d: %s" % (
        what, len(sessions), [s["_line"] for s in sessions])
    return sessions[0]


# --------------------------------------------------------------------------
# integrity


@pytest.mark.deadline(60)
def test_download_20mb_through_curl_sha256(ferry, http4, bigfile, workdir):
    f = relay(ferry, "127.0.0.1:%d" % http4.port)
    out = os.path.join(workdir, "dl.bin")
    r = curl("-o", out, "http://%s/big.bin" % f.addr, timeout=60)
    assert r.returncode == 0, "curl through ferry failed: rc=%d %s" % (r.returncode, r.stderr.decode())
    assert os.path.getsize(out) == bigfile["big_len"], "downloaded size differs"
    assert file_sha256(out) == bigfile["big"], "sha256 of the 20 MB download differs"
    s = one(f.wait_sessions(1), "the download")
    assert int(s["down"]) > bigfile["big_len"], "log down= should count the 20 MB body: %s" % s["_line"]
    assert 0 < int(s["up"]) < 4096, "log up= should count the HTTP request: %s" % s["_line"]


@pytest.mark.deadline(60)
def test_upload_20mb_sha256(ferry, servers):
    sink = servers(peers.h_sink_hash)
    f = relay(ferry, sink.addr)
    data = os.urandom(20 * MiB)
    c = f.connect(timeout=scaled(30))
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    line = recv_line(c, what="sink digest")
    n, h = line.split()
    assert int(n) == len(data), "upstream received %s bytes, client sent %d" % (n, len(data))
    assert h.decode() == sha256(data), "sha256 at the upstream differs from what the client sent"
    rest, how = read_until_close(c, scaled(5))
    assert (rest, how) == (b"", "eof"), "after the digest the session should end with EOF, got %r %s" % (rest[:40], how)
    s = one(f.wait_sessions(1), "the upload")
    assert int(s["up"]) == len(data), "log up= %s, expected %d" % (s["up"], len(data))
    assert int(s["down"]) == len(line), "log down= %s, expected %d" % (s["down"], len(line))


@pytest.mark.deadline(60)
def test_full_duplex_16mb_each_way(ferry, servers):
    down_data = os.urandom(16 * MiB)
    up_data = os.urandom(16 * MiB)

    def handler(srv, c, peer):
        t = threading.Thread(target=lambda: (c.sendall(down_data), c.shutdown(socket.SHUT_WR)), daemon=True)
        t.start()
        got = bytearray()
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            got += d
        t.join(30)
        srv.record(("got", len(got), sha256(bytes(got))))

    srv = servers(handler)
    f = relay(ferry, srv.addr)
    c = f.connect(timeout=scaled(30))
    sender = threading.Thread(target=lambda: (c.sendall(up_data), c.shutdown(socket.SHUT_WR)), daemon=True)
    sender.start()
    got, how = read_until_close(c, scaled(40))
    sender.join(scaled(10))
    assert how == "eof", "download side ended with %s after %d bytes" % (how, len(got))
    assert len(got) == len(down_data) and sha256(got) == sha256(down_data), \
        "upstream->client stream corrupted: %d bytes received" % len(got)
    ev = srv.wait_events(1, scaled(10))
    assert ev and ev[0] == ("got", len(up_data), sha256(up_data)), \
        "client->upstream stream corrupted: upstream saw %s" % (ev,)


# --------------------------------------------------------------------------
# half-close


@pytest.mark.deadline(30)
def test_half_close_client_eof_reaches_upstream_which_still_answers(ferry, servers):
    answer = os.urandom(3 * MiB)

    def handler(srv, c, peer):
        got = bytearray()
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
        srv.record(("eof", bytes(got)))
        c.sendall(answer)

    srv = servers(handler)
    f = relay(ferry, srv.addr)
    c = f.connect(timeout=scaled(10))
    req = os.urandom(100 * 1024)
    c.sendall(req)
    c.shutdown(socket.SHUT_WR)
    ev = srv.wait_events(1, scaled(5))
    assert ev, "upstream never saw EOF after the client's shutdown(SHUT_WR)"
    assert ev[0][1] == req, "upstream received %d bytes before EOF, expected the %d sent" % (len(ev[0][1]), len(req))
    got, how = read_until_close(c, scaled(10))
    assert how == "eof", "client should get the full answer then EOF, got %s after %d bytes" % (how, len(got))
    assert got == answer, "answer after half-close corrupted or cut: %d of %d bytes" % (len(got), len(answer))


@pytest.mark.deadline(30)
def test_half_close_upstream_eof_reaches_client_which_still_sends(ferry, servers):
    hello = b"hello-from-upstream\n" + os.urandom(512 * 1024)

    def handler(srv, c, peer):
        c.sendall(hello)
        c.shutdown(socket.SHUT_WR)
        got = bytearray()
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
        srv.record(("got", bytes(got)))

    srv = servers(handler)
    f = relay(ferry, srv.addr)
    c = f.connect(timeout=scaled(10))
    assert recv_exact(c, len(hello), "upstream greeting") == hello
    c.settimeout(scaled(5))
    try:
        eof = c.recv(1)
    except socket.timeout:
        raise AssertionError("upstream's shutdown(SHUT_WR) was not forwarded as EOF to the client")
    assert eof == b"", "expected EOF after the upstream half-closed, got %r" % eof
    payload = os.urandom(1 * MiB)
    c.sendall(payload)   # must still work: the client->upstream direction is open
    c.shutdown(socket.SHUT_WR)
    ev = srv.wait_events(1, scaled(10))
    assert ev, "upstream never got EOF/data after the client half-closed"
    assert ev[0][1] == payload, "upstream got %d bytes after its own half-close, expected %d" % (
        len(ev[0][1]), len(payload))
    _, how = read_until_close(c, scaled(5))
    assert how == "eof", "session should end cleanly once both sides are done, got %s" % how


# --------------------------------------------------------------------------
# early data: the client writes (and even half-closes) before ferry's connect
# to the upstream completes.  The upstream's accept queue is full (listen(0) +
# one filler), so ferry's SYN is dropped until we accept the filler; the
# retransmitted SYN (~1 s later) then completes the connect.


@pytest.mark.deadline(40)
def test_early_data_before_upstream_connect_completes(ferry):
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    filler = socket.socket()
    filler.connect(("127.0.0.1", port))
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
        pytest.skip("full accept queue does not make connect() hang here")
    except socket.timeout:
        pass
    finally:
        probe.close()
    try:
        f = relay(ferry, "127.0.0.1:%d" % port, args=["--connect-timeout", "10s"])
        c = f.connect(timeout=scaled(15))
        payload = b"".join(b"early-%06d|" % i for i in range(5000))   # 60 kB, ordered
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        t_sent = time.monotonic()
        time.sleep(0.3)
        lst.settimeout(scaled(10))
        fa, fpeer = lst.accept()
        assert fpeer[1] == filler.getsockname()[1], "first accepted connection should be the filler"
        fa.close()
        conn, peer = lst.accept()     # ferry's, after its SYN retransmit
        t_acc = time.monotonic()
        conn.settimeout(scaled(10))
        got = bytearray()
        while True:
            d = conn.recv(65536)
            if not d:
                break
            got += d
        assert bytes(got) == payload, "early data reordered/corrupted/lost: upstream got %d of %d bytes" % (
            len(got), len(payload))
        conn.sendall(b"late-answer")
        conn.close()
        got, how = read_until_close(c, scaled(5))
        assert (got, how) == (b"late-answer", "eof"), "client got %r (%s)" % (got[:60], how)
        assert t_acc - t_sent > 0.2, "scenario check: ferry's connect completed immediately, early data not exercised"
    finally:
        filler.close()
        lst.close()


# --------------------------------------------------------------------------
# connect failures


@pytest.mark.deadline(20)
def test_upstream_closing_at_once_closes_client(ferry, servers):
    srv = servers(lambda srv, c, peer: None)    # accept and close
    f = relay(ferry, srv.addr)
    c = f.connect()
    data, how = read_until_close(c, scaled(3))
    assert (data, how) == (b"", "eof"), "upstream closed without a byte: client should see EOF, got %r %s" % (data, how)
    c.close()
    s = one(f.wait_sessions(1), "upstream closed at once")
    assert s.get("end") == "upstream_closed", s["_line"]


@pytest.mark.deadline(30)
def test_clients_vanishing_while_connect_pending(ferry, blackhole, identify):
    """Clients that go away (FIN or RST) while ferry's upstream connect is
    still pending: every session must be cleaned up exactly once."""
    bh = blackhole()
    f = relay(ferry, bh.addr, args=["--connect-timeout", "1s"])
    base = f.fd_count()
    for i in range(40):
        c = f.connect()
        c.sendall(b"x" * 100)
        if i % 2:
            peers.set_linger0(c)
        c.close()
    ss = f.wait_sessions(40, timeout=6)
    assert len(ss) == 40, "expected 40 session lines, got %d" % len(ss)
    ends = collections.Counter(s.get("end") for s in ss)
    assert set(ends) <= {"client_closed", "client_reset", "connect_timeout"}, dict(ends)
    assert f.alive()
    assert peers.wait_until(lambda: f.fd_count() <= base + 4, scaled(3)), \
        "fds not released: %d now, %d at start" % (f.fd_count(), base)


@pytest.mark.deadline(40)
def test_refused_upstream_closes_client_promptly_and_ferry_keeps_serving(ferry, servers):
    port = closed_port()
    f = relay(ferry, "127.0.0.1:%d" % port, args=["--connect-timeout", "10s"])
    cs = [f.connect() for _ in range(10)]
    for i, c in enumerate(cs):
        data, how = read_until_close(c, scaled(5))
        assert how in ("eof", "reset") and data == b"", \
            "client %d: expected close on refused upstream, got %s with %r" % (i, how, data[:40])
    t0 = time.monotonic()
    c = f.connect()
    how, dt = wait_closed(c, scaled(5))
    assert how in ("eof", "reset") and dt < scaled(1.5), \
        "refused upstream: client should be closed promptly (<%.1fs, connect timeout is 10s), took %.2fs (%s)" % (
            scaled(1.5), time.monotonic() - t0, how)
    ss = f.wait_sessions(11)
    ends = collections.Counter(s.get("end") for s in ss)
    assert ends == {"connect_refused": 11}, "expected 11 sessions with end=connect_refused, got %s" % dict(ends)
    # the upstream comes up: ferry serves again
    srv = servers(peers.h_identify, port=port, name="late")
    c = f.connect()
    assert recv_line(c, what="ID after upstream came up") == b"ID:late\n"
    c.sendall(b"ping")
    assert recv_exact(c, 4) == b"ping"


@pytest.mark.deadline(30)
def test_unresolvable_upstream_logs_resolve_failed_and_its_name(ferry, fakedns, identify):
    """Issue #16, 9: an upstream name that does not resolve ends
    end=resolve_failed upstream=NAME:PORT (not connect_error upstream=-),
    also after the other server was tried; the name is sanitised."""
    dns = fakedns(records={})
    f = relay(ferry, "gone.ferry.invalid:8080", args=["--dns-server", dns.addr, "--retries", "0"])
    c = f.connect()
    how, _ = wait_closed(c, scaled(5))
    assert how in ("eof", "reset"), how
    s = one(f.wait_sessions(1), "an unresolvable upstream")
    assert (s.get("end"), s.get("upstream")) == ("resolve_failed", "gone.ferry.invalid:8080"), s["_line"]
    assert SESSION_LINE.match(s["_line"]), s["_line"]

    # two servers, the refused one tried first, the unresolvable one last
    port = closed_port()
    f2 = relay(ferry, "127.0.0.1:%d" % port, "gone2.ferry.invalid:81",
               args=["--dns-server", dns.addr, "--retries", "1", "--balance", "roundrobin"])
    ends = set()
    for _ in range(2):
        c = f2.connect()
        wait_closed(c, scaled(5))
    for s in f2.wait_sessions(2):
        ends.add((s.get("end"), s.get("upstream")))
    assert ("resolve_failed", "gone2.ferry.invalid:81") in ends, ends
    assert all(u != "-" for _, u in ends), ends


@pytest.mark.deadline(30)
def test_connect_timeout(ferry, blackhole):
    bh = blackhole()
    f = relay(ferry, bh.addr, args=["--connect-timeout", "1s"])
    c = f.connect()
    c.sendall(b"waiting for a connect that never completes")
    how, dt = wait_closed(c, scaled(8))
    assert how in ("eof", "reset"), "client not closed after --connect-timeout 1s (waited %.1fs)" % dt
    assert 0.8 <= dt <= 1 + scaled(2.5), "connect timeout of 1s took %.2fs" % dt
    s = one(f.wait_sessions(1), "connect timeout")
    assert s.get("end") == "connect_timeout", s["_line"]


@pytest.mark.deadline(30)
def test_connect_timeout_milliseconds(ferry, blackhole):
    bh = blackhole()
    f = relay(ferry, bh.addr, args=["--connect-timeout", "300ms"])
    c = f.connect()
    how, dt = wait_closed(c, scaled(5))
    assert how in ("eof", "reset") and 0.2 <= dt <= 0.3 + scaled(1.5), \
        "--connect-timeout 300ms: closed after %.2fs (%s)" % (dt, how)


# --------------------------------------------------------------------------
# resets


@pytest.mark.deadline(30)
def test_upstream_rst_propagates_to_client(ferry, servers):
    def handler(srv, c, peer):
        c.recv(100)
        peers.set_linger0(c)
        c.close()
        srv.record("rst")

    srv = servers(handler)
    f = relay(ferry, srv.addr)
    c = f.connect()
    c.sendall(b"trigger")
    assert srv.wait_events(1, scaled(5)), "upstream never got the trigger"
    data, how = read_until_close(c, scaled(5))
    assert how == "reset", "upstream RST should reach the client as ECONNRESET, client saw %s (%r)" % (how, data)
    s = one(f.wait_sessions(1), "upstream reset")
    assert s.get("end") == "upstream_reset", s["_line"]


@pytest.mark.deadline(30)
def test_client_rst_propagates_to_upstream(ferry, servers):
    def handler(srv, c, peer):
        c.sendall(b"ready\n")
        try:
            while c.recv(65536):
                pass
            srv.record("eof")
        except ConnectionResetError:
            srv.record("reset")
        except socket.timeout:
            srv.record("timeout")

    srv = servers(handler, conn_timeout=scaled(5))
    f = relay(ferry, srv.addr)
    c = f.connect()
    assert recv_line(c) == b"ready\n"
    c.sendall(b"x")
    time.sleep(0.1)
    peers.set_linger0(c)
    c.close()
    ev = srv.wait_events(1, scaled(6))
    assert ev == ["reset"], "client RST should reach the upstream as a reset, upstream saw %s" % ev
    s = one(f.wait_sessions(1), "client reset")
    assert s.get("end") == "client_reset", s["_line"]


# --------------------------------------------------------------------------
# concurrency and cross talk


@pytest.mark.deadline(120)
def test_1000_concurrent_connections_no_cross_talk(ferry, identify, clients):
    up = identify("A")
    f = relay(ferry, up.addr)
    n = 1000
    socks = []
    for i in range(n):
        s = f.connect(timeout=scaled(15))
        clients.append(s)
        socks.append(s)
    payloads = [b"<conn %04d %s>" % (i, os.urandom(400).hex().encode()) for i in range(n)]
    for s, p in zip(socks, payloads):
        s.sendall(p)
    bad = []
    for i, (s, p) in enumerate(zip(socks, payloads)):
        try:
            got = recv_exact(s, 5 + len(p), "echo %d" % i)
        except AssertionError as e:
            bad.append(str(e))
            continue
        if got != b"ID:A\n" + p:
            bad.append("conn %d got someone else's bytes: %r" % (i, got[:40]))
    assert not bad, "%d of %d connections wrong, first: %s" % (len(bad), n, bad[:3])
    assert up.max_active >= n * 0.9, "only %d upstream connections were open at once" % up.max_active
    for s in socks:
        s.shutdown(socket.SHUT_WR)
    extra = []
    for i, s in enumerate(socks):
        rest, how = read_until_close(s, scaled(5))
        if rest or how != "eof":
            extra.append((i, rest[:40], how))
    assert not extra, "connections saw extra bytes or bad close after their echo: %s" % extra[:5]
    ss = f.wait_sessions(n, timeout=10)
    assert len(ss) == n, "expected %d session log lines, got %d" % (n, len(ss))
    bad_lines = [x["_line"] for x in ss if not SESSION_LINE.match(x["_line"])]
    assert not bad_lines, "malformed/interleaved session log lines: %s" % bad_lines[:3]
    ids = collections.Counter(x["sess"] for x in ss)
    dup = [k for k, v in ids.items() if v > 1]
    assert not dup, "session ids are not unique: %s" % dup[:5]
    ups = collections.Counter(int(x["up"]) for x in ss)
    assert sum(ups.values()) == n and all(k == len(payloads[0]) for k in ups), \
        "log up= should be each connection's %d payload bytes: %s" % (len(payloads[0]), dict(ups))
    downs = collections.Counter(int(x["down"]) for x in ss)
    assert all(k == 5 + len(payloads[0]) for k in downs), "log down= wrong: %s" % dict(downs)


def test_listen_port_0_is_one_port_for_every_thread(ferry, identify, clients):
    """-l HOST:0: the kernel picks one port, every worker shares it (one
    SO_REUSEPORT group), and the announcement names it."""
    up = identify("A")
    f = relay(ferry, up.addr, args=["-l", "127.0.0.1:0", "--threads", "2"])
    deadline = time.monotonic() + scaled(5)
    while not re.search(r"listening on 127\.0\.0\.1:(\d+)", f.log()) and time.monotonic() < deadline:
        time.sleep(0.02)
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", f.log())
    assert m, "no listening line: %s" % f.log()
    port = int(m.group(1))
    assert port != 0, "the announcement should name the port picked: %s" % m.group(0)
    assert listening(f.pid, port) == 2, "both workers should listen on port %d" % port
    for _ in range(8):
        s = peers.connect("127.0.0.1", port)
        clients.append(s)
        assert recv_line(s) == b"ID:A\n"


@pytest.mark.deadline(60)
def test_churn_while_long_sessions_keep_their_identity(ferry, identify, clients):
    up = identify("A")
    f = relay(ferry, up.addr, args=["--threads", "2"])
    long = []
    for i in range(40):
        s = f.connect(timeout=scaled(10))
        clients.append(s)
        assert recv_line(s) == b"ID:A\n"
        long.append(s)
    stop = threading.Event()
    churn = {"n": 0, "errors": []}

    def churner():
        i = 0
        while not stop.is_set():
            i += 1
            mode = i % 4
            try:
                s = f.connect(timeout=scaled(5))
                if mode == 0:
                    s.close()
                elif mode == 1:
                    peers.set_linger0(s)
                    s.close()
                elif mode == 2:
                    msg = b"short-%d-%s" % (i, os.urandom(8).hex().encode())
                    s.sendall(msg)
                    got = recv_exact(s, 5 + len(msg), "short echo")
                    if got != b"ID:A\n" + msg:
                        churn["errors"].append("short conn %d got %r" % (i, got[:60]))
                    s.close()
                else:
                    s.sendall(b"bye")
                    s.shutdown(socket.SHUT_WR)
                    s.close()
                churn["n"] += 1
            except (OSError, AssertionError) as e:
                churn["errors"].append("short conn %d: %r" % (i, e))

    th = [threading.Thread(target=churner, daemon=True) for _ in range(2)]
    for t in th:
        t.start()
    try:
        t_end = time.monotonic() + 3
        rounds = 0
        while time.monotonic() < t_end:
            rounds += 1
            for i, s in enumerate(long):
                msg = b"[long %d round %d %s]" % (i, rounds, os.urandom(6).hex().encode())
                s.sendall(msg)
                got = recv_exact(s, len(msg), "long conn %d round %d" % (i, rounds))
                assert got == msg, "long conn %d round %d: cross talk, got %r expected %r" % (i, rounds, got, msg)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in th:
            t.join(scaled(10))
    assert not churn["errors"], "%d short connections failed, first: %s" % (len(churn["errors"]), churn["errors"][:3])
    assert churn["n"] >= 100, "churn too slow to mean anything: %d connections" % churn["n"]
    for s in long:
        s.setblocking(False)
        try:
            extra = s.recv(100)
        except BlockingIOError:
            extra = None
        assert extra is None, "long conn received unexpected bytes %r" % extra


@pytest.mark.deadline(40)
def test_threads_2_serves_concurrently(ferry, identify, clients):
    up = identify("T")
    f = relay(ferry, up.addr, args=["--threads", "2", "--idle-timeout", "5m", "--connect-timeout", "2500ms"])
    assert thread_count(f.pid) >= 2, "--threads 2 but ferry has %d thread(s)" % thread_count(f.pid)
    socks = []
    for i in range(200):
        s = f.connect()
        clients.append(s)
        socks.append(s)
    for i, s in enumerate(socks):
        s.sendall(b"msg-%d" % i)
    for i, s in enumerate(socks):
        m = b"msg-%d" % i
        assert recv_exact(s, 5 + len(m)) == b"ID:T\n" + m


# --------------------------------------------------------------------------
# resources


@pytest.mark.deadline(60)
def test_slow_readers_memory_bounded(ferry, servers, clients):
    fl = servers(peers.h_flood)
    f = relay(ferry, fl.addr)
    time.sleep(0.2)
    base = f.rss_kib()
    for _ in range(100):
        s = f.connect(timeout=scaled(10))
        clients.append(s)
    assert fl.wait_accepted(100, scaled(10)) == 100, "upstream did not see 100 connections"
    peak = base
    time.sleep(0.5)
    c0, t0 = f.cpu_seconds(), time.monotonic()
    t_end = time.monotonic() + 5
    while time.monotonic() < t_end:
        peak = max(peak, f.rss_kib())
        time.sleep(0.1)
    cpu = (f.cpu_seconds() - c0) / (time.monotonic() - t0)
    assert cpu < 0.30, "ferry burns %.0f%% CPU while its readers are stalled (backpressure busy loop)" % (cpu * 100)
    limit = (48 if SANITIZED else 16) * 1024
    assert peak - base < limit, "ferry RSS grew by %d KiB with 100 stalled readers (limit %d KiB): base %d peak %d" % (
        peak - base, limit, base, peak)
    # the stream is intact once the reader reads
    got = recv_exact(clients[0], 1 * MiB, "flood data after the stall")
    assert got == b"F" * MiB, "flood stream corrupted"


def settled_fds(f, timeout=5.0):
    """fd count once it stops falling."""
    last = f.fd_count()
    stable_since = time.monotonic()
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        n = f.fd_count()
        if n != last:
            last = n
            stable_since = time.monotonic()
        elif time.monotonic() - stable_since > 0.5:
            break
    return last


@pytest.mark.deadline(90)
def test_no_fd_leak_after_mixed_sessions(ferry, identify, blackhole):
    up = identify("A")
    f = relay(ferry, up.addr)
    refused = relay(ferry, "127.0.0.1:%d" % closed_port())
    bh = blackhole()
    tmo = relay(ferry, bh.addr, args=["--connect-timeout", "300ms"])
    base = {x: x.fd_count() for x in (f, refused, tmo)}

    def workload():
        socks = []
        for i in range(60):
            s = f.connect()
            socks.append(s)
        for i, s in enumerate(socks):
            assert recv_line(s) == b"ID:A\n"
            if i % 3 == 0:
                s.sendall(b"hi")
                assert recv_exact(s, 2) == b"hi"
                s.close()
            elif i % 3 == 1:
                peers.set_linger0(s)
                s.close()
            else:
                s.shutdown(socket.SHUT_WR)
                read_until_close(s, scaled(5))
                s.close()
        for i in range(20):
            c = f.connect()
            c.close()     # before anything happened
        rs = [refused.connect() for _ in range(20)]
        for c in rs:
            read_until_close(c, scaled(5))
            c.close()
        ts = [tmo.connect() for _ in range(10)]
        for c in ts:
            read_until_close(c, scaled(5))
            c.close()

    workload()
    f.wait_sessions(80)
    refused.wait_sessions(20)
    tmo.wait_sessions(10)
    first = {x: settled_fds(x) for x in base}
    workload()
    f.wait_sessions(160)
    refused.wait_sessions(40)
    tmo.wait_sessions(20)
    second = {x: settled_fds(x) for x in base}
    for x, name in ((f, "relay"), (refused, "refused-upstream"), (tmo, "connect-timeout")):
        assert second[x] <= first[x] + 2, "%s: fd count grew from %d to %d after a second identical run (leak); baseline %d" % (
            name, first[x], second[x], base[x])
        assert first[x] <= base[x] + 64, "%s: %d fds left open after all sessions ended (baseline %d)" % (
            name, first[x], base[x])


@pytest.mark.deadline(30)
def test_more_early_data_while_connecting_does_not_spin(ferry, blackhole):
    """Early data waits for the upstream. The client's read interest stays
    armed until the client is readable again (it saves two epoll_ctl per
    connection); then it must go, or level-triggered epoll spins until the
    connect ends."""
    bh = blackhole()
    f = relay(ferry, bh.addr, args=["--threads", "1", "--connect-timeout", "20s"])
    c = f.connect()
    c.sendall(b"early data " * 10)
    time.sleep(scaled(0.2))
    c.sendall(b"more while the connect hangs " * 10)
    time.sleep(scaled(0.2))
    c0 = f.cpu_seconds()
    t0 = time.monotonic()
    time.sleep(1.5)
    cpu = (f.cpu_seconds() - c0) / (time.monotonic() - t0)
    assert cpu < 0.30, "ferry burns %.0f%% CPU while early data waits for a hanging connect" % (cpu * 100)
    assert f.alive()
    c.close()


@pytest.mark.deadline(60)
def test_emfile_does_not_spin_and_recovers(ferry, identify, clients):
    up = identify("A")
    f = relay(ferry, up.addr, args=["--threads", "1"], nofile=64)
    assert f.fd_count() < 40, "ferry uses %d fds at rest, too many for this test" % f.fd_count()
    pending = []
    for i in range(150):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", f.port))
        except BlockingIOError:
            pass
        clients.append(s)
        pending.append(s)
    time.sleep(scaled(1))
    assert f.alive(), "ferry died when it ran out of fds:\n" + f.log()[-3000:]
    assert f.fd_count() >= 56, "scenario check: ferry should be near its 64-fd limit, has %d fds" % f.fd_count()
    lines0 = len(f.log().splitlines())
    c0 = f.cpu_seconds()
    t0 = time.monotonic()
    time.sleep(2)
    cpu = (f.cpu_seconds() - c0) / (time.monotonic() - t0)
    lines = len(f.log().splitlines()) - lines0
    assert cpu < 0.30, "ferry burns %.0f%% CPU while out of fds (EMFILE busy loop)" % (cpu * 100)
    assert lines < 200, "ferry wrote %d log lines in 2 s while out of fds (log flood)" % lines
    assert f.alive(), "ferry died while out of fds"
    for s in pending:
        s.close()
    clients.clear()

    def serves():
        try:
            c = f.connect(timeout=scaled(2))
        except OSError:
            return False
        try:
            return recv_line(c) == b"ID:A\n"
        except AssertionError:
            return False
        finally:
            c.close()

    assert peers.wait_until(serves, scaled(15), interval=0.2), \
        "ferry did not serve again after the excess clients went away"


# --------------------------------------------------------------------------
# SIGTERM / SIGINT


@pytest.mark.deadline(40)
def test_sigterm_drains_open_session_refuses_new_and_exits_0(ferry, servers):
    chunk = 100 * 1024
    data = os.urandom(40 * chunk)

    def handler(srv, c, peer):
        assert c.recv(2) == b"go"
        for i in range(40):
            c.sendall(data[i * chunk:(i + 1) * chunk])
            time.sleep(0.05)
        c.shutdown(socket.SHUT_WR)
        while c.recv(65536):
            pass

    srv = servers(handler)
    f = relay(ferry, srv.addr, args=["--drain-timeout", "20s"])
    c = f.connect(timeout=scaled(10))
    c.sendall(b"go")
    first = recv_exact(c, chunk, "first chunk")
    f.signal(signal.SIGTERM)
    t_sig = time.monotonic()
    assert peers.wait_until(lambda: listening(f.pid, f.port) == 0, scaled(1)) == True, \
        "ferry still has its listening socket %.1fs after SIGTERM" % scaled(1)
    try:
        n = f.connect(timeout=2)
        n.close()
        raise AssertionError("a new connection was accepted after SIGTERM")
    except (ConnectionRefusedError, ConnectionResetError):
        pass
    rest, how = read_until_close(c, scaled(15))
    assert how == "eof", "draining session ended with %s after %d bytes" % (how, len(rest))
    assert first + rest == data, "draining session's data corrupted: %d of %d bytes" % (len(first + rest), len(data))
    assert time.monotonic() - t_sig > 1.0, "scenario check: transfer should have outlasted SIGTERM by >1s"
    c.close()
    rc = f.wait(scaled(5))
    f.expect_exit = True
    assert rc is not None, "ferry did not exit by itself after its last session ended"
    assert rc == 0, "ferry exited %s after drain, expected 0" % rc
    s = one(f.sessions(), "drained session")
    assert s.get("end") in ("client_closed", "upstream_closed"), "drained session should end normally: " + s["_line"]
    assert int(s["down"]) == len(data), s["_line"]


@pytest.mark.deadline(30)
def test_drain_timeout_cuts_stuck_session_and_exits_0(ferry, identify):
    up = identify("A")
    f = relay(ferry, up.addr, args=["--drain-timeout", "1s"])
    c = f.connect()
    assert recv_line(c) == b"ID:A\n"
    f.signal(signal.SIGTERM)
    t0 = time.monotonic()
    rc = f.wait(1 + scaled(4))
    dt = time.monotonic() - t0
    f.expect_exit = True
    assert rc is not None, "ferry still running %.1fs after SIGTERM with --drain-timeout 1s" % dt
    assert rc == 0, "ferry exited %s, expected 0" % rc
    assert dt >= 0.7, "ferry exited after %.2fs: it should give the open session the drain time (1s)" % dt
    _, how = read_until_close(c, scaled(2))
    assert how in ("eof", "reset"), "stuck client not closed by the drain timeout (%s)" % how
    s = one(f.sessions(), "cut session")
    assert s.get("end") == "drain", s["_line"]


@pytest.mark.deadline(30)
def test_drain_lines_say_how_many_and_until_when(ferry, identify):
    """Issue #16, 11: the drain line counts the open sessions and gives the
    deadline; a last line says how the drain ended."""
    up = identify("A")
    f = relay(ferry, up.addr, args=["--drain-timeout", "1500ms"])
    cs = [f.connect() for _ in range(3)]
    for c in cs:
        assert recv_line(c) == b"ID:A\n"
    f.signal(signal.SIGTERM)
    rc = f.wait(2 + scaled(4))
    f.expect_exit = True
    assert rc == 0, rc
    log = f.log()
    assert "Terminated: draining 3 sessions, up to 1500ms" in log, log
    last = [x for x in log.splitlines() if x.strip()][-1]
    assert re.match(r"^ferry: stopped after a \d+\.\ds drain: 0 sessions finished, 3 closed by the drain$", last), log


def test_start_line_says_what_each_listener_does(ferry, identify, workdir):
    """Issue #16, 11: the start line of a listener names its mode, its
    upstreams or tunnel, its auth (users counted), filters and toxics, and
    never a secret."""
    up = identify("A")
    f = relay(ferry, up.addr, "backup.ferry.invalid:81",
              args=["--allow", "127.0.0.0/8", "--deny", "10.0.0.0/8", "--toxic", "latency"])
    line = next(x for x in f.log().splitlines() if "listening on" in x)
    for want in ("mode=relay", "upstreams=%s,backup.ferry.invalid:81" % up.addr, "balance=roundrobin",
                 "clients=allow:1,deny:1", "toxics=latency_downstream(latency,downstream)"):
        assert want in line, "%r missing: %s" % (want, line)

    secret = "Pw-9d8f7g6h5j4k"
    users = os.path.join(workdir, "users")
    with open(users, "w") as u:
        u.write("bob:%s\n" % secret)
    port = free_port()
    g = ferry("socks", "-l", "0.0.0.0:%d" % port, "--user", "alice:%s" % secret, "--users-file", users,
              "--deny-dest", "www.example.com", listen=("127.0.0.1", port))
    line = next(x for x in g.log().splitlines() if "listening on" in x)
    for want in ("mode=socks", "auth=users:2", "clients=any", "dests=allow:0,deny:1+default_denies:"):
        assert want in line, "%r missing: %s" % (want, line)
    assert secret not in g.log()

    h = ferry("ss-local", "-s", "ss.ferry.invalid:8388", "-k", secret, "--tunnel-to", "web.ferry.invalid:80")
    line = next(x for x in h.log().splitlines() if "listening on" in x)
    for want in ("mode=ss-local", "method=chacha20-ietf-poly1305", "server=ss.ferry.invalid:8388",
                 "tunnel_to=web.ferry.invalid:80"):
        assert want in line, "%r missing: %s" % (want, line)
    assert secret not in h.log() and "auth=" not in line


@pytest.mark.deadline(20)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_without_sessions_exits_0_promptly(ferry, identify, sig):
    up = identify("A")
    f = relay(ferry, up.addr, args=["--drain-timeout", "10s"])
    f.signal(sig)
    rc = f.wait(scaled(2))
    f.expect_exit = True
    assert rc == 0, "ferry with no open session should exit 0 promptly on %s, got %s" % (sig, rc)


@pytest.mark.deadline(20)
def test_hup_and_usr_signals_are_logged_and_nothing_in_flight_is_touched(ferry, identify):
    """SIGHUP (logrotate's postrotate, systemctl reload), SIGUSR1 and SIGUSR2
    killed ferry with every connection (status 129...). SIGHUP now reloads
    (an unchanged command line keeps its listener), the others are logged as
    ignored; an open session keeps relaying and new clients are served."""
    up = identify("A")
    f = relay(ferry, up.addr)
    c = f.connect()
    assert recv_line(c) == b"ID:A\n"
    for sig, why in ((signal.SIGHUP, "changed 0, kept 1"), (signal.SIGUSR1, "no log file"),
                     (signal.SIGUSR2, "ignored")):
        f.signal(sig)
        assert peers.wait_until(lambda: why in f.log(), scaled(2)), "no line for %s:\n%s" % (sig, f.log())
        assert f.alive(), "ferry died of %s:\n%s" % (sig, f.log())
        m = os.urandom(1000)
        c.sendall(m)
        assert recv_exact(c, len(m), "echo after %s" % sig) == m
        d = f.connect()
        assert recv_line(d) == b"ID:A\n"
        d.close()
    c.close()


@pytest.mark.deadline(20)
def test_sigquit_stops_at_once(ferry, identify):
    up = identify("A")
    f = relay(ferry, up.addr, args=["--drain-timeout", "30s"])
    c = f.connect()
    assert recv_line(c) == b"ID:A\n"
    f.signal(signal.SIGQUIT)
    rc = f.wait(scaled(3))              # not the 30 s drain
    f.expect_exit = True
    assert rc == 0, rc
    assert "stopping now, closing 1 session" in f.log(), f.log()
    c.close()


# --------------------------------------------------------------------------
# balancing


def count_ids(f, n):
    counts = collections.Counter()
    for _ in range(n):
        c = f.connect()
        counts[recv_line(c).strip().decode()] += 1
        c.close()
    return counts


@pytest.mark.deadline(40)
@pytest.mark.parametrize("weights", [(3, 1), (3, 2, 1), (1, 1)], ids=["3:1", "3:2:1", "plain-1:1"])
def test_weighted_round_robin_exact_on_one_thread(ferry, identify, weights):
    names = "ABC"
    ups = [identify(names[i]) for i in range(len(weights))]
    specs = [u.addr if w == 1 and weights == (1, 1) else "%s,weight=%d" % (u.addr, w) for u, w in zip(ups, weights)]
    f = relay(ferry, *specs, args=["--threads", "1"])
    rounds = 10
    got = count_ids(f, sum(weights) * rounds)
    want = {"ID:%s" % names[i]: w * rounds for i, w in enumerate(weights)}
    assert dict(got) == want, "weights %s over %d connections: got %s, want %s" % (
        weights, sum(weights) * rounds, dict(got), want)


@pytest.mark.deadline(40)
def test_weighted_round_robin_two_threads_ratio(ferry, identify):
    a, b = identify("A"), identify("B")
    f = relay(ferry, a.addr + ",weight=3", b.addr + ",weight=1", args=["--threads", "2"])
    got = count_ids(f, 200)
    share = got["ID:A"] / 200
    assert 0.65 <= share <= 0.85 and got["ID:A"] + got["ID:B"] == 200, \
        "weight 3:1 with 2 threads: got %s" % dict(got)


# --------------------------------------------------------------------------
# addresses


@pytest.mark.deadline(20)
@pytest.mark.parametrize("lhost,uhost", [("::1", "::1"), ("127.0.0.1", "::1"), ("::1", "127.0.0.1")],
                         ids=["v6-v6", "v4-v6", "v6-v4"])
def test_ipv6_listen_and_upstream(ferry, identify, lhost, uhost):
    up = identify("six", host=uhost)
    f = relay(ferry, up.addr, host=lhost)
    c = f.connect()
    assert c.family == peers.family_of(lhost)
    assert recv_line(c) == b"ID:six\n"
    c.sendall(b"v6 payload")
    assert recv_exact(c, 10) == b"v6 payload"
    c.close()
    s = one(f.wait_sessions(1), "ipv6 session")
    if lhost == "::1":
        assert "::1" in s.get("client", ""), "log client= should show the IPv6 client: " + s["_line"]
    if uhost == "::1":
        assert "::1" in s.get("upstream", ""), "log upstream= should show the IPv6 upstream: " + s["_line"]


@pytest.mark.deadline(20)
def test_listen_on_all_interfaces_short_form(ferry, identify):
    up = identify("A")
    port = free_port()
    f = relay(ferry, up.addr, args=["-l", ":%d" % port])
    c = peers.connect("127.0.0.1", port)
    assert recv_line(c) == b"ID:A\n", "-l :PORT should listen on all interfaces (reached via 127.0.0.1)"


@pytest.mark.deadline(20)
def test_ipv6_client_acl(ferry, identify):
    up = identify("A")
    f = relay(ferry, up.addr, host="::1", args=["--deny", "::1/128"])
    c = f.connect()
    data, how = read_until_close(c, scaled(3))
    assert data == b"" and how in ("eof", "reset"), "--deny ::1/128 should close an IPv6 loopback client"
    g = relay(ferry, up.addr, host="::1", args=["--allow", "::1/128"])
    c = g.connect()
    assert recv_line(c) == b"ID:A\n", "--allow ::1/128 should admit the IPv6 loopback client"


@pytest.mark.deadline(20)
def test_connect_failure_retries_next_upstream(ferry, identify):
    """DESIGN.md: the balancer retries the next server on connect failure."""
    up = identify("good")
    f = relay(ferry, "127.0.0.1:%d" % closed_port(), up.addr, args=["--threads", "1"])
    for i in range(6):
        c = f.connect()
        c.settimeout(scaled(3))
        assert recv_line(c, what="connection %d" % i) == b"ID:good\n", \
            "connection %d was not retried on the live upstream" % i
        c.close()


@pytest.mark.deadline(20)
def test_upstream_given_as_hostname_localhost(ferry, servers):
    v4 = servers(peers.h_identify, name="v4")
    try:
        servers(peers.h_identify, host="::1", port=v4.port, name="v6")
    except OSError:
        pass    # ::1 port busy: only the v4 one
    f = relay(ferry, "localhost:%d" % v4.port)
    for _ in range(3):
        c = f.connect()
        assert recv_line(c) in (b"ID:v4\n", b"ID:v6\n")
        c.sendall(b"hi")
        assert recv_exact(c, 2) == b"hi"
        c.close()


@pytest.mark.deadline(20)
def test_ncat_client(ferry, identify):
    up = identify("nc")
    need("ncat")
    f = relay(ferry, up.addr)
    r = subprocess.run(["ncat", "127.0.0.1", str(f.port)], input=b"hello from ncat\n",
                       capture_output=True, timeout=scaled(10))
    assert r.stdout == b"ID:nc\nhello from ncat\n", "ncat got %r (rc %d, %r)" % (r.stdout, r.returncode, r.stderr)


@pytest.mark.deadline(20)
def test_client_allow_and_deny(ferry, identify):
    up = identify("A")
    f = relay(ferry, up.addr, args=["--allow", "127.0.0.2/32"])
    c = f.connect(source="127.0.0.1")
    data, how = read_until_close(c, scaled(3))
    assert data == b"" and how in ("eof", "reset"), "client outside --allow should be closed, got %r (%s)" % (data, how)
    c = f.connect(source="127.0.0.2")
    assert recv_line(c) == b"ID:A\n", "client inside --allow should be relayed"
    c.close()
    assert up.accepted == 1, "denied client must not cause an upstream connection (%d)" % up.accepted
    ss = f.wait_sessions(2)
    ends = collections.Counter(s.get("end") for s in ss)
    assert ends == {"denied": 1, "client_closed": 1}, [s["_line"] for s in ss]
    g = relay(ferry, up.addr, args=["--deny", "127.0.0.0/8"])
    c = g.connect()
    data, how = read_until_close(c, scaled(3))
    assert data == b"" and how in ("eof", "reset"), "client in --deny should be closed, got %r (%s)" % (data, how)
    assert one(g.wait_sessions(1), "denied").get("end") == "denied"


@pytest.mark.deadline(30)
def test_maxconn_limits_concurrent_sessions(ferry, identify, clients):
    up = identify("A")
    f = relay(ferry, up.addr, args=["--maxconn", "3", "--threads", "1"])
    first = []
    for _ in range(3):
        c = f.connect()
        clients.append(c)
        assert recv_line(c) == b"ID:A\n"
        first.append(c)
    extra = f.connect()
    clients.append(extra)
    extra.settimeout(1)
    try:
        d = extra.recv(10)
        assert d == b"", "4th connection with --maxconn 3 was relayed: %r" % d
    except socket.timeout:
        pass   # held back: fine
    except ConnectionResetError:
        pass
    assert up.accepted == 3, "upstream saw %d connections with --maxconn 3" % up.accepted
    extra.close()
    first[0].close()
    f.wait_sessions(1, pred=lambda s: s.get("end") == "client_closed")
    time.sleep(0.2)
    c = f.connect()
    clients.append(c)
    c.settimeout(scaled(3))
    assert recv_line(c) == b"ID:A\n", "after a slot freed a new connection should be served"


# --------------------------------------------------------------------------
# timeouts


@pytest.mark.deadline(20)
def test_idle_timeout_closes_idle_session(ferry, identify):
    up = identify("A")
    f = relay(ferry, up.addr, args=["--idle-timeout", "1s"])
    c = f.connect()
    assert recv_line(c) == b"ID:A\n"
    c.sendall(b"x")
    assert recv_exact(c, 1) == b"x"
    how, dt = wait_closed(c, scaled(6))
    assert how in ("eof", "reset"), "idle session not closed by --idle-timeout 1s (%s after %.1fs)" % (how, dt)
    assert 0.8 <= dt <= 1 + scaled(2), "idle timeout 1s fired after %.2fs" % dt
    s = one(f.wait_sessions(1), "idle session")
    assert s.get("end") == "idle_timeout", s["_line"]


@pytest.mark.deadline(20)
def test_idle_timeout_spares_active_session(ferry, identify):
    up = identify("A")
    f = relay(ferry, up.addr, args=["--idle-timeout", "1"])   # bare number = seconds
    c = f.connect()
    assert recv_line(c) == b"ID:A\n"
    t_end = time.monotonic() + 2.5
    i = 0
    while time.monotonic() < t_end:
        m = b"tick%d" % i
        c.sendall(m)
        assert recv_exact(c, len(m), "tick %d" % i) == m, "active session was cut by the idle timeout"
        time.sleep(0.3)
        i += 1
    c.close()
    s = one(f.wait_sessions(1), "active session")
    assert s.get("end") == "client_closed", s["_line"]


@pytest.mark.deadline(20)
@pytest.mark.parametrize("direction", ["downstream", "upstream"])
def test_idle_timeout_counts_traffic_in_either_direction(ferry, servers, direction):
    """A one-way stream (download or upload) is not idle."""
    def handler(srv, c, peer):
        if direction == "downstream":
            for i in range(12):
                c.sendall(b"tick%02d\n" % i)
                time.sleep(0.2)
        else:
            n = 0
            c.settimeout(5)
            try:
                while n < 12 * 7:
                    d = c.recv(100)
                    if not d:
                        break
                    n += len(d)
            except OSError:
                pass
            srv.record(n)
            c.sendall(b"got %d\n" % n)

    srv = servers(handler)
    f = relay(ferry, srv.addr, args=["--idle-timeout", "1s"])
    c = f.connect()
    if direction == "downstream":
        got = recv_exact(c, 12 * 7, "one-way download")
        assert got == b"".join(b"tick%02d\n" % i for i in range(12)), got
    else:
        for i in range(12):
            c.sendall(b"tock%02d\n" % i)
            time.sleep(0.2)
        assert recv_line(c) == b"got 84\n", "one-way upload was cut by the idle timeout"
    c.close()
    s = one(f.wait_sessions(1), "one-way session")
    assert s.get("end") != "idle_timeout", "a one-way %s stream hit the idle timeout: %s" % (direction, s["_line"])


@pytest.mark.deadline(20)
def test_half_closed_sessions_do_not_spin(ferry, servers, clients):
    """EOF seen on one side while the other stays open: ferry must stop
    polling the finished side (no level-triggered EOF busy loop)."""
    def hold(srv, c, peer):
        c.settimeout(30)
        try:
            while c.recv(65536):
                pass
            peers.wait_until(lambda: srv.closed, 10)   # client sent EOF; keep our side open
        except OSError:
            pass

    def upstream_eof(srv, c, peer):
        c.shutdown(socket.SHUT_WR)
        peers.wait_until(lambda: srv.closed, 10)

    a = servers(hold)
    b = servers(upstream_eof)
    fa = relay(ferry, a.addr)
    fb = relay(ferry, b.addr)
    for _ in range(50):
        c = fa.connect()
        clients.append(c)
        c.shutdown(socket.SHUT_WR)
        d = fb.connect()
        clients.append(d)
    time.sleep(0.5)
    for f, what in ((fa, "client half-closed"), (fb, "upstream half-closed")):
        c0, t0 = f.cpu_seconds(), time.monotonic()
        time.sleep(1.5)
        cpu = (f.cpu_seconds() - c0) / (time.monotonic() - t0)
        assert cpu < 0.15, "ferry uses %.0f%% CPU with 50 %s sessions sitting idle" % (cpu * 100, what)


# --------------------------------------------------------------------------
# the log line


@pytest.mark.deadline(20)
def test_log_line_client_closes_first(ferry, servers):
    def handler(srv, c, peer):
        recv_exact(c, 1000)
        c.sendall(b"d" * 2345)
        while c.recv(100):
            pass

    srv = servers(handler)
    f = relay(ferry, srv.addr)
    c = f.connect()
    cport = c.getsockname()[1]
    c.sendall(b"u" * 1000)
    assert recv_exact(c, 2345) == b"d" * 2345
    c.close()
    s = one(f.wait_sessions(1), "log line")
    line = s["_line"]
    toks = line.split()
    assert LOG_TS.match(toks[0]), "log line should start with an ISO-8601 UTC timestamp: %r" % line
    assert toks[1] == "info", "level should be info: %r" % line
    assert re.fullmatch(r"\d+", s.get("sess", "")), line
    assert s.get("listener") == "relay", line
    assert s.get("client") == "127.0.0.1:%d" % cport, "client= should be the client's address: %r" % line
    assert s.get("upstream") == srv.addr, "upstream= should be %s: %r" % (srv.addr, line)
    assert s.get("up") == "1000" and s.get("down") == "2345", "byte counts wrong: %r" % line
    assert re.fullmatch(r"\d+", s.get("dur_ms", "")), line
    assert s.get("end") == "client_closed", line


@pytest.mark.deadline(20)
def test_log_line_upstream_closes_first(ferry, servers):
    def handler(srv, c, peer):
        recv_exact(c, 10)
        c.sendall(b"d" * 77)

    srv = servers(handler)
    f = relay(ferry, srv.addr)
    c = f.connect()
    c.sendall(b"0123456789")
    data, how = read_until_close(c, scaled(5))
    assert (len(data), how) == (77, "eof")
    time.sleep(0.2)
    c.close()
    s = one(f.wait_sessions(1), "log line")
    assert (s.get("up"), s.get("down"), s.get("end")) == ("10", "77", "upstream_closed"), s["_line"]


@pytest.mark.deadline(20)
@pytest.mark.parametrize("level,expect_sessions", [("quiet", False), ("error", False), ("info", True), ("debug", True)])
def test_log_levels(ferry, identify, level, expect_sessions):
    up = identify("A")
    f = relay(ferry, up.addr, args=["--log-level", level])
    c = f.connect()
    assert recv_line(c) == b"ID:A\n"
    c.close()
    time.sleep(0.3)
    problems = f.stop()
    assert not problems, problems
    ss = f.sessions()
    if expect_sessions:
        assert len(ss) == 1, "--log-level %s should log the session: %r" % (level, f.log())
    else:
        assert ss == [], "--log-level %s must not log sessions: %r" % (level, f.log())
    if level in ("quiet", "error"):
        other = [ln for ln in f.log().splitlines() if ln.strip() and not ln.startswith("ferry: ")]
        assert other == [], "--log-level %s should print no log lines, got %r" % (level, other)


# --------------------------------------------------------------------------
# command line


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["relay", "--help"], ["socks", "--help"]],
                         ids=["version", "help", "relay-help", "socks-help"])
def test_cli_help_and_version_exit_0_on_stdout(args):
    r = run_ferry(*args)
    assert r.returncode == 0, "ferry %s exited %d: %r" % (" ".join(args), r.returncode, r.stderr)
    assert r.stdout.strip(), "ferry %s printed nothing on stdout" % " ".join(args)
    if args == ["--version"]:
        assert b"ferry" in r.stdout.lower() and re.search(rb"\d+\.\d+", r.stdout), r.stdout


def test_cli_relay_help_mentions_its_flags():
    r = run_ferry("relay", "--help")
    for flag in (b"-l", b"-u", b"--connect-timeout", b"--idle-timeout", b"--threads"):
        assert flag in r.stdout, "relay --help does not mention %s" % flag.decode()


BAD = [
    (["relay", "--bogus-flag", "-l", "127.0.0.1:{p}", "-u", "127.0.0.1:9"], "--bogus-flag"),
    (["relay", "-l", "127.0.0.1:{p}"], "-u|--upstream"),
    (["relay", "-u", "127.0.0.1:9"], "-l|--listen"),
    (["relay", "-l", "nonsense", "-u", "127.0.0.1:9"], "nonsense|-l|--listen"),
    (["relay", "-l", "127.0.0.1:99999", "-u", "127.0.0.1:9"], "99999"),
    (["relay", "-l", "127.0.0.1:{p}", "-u", "127.0.0.1"], "127.0.0.1"),
    (["relay", "-l", "[::1:{p}", "-u", "127.0.0.1:9"], "[::1"),
    (["relay", "-l", "127.0.0.1:{p}", "-u", "127.0.0.1:9,weight=x"], "weight"),
    (["relay", "-l", "127.0.0.1:{p}", "-u", "127.0.0.1:9", "--threads", "abc"], "abc"),
    (["relay", "-l", "127.0.0.1:{p}", "-u", "127.0.0.1:9", "--idle-timeout", "5x"], "5x"),
    (["relay", "-l", "127.0.0.1:{p}", "-u", "127.0.0.1:9", "--log-level", "loud"], "loud"),
    (["relay", "-l", "127.0.0.1:{p}", "-u", "127.0.0.1:9", "--allow", "10.0.0.0/99"], "10.0.0.0/99"),
    (["relay", "-l", "127.0.0.1:{p}", "-u", "127.0.0.1:9", "--connect-timeout"], "--connect-timeout"),
    (["socks", "-l", "127.0.0.1:{p}", "--user", "nocolon"], "nocolon|--user"),
    (["socks", "-l", "127.0.0.1:{p}", "--deny-dest", "300.1.1.1/8"], "300.1.1.1"),
    (["socks", "-l", "127.0.0.1:{p}", "--resolve-timeout", "soon"], "soon"),
    (["socks", "-l", "127.0.0.1:{p}", "--users-file", "/nonexistent/ferry-users"], "/nonexistent/ferry-users|--users-file"),
    (["frobnicate"], "frobnicate"),
]


def test_cli_listen_address_in_use_fails_with_one_line():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        r = run_ferry("relay", "-l", "127.0.0.1:%d" % port, "-u", "127.0.0.1:9")
    finally:
        busy.close()
    lines = [ln for ln in r.stderr.decode().splitlines() if ln.strip()]
    assert r.returncode != 0, "ferry started although its listen address is taken"
    assert len(lines) == 1 and lines[0].startswith("ferry: ") and str(port) in lines[0], \
        "expected one 'ferry: ...' line naming port %d, got %r" % (port, lines)


def names(line, culprits):
    """True if line names one of the |-separated culprits (a flag must stand
    as a word: -l does not match inside --log-level)."""
    for c in culprits.split("|"):
        if c.startswith("-"):
            if re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(c), line):
                return True
        elif c in line:
            return True
    return False


@pytest.mark.parametrize("args,culprit", BAD, ids=[b[1].split("|")[0] + "-%d" % i for i, b in enumerate(BAD)])
def test_cli_bad_input_one_line_exit_2(args, culprit):
    p = free_port()
    args = [a.replace("{p}", str(p)) for a in args]
    r = run_ferry(*args)
    err = r.stderr.decode("utf-8", "replace")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert r.returncode == 2, "ferry %s: exit %d, expected 2 (stderr %r)" % (" ".join(args), r.returncode, err)
    assert len(lines) == 1, "ferry %s: expected ONE line on stderr, got %d: %r" % (" ".join(args), len(lines), err)
    assert lines[0].startswith("ferry: "), "error line must start with 'ferry: ': %r" % lines[0]
    assert names(lines[0], culprit), "error line should name %r: %r" % (culprit, lines[0])
