"""Integration tests for load balancing (balance algorithms, backup servers,
per-server maxconn with a FIFO queue, active/passive health checks, retries)
and connection limits (maxconn, global-maxconn, maxconn-per-ip, rate-per-ip,
max-session-time, allow-hours, CIDR deny), from the command line and from a
config file.

Clients are told apart by their loopback source address (127.0.X.Y, bound
before connect); upstreams are identity servers ("ID:name\\n", then echo), so
every client learns which server it reached.  Tests that need exact numbers
run ferry with --threads 1 (per-server maxconn, queues and round robin are
per worker thread); the process-wide limits run with --threads 2 to prove
their counters are shared.
"""

import collections
import os
import re
import socket
import struct
import signal
import threading
import time

import pytest

import peers
from conftest import free_port, listening, run_ferry, scaled
from peers import read_until_close, recv_exact, recv_line

MSG_FASTOPEN = getattr(socket, "MSG_FASTOPEN", 0x20000000)


# --------------------------------------------------------------------------
# helpers


def relay(ferry, *upstreams, args=(), **kw):
    a = ["relay"]
    for u in upstreams:
        a += ["-u", u]
    return ferry(*a, *args, **kw)


def write(workdir, name, text):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def outcome(c, timeout=3.0):
    """What happened to a client connection: 'ID:<name>' (relayed), 'closed'
    (closed by ferry without a byte), or 'waiting' (nothing within timeout)."""
    c.settimeout(scaled(timeout))
    buf = b""
    try:
        while not buf.endswith(b"\n"):
            d = c.recv(64)
            if not d:
                return "closed" if not buf else "partial:%r" % buf
            buf += d
    except socket.timeout:
        return "waiting" if not buf else "partial:%r" % buf
    except (ConnectionResetError, BrokenPipeError):
        return "closed" if not buf else "partial:%r" % buf
    return buf.decode(errors="replace").strip()


def hello(f, source=None, timeout=3.0):
    """One short request: connect, read the upstream's ID, echo, close.
    Returns the upstream name ('A'), or raises AssertionError."""
    c = f.connect(timeout=scaled(timeout), source=source)
    try:
        c.settimeout(scaled(timeout))
        line = recv_line(c, what="upstream identity")
        assert line.startswith(b"ID:"), "unexpected greeting %r" % line
        c.sendall(b"ping")
        assert recv_exact(c, 4, "echo") == b"ping"
        return line[3:].strip().decode()
    finally:
        c.close()


def hello_closed(f, sessions_before, source=None):
    """hello(), then wait until ferry logged the end of that session, so the
    balancer's active count is back down before the next pick."""
    name = hello(f, source=source)
    got = f.wait_sessions(sessions_before + 1)
    assert len(got) >= sessions_before + 1, "ferry did not log the end of a session"
    return name


def held(f, clients, source=None, timeout=3.0):
    """Open a session and keep it; returns (socket, outcome)."""
    c = f.connect(timeout=scaled(timeout), source=source)
    clients.append(c)
    return c, outcome(c, timeout)


def stop_listening(srv):
    """Close an upstream's listening socket but keep its established
    connections (sessions in progress go on; new connects are refused)."""
    with srv.lock:
        srv.closed = True
    for fn in (lambda: srv.sock.shutdown(socket.SHUT_RDWR), srv.sock.close):
        try:
            fn()
        except OSError:
            pass
    if srv.accept_thread:
        srv.accept_thread.join(2)


def limit_lines(f, n, limit=None, timeout=3.0):
    ss = f.wait_sessions(n, timeout=timeout, pred=lambda s: s.get("end") == "limit"
                         and (limit is None or s.get("limit") == limit))
    return ss


def state_lines(log, addr, state):
    """Health state change lines for one server: 'upstream NAME/HOST:PORT is
    DOWN (...)' at warn, 'is UP (...)' at info."""
    level = "warn" if state == "DOWN" else "info"
    pat = re.compile(r"^\S+ %s upstream \S*?%s is %s \(" % (level, re.escape(addr), state))
    return [ln for ln in log.splitlines() if pat.search(ln)]


def wait_state(f, addr, state, n=1, timeout=3.0):
    return peers.wait_until(lambda: len(state_lines(f.log(), addr, state)) >= n, scaled(timeout), 0.01)


def hhmm(minute):
    minute %= 1440
    return "%02d:%02d" % (minute // 60, minute % 60)


def local_minute():
    t = time.localtime()
    return t.tm_hour * 60 + t.tm_min


def tfo_send(host, port, data, timeout):
    """Connect with the first bytes in the handshake (TCP Fast Open, or the
    kernel's fallback which sends them with the final ACK), so they are in
    ferry's socket by the time it accepts.  Falls back to connect + send."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(True)     # with a timeout (non-blocking inside) it is EINPROGRESS
    try:
        s.sendto(data, MSG_FASTOPEN, (host, port))
        s.settimeout(timeout)
        return s, True
    except OSError:
        s.close()
    s = peers.connect(host, port, timeout=timeout)
    s.sendall(data)
    return s, False


# --------------------------------------------------------------------------
# balance algorithms


@pytest.mark.deadline(30)
def test_roundrobin_weights_3_1_exact_and_smooth(ferry, identify):
    a, b = identify("A"), identify("B")
    f = relay(ferry, a.addr + ",weight=3", b.addr + ",weight=1",
              args=["--balance", "roundrobin", "--threads", "1"])
    seq = [hello(f) for _ in range(40)]
    got = collections.Counter(seq)
    assert got == {"A": 30, "B": 10}, "roundrobin 3:1 over 40 connections: %s" % dict(got)
    windows = [collections.Counter(seq[i:i + 4]) for i in range(0, 40, 4)]
    assert all(w == {"A": 3, "B": 1} for w in windows), \
        "smooth weighted round robin should give 3 A and 1 B in every 4 picks: %s" % "".join(seq)


@pytest.mark.deadline(30)
def test_leastconn_sends_new_sessions_to_the_less_loaded_server(ferry, identify, clients):
    a, b = identify("A"), identify("B")
    f = relay(ferry, a.addr, b.addr, args=["--balance", "leastconn", "--threads", "1"])
    opened = [held(f, clients) for _ in range(4)]
    got = collections.Counter(o for _, o in opened)
    assert got == {"ID:A": 2, "ID:B": 2}, "leastconn should spread 4 concurrent sessions 2/2: %s" % dict(got)
    # end the two sessions on B: A keeps 2 long-held sessions, B has none
    for c, o in opened:
        if o == "ID:B":
            c.close()
    assert len(f.wait_sessions(2)) >= 2, "the 2 closed sessions were not logged"
    seq = []
    for i in range(10):
        seq.append(hello_closed(f, 2 + i))
    assert seq == ["B"] * 10, "with 2 sessions held on A and none on B, leastconn must pick B: %s" % seq


@pytest.mark.deadline(30)
def test_leastconn_respects_weights(ferry, identify, clients):
    a, b = identify("A"), identify("B")
    f = relay(ferry, a.addr + ",weight=3", b.addr, args=["--balance", "leastconn", "--threads", "1"])
    got = collections.Counter(held(f, clients)[1] for _ in range(8))
    assert got == {"ID:A": 6, "ID:B": 2}, "leastconn weights 3:1, 8 concurrent sessions (active/weight): %s" % dict(got)


def source_ips(n, third=1):
    return ["127.0.%d.%d" % (third + i // 250, 1 + i % 250) for i in range(n)]


def source_map(f, ips):
    return {ip: hello(f, source=ip) for ip in ips}


@pytest.mark.deadline(60)
def test_source_hash_sticky_per_client_ip_and_spread(ferry, identify):
    ups = [identify(n) for n in "ABC"]
    f = relay(ferry, *[u.addr for u in ups], args=["--balance", "source", "--threads", "2"])
    ips = source_ips(120)
    first = source_map(f, ips)
    second = source_map(f, list(reversed(ips)))
    moved = sorted(ip for ip in ips if first[ip] != second[ip])
    assert not moved, "balance source: %d client IPs changed server between two rounds: %s" % (
        len(moved), [(ip, first[ip], second[ip]) for ip in moved[:10]])
    for ip in ips[:5]:      # and a few more times, across both worker threads
        for _ in range(4):
            assert hello(f, source=ip) == first[ip], "client %s was not sent to the same server" % ip
    share = collections.Counter(first.values())
    assert set(share) == {"A", "B", "C"} and min(share.values()) >= 20, \
        "balance source should spread 120 client IPs over 3 servers: %s" % dict(share)


@pytest.mark.deadline(60)
def test_source_hash_removing_one_of_four_moves_only_its_clients(ferry, identify):
    ups = {n: identify(n) for n in "ABCD"}
    ips = source_ips(200, third=3)
    f4 = relay(ferry, *[ups[n].addr for n in "ABCD"], args=["--balance", "source", "--threads", "1"])
    before = source_map(f4, ips)
    # "restart without B": same addresses, B (not the last one) removed
    f3 = relay(ferry, *[ups[n].addr for n in "ACD"], args=["--balance", "source", "--threads", "1"])
    after = source_map(f3, ips)
    share = collections.Counter(before.values())
    assert share["B"] >= 20, "B should have had about 1/4 of 200 clients: %s" % dict(share)
    assert all(after[ip] != "B" for ip in ips)
    moved = [ip for ip in ips if before[ip] != after[ip]]
    stray = [(ip, before[ip], after[ip]) for ip in moved if before[ip] != "B"]
    assert len(stray) <= 0.05 * (len(ips) - share["B"]), \
        "removing B moved %d clients that were not on B (consistent hashing should keep them): %s" % (
            len(stray), stray[:10])
    assert len(moved) <= 0.4 * len(ips), "removing 1 of 4 servers moved %d of %d clients" % (len(moved), len(ips))


@pytest.mark.deadline(60)
def test_source_hash_weighted(ferry, identify):
    a, b = identify("A"), identify("B")
    f = relay(ferry, a.addr + ",weight=3", b.addr, args=["--balance", "source", "--threads", "2"])
    got = collections.Counter(source_map(f, source_ips(200, third=5)).values())
    assert 0.6 <= got["A"] / 200 <= 0.88, "balance source, weights 3:1, 200 client IPs: %s" % dict(got)


@pytest.mark.deadline(60)
@pytest.mark.parametrize("threads", [1, 2])
def test_random2_roughly_even(ferry, identify, threads):
    ups = [identify(n) for n in "ABC"]
    f = relay(ferry, *[u.addr for u in ups], args=["--balance", "random2", "--threads", str(threads)])
    seq = [hello(f) for _ in range(300)]
    got = collections.Counter(seq)
    assert set(got) == {"A", "B", "C"}, dict(got)
    assert all(60 <= v <= 140 for v in got.values()), "random2 over 300 connections to 3 servers: %s" % dict(got)
    if threads == 1:    # random, not a rotation in disguise
        rot = sum(seq[i] == seq[i + 3] for i in range(len(seq) - 3))
        assert rot < 0.8 * (len(seq) - 3), "random2 picks look like round robin: %s" % "".join(seq[:60])


# --------------------------------------------------------------------------
# health checks and retries


class Traffic:
    """Client threads doing short requests against ferry without pause; every
    failure is recorded.  pause() waits for requests in flight to end."""

    def __init__(self, f, nthreads=2):
        self.f = f
        self.cond = threading.Condition()
        self.paused = False
        self.inflight = 0
        self.stop_flag = False
        self.results = []       # (t, name) and (t, None) for failures
        self.failures = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(nthreads)]
        for t in self.threads:
            t.start()

    def _run(self):
        while True:
            with self.cond:
                while self.paused and not self.stop_flag:
                    self.cond.wait()
                if self.stop_flag:
                    return
                self.inflight += 1
            try:
                name = hello(self.f, timeout=3.0)
                with self.cond:
                    self.results.append((time.monotonic(), name))
            except (AssertionError, OSError) as e:
                with self.cond:
                    self.failures.append((time.monotonic(), repr(e)))
            finally:
                with self.cond:
                    self.inflight -= 1
                    self.cond.notify_all()
            time.sleep(0.003)

    def pause(self):
        with self.cond:
            self.paused = True
            while self.inflight:
                self.cond.wait(1)

    def resume(self):
        with self.cond:
            self.paused = False
            self.cond.notify_all()

    def stop(self):
        with self.cond:
            self.stop_flag = True
            self.cond.notify_all()
        for t in self.threads:
            t.join(scaled(10))

    def names_since(self, t0):
        with self.cond:
            return collections.Counter(n for t, n in self.results if t >= t0)


@pytest.mark.deadline(60)
def test_health_down_and_up_without_a_failed_request(ferry, identify):
    a, b = identify("A"), identify("B")
    f = relay(ferry, a.addr, b.addr, args=["--threads", "2", "--check-interval", "200ms",
                                            "--check-fall", "2", "--check-rise", "2"])
    tr = Traffic(f)
    try:
        assert peers.wait_until(lambda: set(tr.names_since(0)) == {"A", "B"}, scaled(3)), \
            "traffic should reach both servers first: %s" % dict(tr.names_since(0))
        assert not state_lines(f.log(), b.addr, "DOWN"), "B reported DOWN while up:\n" + f.log()[-2000:]

        tr.pause()              # so that no accepted-but-not-yet-served connect is cut
        stop_listening(b)
        t_stop = time.monotonic()
        tr.resume()
        assert wait_state(f, b.addr, "DOWN", timeout=3), \
            "no 'upstream .../%s is DOWN (...)' line at warn within 3 s of B stopping:\n%s" % (
                b.addr, f.log()[-3000:])
        t_down = time.monotonic() - t_stop
        assert t_down <= scaled(1.5), "DOWN logged %.2f s after B stopped (interval 200ms, fall 2)" % t_down
        time.sleep(0.5)
        t_after_down = time.monotonic()
        time.sleep(0.5)
        assert set(tr.names_since(t_after_down)) == {"A"}, \
            "with B down every request goes to A: %s" % dict(tr.names_since(t_after_down))

        tr.pause()
        b2 = identify("B", port=b.port)
        t_start = time.monotonic()
        tr.resume()
        assert wait_state(f, b.addr, "UP", timeout=3), \
            "no 'upstream .../%s is UP (...)' line at info within 3 s of B coming back:\n%s" % (
                b.addr, f.log()[-3000:])
        t_up = time.monotonic() - t_start
        assert t_up <= scaled(1.5), "UP logged %.2f s after B came back (interval 200ms, rise 2)" % t_up
        t_after_up = time.monotonic()
        assert peers.wait_until(lambda: tr.names_since(t_after_up)["B"] >= 3, scaled(3)), \
            "B gets no traffic after it is UP again: %s" % dict(tr.names_since(t_after_up))
    finally:
        tr.stop()
    assert not tr.failures, "%d client requests failed (retries should hide a down server), first: %s" % (
        len(tr.failures), tr.failures[:3])
    assert len(tr.results) >= 50, "too few requests to mean anything: %d" % len(tr.results)
    assert not state_lines(f.log(), a.addr, "DOWN"), "A was never down:\n" + f.log()[-3000:]
    assert b2.accepted >= 1


def h_ping(reply):
    """Answers a health check ('PING...') with reply; a client (which sends
    'HELLO\\n' first) gets ID:name and an echo."""
    def h(srv, c, peer):
        line = recv_line(c, what="first line")
        if line.startswith(b"PING"):
            if reply is None:   # never answer
                while not srv.closed and c.recv(100):
                    pass
                return
            c.sendall(reply)
            return
        c.sendall(b"ID:%s\n" % srv.name.encode())
        peers.echo_loop(c)
    return h


@pytest.mark.deadline(40)
def test_health_check_send_expect_and_timeout(ferry, servers):
    good = servers(h_ping(b"+PONG\r\n"), name="good")
    bad = servers(h_ping(b"-ERR not ready\r\n"), name="bad")
    mute = servers(h_ping(None), name="mute")
    f = relay(ferry, good.addr, bad.addr, mute.addr,
              args=["--threads", "1", "--check-interval", "200ms", "--check-timeout", "150ms",
                    "--check-fall", "2", "--check-rise", "2", "--check-send", "PING\r\n", "--check-expect", "+PONG"])
    t0 = time.monotonic()
    for srv in (bad, mute):
        assert wait_state(f, srv.addr, "DOWN", timeout=3), \
            "%s should be DOWN (check expects +PONG, timeout 150ms):\n%s" % (srv.name, f.log()[-3000:])
    assert time.monotonic() - t0 <= scaled(2.5)
    time.sleep(0.5)
    assert not state_lines(f.log(), good.addr, "DOWN"), "the server answering +PONG went DOWN:\n" + f.log()
    got = collections.Counter()
    for _ in range(9):
        c = f.connect()
        c.sendall(b"HELLO\n")
        got[outcome(c)] += 1
        c.close()
    assert got == {"ID:good": 9}, "only the healthy server should get clients: %s" % dict(got)
    assert good.accepted >= 9 + 2, "the good server was not checked (%d connections)" % good.accepted


@pytest.mark.deadline(40)
def test_passive_failures_take_a_server_out_before_checks_notice(ferry, identify, blackhole):
    """With checks on (but slow: interval 10s, so the checker cannot have
    taken B down twice yet), `fall` failed client connects mark B down: after
    2 connect timeouts no client waits for B again."""
    a = identify("A")
    b = blackhole()
    f = relay(ferry, a.addr, b.addr, args=["--threads", "1", "--connect-timeout", "300ms",
                                           "--check-interval", "10s", "--check-timeout", "2s",
                                           "--check-fall", "2", "--check-rise", "2"])
    slow = []
    for i in range(10):
        t0 = time.monotonic()
        assert hello(f) == "A", "request %d was not retried on A" % i
        slow.append(time.monotonic() - t0 >= 0.25)
    assert sum(slow) == 2, \
        "after 2 failed connects (--check-fall 2) B should be out: requests that waited for B: %s" % slow
    assert not state_lines(f.log(), a.addr, "DOWN")


@pytest.mark.deadline(40)
def test_passive_down_is_not_undone_by_a_failing_check(ferry, identify, blackhole):
    """A server passively marked down stays down "until a check passes": the
    checks that keep failing meanwhile (fewer than fall, so the checker
    itself has not called it DOWN yet) must not put it back in rotation."""
    a = identify("A")
    b = blackhole()
    f = relay(ferry, a.addr, b.addr, args=["--threads", "1", "--connect-timeout", "150ms",
                                           "--check-interval", "700ms", "--check-timeout", "300ms",
                                           "--check-fall", "5", "--check-rise", "2"])
    t0 = time.monotonic()
    slow = []
    while time.monotonic() - t0 < 2.6:      # < 5 checks of B: the checker cannot call it DOWN yet
        t = time.monotonic()
        assert hello(f) == "A"
        slow.append(round(time.monotonic() - t0, 2) if time.monotonic() - t >= 0.12 else None)
        time.sleep(0.02)
    waited = [x for x in slow if x is not None]
    assert len(waited) == 5, \
        "B (connect hangs) should cost exactly --check-fall=5 slow requests, then stay out until a check " \
        "passes; %d of %d requests waited for B, at t=%s s" % (len(waited), len(slow), waited)
    if state_lines(f.log(), b.addr, "DOWN"):
        pytest.fail("the checker called B DOWN within 2.6 s with interval 700ms and fall 5: test timing broken")


@pytest.mark.deadline(30)
def test_retry_hides_a_dead_server_without_checks(ferry, identify):
    a, b = identify("A"), identify("B")
    dead = "127.0.0.1:%d" % free_port()
    f = relay(ferry, a.addr, dead, b.addr, args=["--threads", "2"])
    got = collections.Counter(hello(f) for _ in range(30))
    assert sum(got.values()) == 30 and set(got) == {"A", "B"}, dict(got)


# --------------------------------------------------------------------------
# backup servers


@pytest.mark.deadline(40)
def test_backup_only_when_every_primary_fails(ferry, identify):
    p1, p2, bk = identify("P1"), identify("P2"), identify("BK")
    f = relay(ferry, p1.addr, p2.addr, bk.addr + ",backup", args=["--threads", "1"])
    got = collections.Counter(hello(f) for _ in range(8))
    assert got == {"P1": 4, "P2": 4}, "with both primaries up the backup gets nothing: %s" % dict(got)
    stop_listening(p1)
    got = collections.Counter(hello(f) for _ in range(6))
    assert got == {"P2": 6}, "one primary left: it takes everything, not the backup: %s" % dict(got)
    stop_listening(p2)
    got = collections.Counter(hello(f) for _ in range(4))
    assert got == {"BK": 4}, "no primary left: the backup serves: %s" % dict(got)
    identify("P1", port=p1.port)
    got = collections.Counter(hello(f) for _ in range(4))
    assert got == {"P1": 4}, "a primary is back: the backup is left again: %s" % dict(got)
    assert bk.accepted == 4


@pytest.mark.deadline(30)
def test_backup_takes_over_when_primary_is_full(ferry, identify, clients):
    p, bk = identify("P"), identify("BK")
    f = relay(ferry, p.addr + ",maxconn=1", bk.addr + ",backup", args=["--threads", "1"])
    c1, o1 = held(f, clients)
    assert o1 == "ID:P"
    c2, o2 = held(f, clients)
    assert o2 == "ID:BK", "primary full (maxconn=1): the backup should serve rather than queue, got %s" % o2
    c2.close()
    c1.close()
    f.wait_sessions(2)
    assert hello(f) == "P"


# --------------------------------------------------------------------------
# per-server maxconn and the queue


@pytest.mark.deadline(40)
def test_server_maxconn_queues_fifo_and_serves_when_a_slot_frees(ferry, identify, clients):
    a = identify("A")
    f = relay(ferry, a.addr + ",maxconn=2", args=["--threads", "1", "--queue-timeout", "10s"])
    c1, o1 = held(f, clients)
    c2, o2 = held(f, clients)
    assert (o1, o2) == ("ID:A", "ID:A")
    c3 = f.connect()
    clients.append(c3)
    time.sleep(0.15)
    c4 = f.connect()
    clients.append(c4)
    assert outcome(c3, 0.6) == "waiting", "3rd client with maxconn=2 should wait in the queue"
    assert outcome(c4, 0.2) == "waiting"
    assert a.accepted == 2 and a.active == 2, "upstream saw %d connections (maxconn=2)" % a.accepted
    c1.close()
    t0 = time.monotonic()
    assert outcome(c3, 3) == "ID:A", "the first queued client should be served once a slot frees"
    assert time.monotonic() - t0 < scaled(0.5), "the queued client waited %.2f s after the slot freed" % (
        time.monotonic() - t0)
    assert outcome(c4, 0.5) == "waiting", "the second queued client must still wait (FIFO, one slot freed)"
    assert a.accepted == 3, "upstream saw %d connections, want 3 (maxconn=2, one slot freed)" % a.accepted
    c2.close()
    assert outcome(c4, 3) == "ID:A", "the second queued client should be served when the next slot frees"
    for c in (c3, c4):
        c.sendall(b"still-here")
        assert recv_exact(c, 10) == b"still-here"
    # (a.max_active is no measure: the upstream's handler thread of a closed
    # session may not have counted itself out yet when ferry reconnects)
    assert a.accepted == 4


@pytest.mark.deadline(30)
def test_queue_timeout_closes_waiting_client(ferry, identify, clients):
    a = identify("A")
    f = relay(ferry, a.addr + ",maxconn=1", args=["--threads", "1", "--queue-timeout", "600ms"])
    c1, o1 = held(f, clients)
    assert o1 == "ID:A"
    c2 = f.connect()
    clients.append(c2)
    data, how = read_until_close(c2, scaled(4))
    assert data == b"" and how in ("eof", "reset"), "queued client should be closed, got %r %s" % (data, how)
    ss = f.wait_sessions(1, pred=lambda s: s.get("end") == "queue_timeout")
    assert ss, "no session line with end=queue_timeout:\n%s" % f.log()
    d = int(ss[0]["dur_ms"])
    assert 450 <= d <= scaled(2000), "queue timeout 600ms, the session lasted %d ms" % d
    assert a.accepted == 1, "the queued client must not reach the upstream"
    c1.sendall(b"x")
    assert recv_exact(c1, 1) == b"x", "the session holding the slot must be untouched"


@pytest.mark.deadline(30)
def test_queue_size_bounds_the_queue(ferry, identify, clients):
    a = identify("A")
    f = relay(ferry, a.addr + ",maxconn=1", args=["--threads", "1", "--queue-size", "1",
                                                    "--queue-timeout", "10s"])
    c1, _ = held(f, clients)
    c2 = f.connect()
    clients.append(c2)
    time.sleep(0.2)
    c3 = f.connect()
    clients.append(c3)
    t0 = time.monotonic()
    assert outcome(c3, 2) == "closed", "queue-size 1 already holds a client: the next one is closed at once"
    assert time.monotonic() - t0 < scaled(1.5)
    assert outcome(c2, 0.3) == "waiting"
    c1.close()
    assert outcome(c2, 3) == "ID:A", "the queued client should be served when the slot frees"


@pytest.mark.deadline(30)
def test_queued_client_that_leaves_is_forgotten(ferry, identify, clients):
    """A client that gives up while queued leaves the queue: it no longer
    takes a place of --queue-size, its end is logged, and no upstream
    connection is made for it when a slot frees."""
    a = identify("A")
    f = relay(ferry, a.addr + ",maxconn=1", args=["--threads", "1", "--queue-size", "2", "--queue-timeout", "10s"])
    c1, o1 = held(f, clients)
    assert o1 == "ID:A"
    leavers = []
    for rst in (False, True):
        c = f.connect()
        if rst:
            peers.set_linger0(c)
        leavers.append(c)
    assert outcome(leavers[0], 0.3) == "waiting" and outcome(leavers[1], 0.1) == "waiting"
    for c in leavers:       # give up while queued: one FIN, one RST
        c.close()
    problems = []
    logged = f.wait_sessions(2, timeout=2)
    if len(logged) < 2:
        problems.append("2 queued clients closed (FIN, RST) but %d session lines within 2 s" % len(logged))
    c4 = f.connect()
    clients.append(c4)
    o4 = outcome(c4, 0.5)
    if o4 != "waiting":
        problems.append("queue-size 2 and both queued clients gone, yet a new client was %s, not queued" % o4)
    c1.close()
    o4 = outcome(c4, 3) if o4 == "waiting" else o4
    if o4 != "ID:A":
        problems.append("the live queued client was not served when the slot freed: %s" % o4)
    time.sleep(0.2)
    if a.accepted != 2:
        problems.append("the upstream saw %d connections, want 2 (c1 and the live client): ferry connected "
                        "for clients that had left the queue" % a.accepted)
    assert not problems, "\n".join(problems) + "\n--- ferry log:\n" + f.log()


@pytest.mark.deadline(30)
def test_sigterm_with_queued_clients_exits_0(ferry, identify, clients):
    a = identify("A")
    f = relay(ferry, a.addr + ",maxconn=1", args=["--threads", "1", "--queue-timeout", "30s",
                                                    "--drain-timeout", "1s"])
    c1, _ = held(f, clients)
    waiting = [f.connect() for _ in range(3)]
    clients.extend(waiting)
    assert outcome(waiting[0], 0.3) == "waiting"
    f.signal(signal.SIGTERM)
    rc = f.wait(scaled(4))
    f.expect_exit = True
    assert rc == 0, "ferry with queued clients should exit 0 within the drain timeout, got %s" % rc
    for c in waiting:
        data, how = read_until_close(c, scaled(2))
        assert data == b"" and how in ("eof", "reset"), "a queued client was left open: %r %s" % (data, how)


# --------------------------------------------------------------------------
# limits


def open_many(f, n, clients, source=None, port=None):
    out = []
    for _ in range(n):
        c = peers.connect(f.host, port or f.port, timeout=scaled(5), source=source)
        clients.append(c)
        out.append(c)
    return out


@pytest.mark.deadline(30)
def test_maxconn_exact_across_threads(ferry, identify, clients):
    a = identify("A")
    f = relay(ferry, a.addr, args=["--maxconn", "6", "--threads", "2"])
    socks_ = open_many(f, 12, clients)
    res = [outcome(c) for c in socks_]
    got = collections.Counter(res)
    assert got == {"ID:A": 6, "closed": 6}, "--maxconn 6 with 2 threads, 12 concurrent clients: %s" % dict(got)
    ss = limit_lines(f, 6, "maxconn")
    assert len(ss) == 6, "expected 6 session lines end=limit limit=maxconn:\n%s" % f.log()
    # a freed slot is usable again; counts do not leak
    served = [c for c, r in zip(socks_, res) if r == "ID:A"]
    served[0].close()
    assert f.wait_sessions(1, pred=lambda s: s.get("end") == "client_closed"), "the closed session was not logged"
    time.sleep(0.1)
    more = open_many(f, 2, clients)
    got = collections.Counter(outcome(c) for c in more)
    assert got == {"ID:A": 1, "closed": 1}, "after one session ended exactly one more fits: %s" % dict(got)
    for c in clients:
        c.close()
    assert a.wait_active(0, scaled(3)) == 0
    time.sleep(0.3)
    again = open_many(f, 6, clients)
    got = collections.Counter(outcome(c) for c in again)
    assert got == {"ID:A": 6}, "after every session ended, 6 fit again (leaked count?): %s" % dict(got)


@pytest.mark.deadline(30)
def test_maxconn_per_ip_exact_across_threads(ferry, identify, clients):
    a = identify("A")
    f = relay(ferry, a.addr, args=["--maxconn-per-ip", "3", "--threads", "2"])
    five = open_many(f, 8, clients, source="127.0.0.5")
    six = open_many(f, 3, clients, source="127.0.0.6")
    res5 = [outcome(c) for c in five]
    got5 = collections.Counter(res5)
    got6 = collections.Counter(outcome(c) for c in six)
    assert got5 == {"ID:A": 3, "closed": 5}, "--maxconn-per-ip 3, 8 clients from 127.0.0.5: %s" % dict(got5)
    assert got6 == {"ID:A": 3}, "another source IP has its own count: %s" % dict(got6)
    ss = limit_lines(f, 5, "maxconn_per_ip")
    assert len(ss) == 5 and all(s.get("client", "").startswith("127.0.0.5") for s in ss), \
        "expected 5 lines end=limit limit=maxconn_per_ip for 127.0.0.5:\n%s" % f.log()
    # close one served session from .5: exactly one more from .5 fits
    [c for c, r in zip(five, res5) if r == "ID:A"][0].close()
    assert f.wait_sessions(1, pred=lambda s: s.get("end") == "client_closed"), "the closed session was not logged"
    time.sleep(0.1)
    more = open_many(f, 2, clients, source="127.0.0.5")
    got = collections.Counter(outcome(c) for c in more)
    assert got == {"ID:A": 1, "closed": 1}, "after one of its sessions ended, exactly one more fits: %s" % dict(got)


@pytest.mark.deadline(40)
def test_global_maxconn_across_two_listeners(ferry, identify, workdir, clients):
    a = identify("A")
    p1, p2 = free_port(), free_port()
    path = write(workdir, "global.yaml", """\
threads: 2
drain-timeout: 1s
global-maxconn: 4
listeners:
  - {name: one, mode: relay, listen: "127.0.0.1:%d", upstream: "%s"}
  - {name: two, mode: relay, listen: "127.0.0.1:%d", upstream: "%s"}
""" % (p1, a.addr, p2, a.addr))
    f = ferry("run", "-c", path, listen=("127.0.0.1", p1))
    assert peers.wait_until(lambda: listening(f.pid, p2), scaled(5)), "ferry does not listen on %d:\n%s" % (
        p2, f.log())
    on1 = open_many(f, 3, clients, port=p1)
    got1 = collections.Counter(outcome(c) for c in on1)
    assert got1 == {"ID:A": 3}, dict(got1)
    on2 = open_many(f, 3, clients, port=p2)
    got2 = collections.Counter(outcome(c) for c in on2)
    assert got2 == {"ID:A": 1, "closed": 2}, "global-maxconn 4 with 3 sessions on the other listener: %s" % dict(got2)
    ss = limit_lines(f, 2, "global_maxconn")
    assert len(ss) == 2 and all(s.get("listener") == "two" for s in ss), \
        "expected 2 lines end=limit limit=global_maxconn on listener two:\n%s" % f.log()
    on1[0].close()
    assert f.wait_sessions(1, pred=lambda s: s.get("end") == "client_closed"), "the closed session was not logged"
    time.sleep(0.1)
    more = open_many(f, 2, clients, port=p2)
    got = collections.Counter(outcome(c) for c in more)
    assert got == {"ID:A": 1, "closed": 1}, "one global slot freed: exactly one more fits: %s" % dict(got)
    assert a.wait_active(4, scaled(2)) == 4, "upstream has %d sessions, want 4" % a.active


@pytest.mark.deadline(40)
def test_maxconn_refusal_returns_its_global_slot(ferry, identify, workdir, clients):
    """A client refused by a listener's maxconn took a global-maxconn slot
    first; it must give it back, or refusals on one listener starve all."""
    a = identify("A")
    p1, p2 = free_port(), free_port()
    path = write(workdir, "global.yaml", """\
threads: 2
drain-timeout: 1s
global-maxconn: 4
listeners:
  - {name: one, mode: relay, listen: "127.0.0.1:%d", upstream: "%s", maxconn: 1}
  - {name: two, mode: relay, listen: "127.0.0.1:%d", upstream: "%s"}
""" % (p1, a.addr, p2, a.addr))
    f = ferry("run", "-c", path, listen=("127.0.0.1", p1))
    assert peers.wait_until(lambda: listening(f.pid, p2), scaled(5)), "ferry does not listen on %d:\n%s" % (
        p2, f.log())
    _, o = held(f, clients)
    assert o == "ID:A", o
    got1 = collections.Counter(outcome(c) for c in open_many(f, 3, clients, port=p1))
    assert got1 == {"closed": 3}, "maxconn 1 with one session held: %s" % dict(got1)
    ss = limit_lines(f, 3, "maxconn")
    assert len(ss) == 3, "expected 3 lines end=limit limit=maxconn:\n%s" % f.log()
    got2 = collections.Counter(outcome(c) for c in open_many(f, 3, clients, port=p2))
    assert got2 == {"ID:A": 3}, "global-maxconn 4 with 1 session: 3 more fit on the other listener " \
        "(refusals leaked global slots?): %s" % dict(got2)


@pytest.mark.deadline(40)
@pytest.mark.parametrize("limit", ["maxconn", "global_maxconn"])
def test_refusal_returns_its_per_ip_count(ferry, identify, clients, limit):
    """A client refused by --maxconn or --global-maxconn was counted for its
    IP first; the count must be given back, or the IP is locked out."""
    a = identify("A")
    src = "127.0.0.9"
    f = relay(ferry, a.addr, args=["--" + limit.replace("_", "-"), "1", "--maxconn-per-ip", "3",
                                   "--threads", "2"])
    holder, o = held(f, clients, source=src)
    assert o == "ID:A", o
    got = collections.Counter(outcome(c) for c in open_many(f, 3, clients, source=src))
    assert got == {"closed": 3}, "--%s 1 with one session held: %s" % (limit, dict(got))
    # The IP has one session: a refusal that kept its per-IP count would
    # make the third say maxconn_per_ip (1 held + 2 leaked + itself > 3).
    ss = limit_lines(f, 3)
    assert len(ss) == 3 and all(s.get("limit") == limit for s in ss), "expected 3 lines end=limit " \
        "limit=%s (maxconn_per_ip: a refusal leaked its per-IP count):\n%s" % (limit, f.log())
    for c in clients:
        c.close()
    assert f.wait_sessions(4) and a.wait_active(0, scaled(3)) == 0
    assert f.wait_sessions(1, pred=lambda s: s.get("end") == "client_closed"), "the held session was not logged"
    # Sessions one at a time (the limit is 1): a leak of up to 2 would still
    # let them through, so this catches only a bigger one.
    for i in range(3):
        before = len(f.sessions())
        try:
            hello_closed(f, before, source=src)
        except (AssertionError, OSError) as e:
            raise AssertionError("new session %d of 3 from %s refused after all closed (leaked per-IP "
                                 "count?): %s\n%s" % (i + 1, src, e, f.log()[-2000:]))


@pytest.mark.deadline(40)
@pytest.mark.parametrize("rate,burst", [(2, 4), (3, None)], ids=["rate2-burst4", "rate3-default-burst"])
def test_rate_per_ip_with_burst(ferry, identify, clients, rate, burst):
    a = identify("A")
    args = ["--rate-per-ip", str(rate), "--threads", "2"]
    if burst:
        args += ["--rate-burst", str(burst)]
    want = burst or rate
    f = relay(ferry, a.addr, args=args)
    t0 = time.monotonic()
    first = open_many(f, want + 4, clients, source="127.0.0.7")
    got = collections.Counter(outcome(c) for c in first)
    fast = time.monotonic() - t0 < 0.4
    assert got["ID:A"] in ((want,) if fast else (want, want + 1)) and sum(got.values()) == want + 4 \
        and set(got) <= {"ID:A", "closed"}, \
        "rate %d/s burst %d, %d quick connections from one IP: %s" % (rate, want, want + 4, dict(got))
    other = open_many(f, want, clients, source="127.0.0.8")
    got = collections.Counter(outcome(c) for c in other)
    assert got == {"ID:A": want}, "another source IP has its own bucket: %s" % dict(got)
    ss = limit_lines(f, 4, "rate_per_ip")
    assert len(ss) >= 3, "expected end=limit limit=rate_per_ip lines:\n%s" % f.log()
    for c in clients:
        c.close()
    time.sleep(1.0)
    again = open_many(f, rate + 3, clients, source="127.0.0.7")
    got = collections.Counter(outcome(c) for c in again)
    assert rate <= got["ID:A"] <= rate + 1, \
        "after 1 s at %d/s about %d new connections fit: %s" % (rate, rate, dict(got))


FAILING_UPSTREAM = ["refused", "connect_timeout", "queue_timeout"]


@pytest.mark.deadline(40)
@pytest.mark.parametrize("mode", FAILING_UPSTREAM)
def test_limit_counters_do_not_leak_on_failed_sessions(ferry, identify, blackhole, clients, mode):
    """Sessions that end without being relayed give their maxconn,
    maxconn-per-ip and global-maxconn places back."""
    limits = ["--maxconn", "2", "--maxconn-per-ip", "2", "--global-maxconn", "2", "--threads", "2"]
    holder = None
    if mode == "refused":
        f = relay(ferry, "127.0.0.1:%d" % free_port(), args=limits)
        want = "connect_refused"
    elif mode == "connect_timeout":
        f = relay(ferry, blackhole().addr, args=limits + ["--connect-timeout", "200ms"])
        want = "connect_timeout"
    else:
        a = identify("A")
        f = relay(ferry, a.addr + ",maxconn=1", args=["--maxconn", "3", "--maxconn-per-ip", "3",
                                                      "--global-maxconn", "3", "--threads", "1",
                                                      "--queue-timeout", "200ms"])
        holder, o = held(f, clients)
        assert o == "ID:A"
        want = "queue_timeout"
    for i in range(6):
        c = f.connect()
        clients.append(c)
        data, how = read_until_close(c, scaled(3))
        assert data == b"" and how in ("eof", "reset"), (data, how)
        ss = f.wait_sessions(i + 1)
        assert len(ss) == i + 1
        assert ss[i].get("end") == want, "session %d ended %s, want %s (leaked limit count?): %s" % (
            i + 1, ss[i].get("end"), want, ss[i]["_line"])
    if holder is not None:
        holder.sendall(b"ok")
        assert recv_exact(holder, 2) == b"ok"


@pytest.mark.deadline(30)
def test_max_session_time_closes_busy_session(ferry, identify):
    a = identify("A")
    f = relay(ferry, a.addr, args=["--max-session-time", "1s", "--idle-timeout", "60s", "--threads", "1"])
    c = f.connect()
    assert outcome(c) == "ID:A"
    t0 = time.monotonic()
    closed_after = None
    c.settimeout(0.5)
    while time.monotonic() - t0 < scaled(4):
        try:
            c.sendall(b"tick")      # keep it busy: never idle
            d = recv_exact(c, 4)
            assert d == b"tick"
        except (AssertionError, OSError):
            closed_after = time.monotonic() - t0
            break
        time.sleep(0.05)
    assert closed_after is not None, "a busy session outlived --max-session-time 1s by 3 s"
    assert 0.8 <= closed_after <= scaled(2.0), "session closed after %.2f s (max-session-time 1s)" % closed_after
    s = f.wait_sessions(1)
    assert s and s[0].get("end") == "max_session_time", "expected end=max_session_time: %s" % (
        [x["_line"] for x in s])
    # a short session is not affected
    assert hello(f) == "A"


@pytest.mark.deadline(30)
def test_allow_hours(ferry, identify):
    a = identify("A")
    now = local_minute()
    outside = "%s-%s" % (hhmm(now + 10), hhmm(now + 20))
    inside = "%s-%s,%s-%s" % (hhmm(now + 100), hhmm(now + 110), hhmm(now - 10), hhmm(now + 10))
    f = relay(ferry, a.addr, args=["--allow-hours", outside, "--threads", "1"])
    c = f.connect()
    assert outcome(c) == "closed", "--allow-hours %s excludes now (%s): the client should be refused" % (
        outside, hhmm(now))
    ss = limit_lines(f, 1, "hours")
    assert ss, "expected end=limit limit=hours:\n%s" % f.log()
    assert a.accepted == 0
    g = relay(ferry, a.addr, args=["--allow-hours", inside, "--threads", "1"])
    assert hello(g) == "A", "--allow-hours %s includes now (%s): the client should be served" % (inside, hhmm(now))


@pytest.mark.deadline(30)
def test_allow_hours_windows_across_midnight(ferry, identify):
    """Windows whose end is before their start run across midnight: the
    complement of [now-10min, now+10min) excludes now, [now-10, now-20)
    (nearly the whole day) includes it."""
    a = identify("A")
    now = local_minute()
    excl = "%s-%s" % (hhmm(now + 10), hhmm(now - 10))
    incl = "%s-%s" % (hhmm(now - 10), hhmm(now - 20))
    f = relay(ferry, a.addr, args=["--allow-hours", excl, "--threads", "1"])
    assert outcome(f.connect()) == "closed", "--allow-hours %s excludes %s" % (excl, hhmm(now))
    assert limit_lines(f, 1, "hours"), f.log()
    g = relay(ferry, a.addr, args=["--allow-hours", incl, "--threads", "1"])
    assert hello(g) == "A", "--allow-hours %s includes %s" % (incl, hhmm(now))


@pytest.mark.deadline(30)
def test_allow_hours_is_local_time_of_TZ(ferry, identify, monkeypatch):
    """The machine may run on UTC: with TZ set 9 hours ahead, a window around
    the current UTC time is not local now (refused), one around UTC+9 is."""
    a = identify("A")
    monkeypatch.setenv("TZ", "XST-9")       # POSIX: local = UTC + 9 h, no zoneinfo needed
    t = time.gmtime()
    utc = t.tm_hour * 60 + t.tm_min
    local = utc + 9 * 60
    utc_win = "%s-%s" % (hhmm(utc - 10), hhmm(utc + 10))
    local_win = "%s-%s" % (hhmm(local - 10), hhmm(local + 10))
    f = relay(ferry, a.addr, args=["--allow-hours", utc_win, "--threads", "1"])
    assert outcome(f.connect()) == "closed", \
        "TZ=XST-9: --allow-hours %s is around UTC now, not local now (%s): refuse" % (utc_win, hhmm(local))
    g = relay(ferry, a.addr, args=["--allow-hours", local_win, "--threads", "1"])
    assert hello(g) == "A", "TZ=XST-9: --allow-hours %s is around local now: serve" % local_win


@pytest.mark.deadline(20)
def test_cidr_deny_one_loopback_address(ferry, identify):
    a = identify("A")
    f = relay(ferry, a.addr, args=["--deny", "127.0.0.2/32"])
    c = f.connect(source="127.0.0.2")
    assert outcome(c) == "closed", "client 127.0.0.2 is denied"
    assert hello(f, source="127.0.0.3") == "A", "client 127.0.0.3 is not denied"
    ss = f.wait_sessions(2)
    ends = {s.get("client", "").rsplit(":", 1)[0]: s.get("end") for s in ss}
    assert ends.get("127.0.0.2") == "denied", [s["_line"] for s in ss]
    assert a.accepted == 1


def s5_connect(host, port, dst):
    s = peers.connect(host, port, timeout=scaled(5))
    s.sendall(b"\x05\x01\x00")
    assert recv_exact(s, 2, "SOCKS5 method reply") == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(dst.host) + struct.pack("!H", dst.port))
    r = recv_exact(s, 10, "SOCKS5 reply")
    assert r[:2] == b"\x05\x00", "SOCKS5 CONNECT failed: %r" % r
    return s


@pytest.mark.deadline(30)
def test_socks_over_limit_gets_protocol_refusal(ferry, identify, clients):
    a = identify("A")
    f = ferry("socks", "--maxconn", "1", "--threads", "1")
    s = s5_connect(f.host, f.port, a)
    clients.append(s)
    assert recv_line(s) == b"ID:A\n"
    results = collections.Counter()
    for i in range(5):
        c, fast = tfo_send(f.host, f.port, b"\x05\x01\x00", scaled(3))
        clients.append(c)
        data, how = read_until_close(c, scaled(3))
        assert data in (b"", b"\x05\xff") and how in ("eof", "reset"), \
            "SOCKS5 client over --maxconn: expected 05 FF then close, got %r (%s)" % (data, how)
        results["s5:" + data.hex()] += 1
    for i in range(3):
        req = b"\x04\x01" + struct.pack("!H", a.port) + socket.inet_aton("127.0.0.1") + b"\x00"
        c, fast = tfo_send(f.host, f.port, req, scaled(3))
        clients.append(c)
        data, how = read_until_close(c, scaled(3))
        assert (data == b"" or (len(data) == 8 and data[:2] == b"\x00\x5b")) and how in ("eof", "reset"), \
            "SOCKS4 client over --maxconn: expected 00 5B ... then close, got %r (%s)" % (data, how)
        results["s4:" + data[:2].hex()] += 1
    assert results["s5:05ff"] >= 3 and results["s4:005b"] >= 2, \
        "the greeting was in ferry's socket at accept time; refusals seen: %s" % dict(results)
    ss = limit_lines(f, 8, "maxconn")
    assert len(ss) == 8, "expected 8 lines end=limit limit=maxconn:\n%s" % f.log()
    s.sendall(b"ok")
    assert recv_exact(s, 2) == b"ok", "the admitted SOCKS session must be untouched"


@pytest.mark.deadline(30)
@pytest.mark.parametrize("flag,limit", [("--maxconn-per-ip", "maxconn_per_ip"), ("--rate-per-ip", "rate_per_ip"),
                                        ("--global-maxconn", "global_maxconn")])
def test_socks_other_limits_answer_05_ff(ferry, identify, clients, flag, limit):
    a = identify("A")
    f = ferry("socks", flag, "1", "--threads", "2")
    s = s5_connect(f.host, f.port, a)
    clients.append(s)
    assert recv_line(s) == b"ID:A\n"
    seen = collections.Counter()
    for _ in range(4):
        c, _fast = tfo_send(f.host, f.port, b"\x05\x02\x00\x02", scaled(3))
        clients.append(c)
        data, how = read_until_close(c, scaled(3))
        assert data in (b"", b"\x05\xff") and how in ("eof", "reset"), (data, how)
        seen[data.hex()] += 1
    assert seen["05ff"] >= 3, "SOCKS5 clients over %s: %s" % (flag, dict(seen))
    assert len(limit_lines(f, 4, limit)) == 4, f.log()


BAD_CLI = [
    (["--balance", "fastest"], "fastest"),
    (["--allow-hours", "25:00-26:00"], "25:00"),
    (["--allow-hours", "10:00-10:00"], "10:00-10:00|--allow-hours"),
    (["--check-interval", "soon"], "soon"),
    (["--check-fall", "0x"], "0x|--check-fall"),
    (["--queue-timeout", "5parsecs"], "5parsecs"),
    (["--rate-per-ip", "-3"], "-3|--rate-per-ip"),
    (["--max-session-time", "forever"], "forever"),
]


@pytest.mark.parametrize("extra,culprit", BAD_CLI, ids=[b[0][0] + "-%d" % i for i, b in enumerate(BAD_CLI)])
def test_cli_bad_lb_and_limit_values_one_line_exit_2(extra, culprit):
    args = ["relay", "-l", "127.0.0.1:%d" % free_port(), "-u", "127.0.0.1:9"] + extra
    r = run_ferry(*args)
    lines = [ln for ln in r.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    assert r.returncode == 2, "ferry %s: exit %d, expected 2 (%r)" % (" ".join(args), r.returncode, lines)
    assert len(lines) == 1 and lines[0].startswith("ferry: "), lines
    assert any(c in lines[0] for c in culprit.split("|")), "error should name %r: %r" % (culprit, lines[0])


@pytest.mark.parametrize("server,culprit", [("127.0.0.1:9,maxconn=lots", "lots|maxconn"),
                                            ("127.0.0.1:9,weight=2,bogus", "bogus"),
                                            ("127.0.0.1:9,backup=maybe", "backup")])
def test_cli_bad_server_options_one_line_exit_2(server, culprit):
    r = run_ferry("relay", "-l", "127.0.0.1:%d" % free_port(), "-u", "127.0.0.1:8", "-u", server)
    lines = [ln for ln in r.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, (r.returncode, lines)
    assert any(c in lines[0] for c in culprit.split("|")), "error should name %r: %r" % (culprit, lines[0])


# --------------------------------------------------------------------------
# the same from a config file


LB_YAML = """\
threads: 1
drain-timeout: 1s
log-level: info
global-maxconn: 1000
upstreams:
  g:
    balance: leastconn
    retries: 2
    health-check: {interval: 200ms, timeout: 200ms, rise: 2, fall: 2, expect: "ID:"}
    servers:
      - "%(a)s"
      - {address: "%(b)s", maxconn: 1}
      - {address: "%(c)s", backup: true}
listeners:
  - name: lb
    mode: relay
    listen: "127.0.0.1:%(port)d"
    upstream: g
    queue-size: 16
    queue-timeout: 2s
    maxconn: 100
    maxconn-per-ip: 50
    rate-per-ip: 1000
    rate-burst: 2000
    max-session-time: 1h
    allow-hours: "00:00-24:00"
    deny: [127.0.0.2/32]
"""


@pytest.mark.deadline(60)
def test_yaml_group_leastconn_backup_maxconn_health(ferry, identify, workdir, clients):
    a, b, c = identify("A"), identify("B"), identify("C")
    port = free_port()
    path = write(workdir, "lb.yaml", LB_YAML % {"a": a.addr, "b": b.addr, "c": c.addr, "port": port})
    r = run_ferry("check", "-c", path)
    err = r.stderr.decode()
    assert r.returncode == 0, "ferry check failed:\n" + err
    assert "not yet enforced" not in err and "warning" not in err, \
        "these keys are enforced now: no warnings expected:\n" + err
    assert re.match(r"^%s: ok \(1 listeners?, 1 upstream groups?, 0 warnings\)$" % re.escape(path),
                    r.stdout.decode().strip()), r.stdout

    f = ferry("run", "-c", path, listen=("127.0.0.1", port))
    h1, o1 = held(f, clients)
    h2, o2 = held(f, clients)
    assert sorted([o1, o2]) == ["ID:A", "ID:B"], "leastconn: 2 sessions on 2 idle servers: %s %s" % (o1, o2)
    h3, o3 = held(f, clients)
    assert o3 == "ID:A", "B is full (maxconn 1), A is eligible: not the backup, got %s" % o3
    # end the session on B: A holds 2, B none -> leastconn picks B every time
    (h2 if o2 == "ID:B" else h1).close()
    n0 = len(f.wait_sessions(1))
    seq = [hello_closed(f, n0 + i) for i in range(5)]
    assert seq == ["B"] * 5, "leastconn from the config file: %s" % seq
    assert outcome(f.connect(source="127.0.0.2")) == "closed", "deny from the config file"
    # both primaries stop: the backup serves, health checks mark them DOWN
    stop_listening(a)
    stop_listening(b)
    assert hello(f) == "C", "primaries refused: the backup serves"
    for srv in (a, b):
        assert wait_state(f, srv.addr, "DOWN", timeout=3), \
            "health-check from the file should mark %s DOWN:\n%s" % (srv.name, f.log()[-3000:])
    assert not state_lines(f.log(), c.addr, "DOWN")
    assert [hello(f) for _ in range(3)] == ["C"] * 3
    # a primary comes back: UP after rise checks, and the backup is left
    identify("A", port=a.port)
    assert wait_state(f, a.addr, "UP", timeout=3), "A should be UP again:\n" + f.log()[-3000:]
    assert [hello(f) for _ in range(3)] == ["A"] * 3, "a primary is UP: the backup gets nothing"
