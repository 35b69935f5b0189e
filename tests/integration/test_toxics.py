"""Integration tests for toxics (`--toxic`, the `toxic:` config key): fault
injection with toxiproxy's names and behaviour, plus bitflip.

They check behaviour and bounds, never ferry's raw speed: time bounds are
lower bounds (a toxic must delay at least what it says) with generous,
scaled upper margins. Measured numbers are printed with a MEASURE prefix
(`pytest -s` shows them).
"""

import os
import socket
import struct
import threading
import time

import pytest

import peers
from conftest import curl, file_sha256, free_port, run_ferry, scaled
from peers import read_until_close, recv_exact, sha256

PW = "toxic-test-password"
MiB = 1024 * 1024


def measure(what, value):
    print("MEASURE %s: %s" % (what, value))


def relay(ferry, upstream, *toxics, args=()):
    a = ["relay", "-u", upstream]
    for t in toxics:
        a += ["--toxic", t]
    return ferry(*a, *args)


def socks(ferry, *toxics, args=()):
    a = ["socks"]
    for t in toxics:
        a += ["--toxic", t]
    return ferry(*a, *args)


def s5_connect(f, target_host, target_port, timeout=10.0):
    """A SOCKS5 CONNECT by hand (no auth, IPv4 literal); returns the socket."""
    s = f.connect(timeout=scaled(timeout))
    s.sendall(b"\x05\x01\x00")
    assert recv_exact(s, 2, "method selection") == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(target_host) + struct.pack("!H", target_port))
    rep = recv_exact(s, 10, "SOCKS5 reply")
    assert rep[:2] == b"\x05\x00", "SOCKS5 CONNECT failed: %r" % rep
    return s


def rtts(s, n=5, size=16):
    """Round trips of `size` bytes through an echo server."""
    out = []
    for i in range(n):
        msg = bytes([65 + i]) * size
        t0 = time.monotonic()
        s.sendall(msg)
        got = recv_exact(s, size, "echo %d" % i)
        out.append(time.monotonic() - t0)
        assert got == msg, "echo %d came back changed: %r" % (i, got)
    return out


def bits_differ(a, b):
    assert len(a) == len(b), "lengths differ: %d vs %d" % (len(a), len(b))
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return bin(x).count("1")


def bytes_differ(a, b):
    return sum(1 for i in range(len(a)) if a[i] != b[i])


def source(servers, data):
    return servers(peers.make_source(data))


def one_session(f, pred=None):
    ss = f.wait_sessions(1, timeout=10, pred=pred)
    assert ss, "no session log line; log:\n%s" % f.log()[-2000:]
    return ss[0]


def h_record(srv, c, peer):
    """Read until EOF or reset; record ('got', bytes, how)."""
    buf = bytearray()
    how = "eof"
    while True:
        try:
            d = c.recv(1 << 20)
        except ConnectionResetError:
            how = "reset"
            break
        except socket.timeout:
            how = "timeout"
            break
        if not d:
            break
        buf += d
    srv.record(("got", bytes(buf), how))


# --------------------------------------------------------------------------
# latency


@pytest.mark.deadline(30)
def test_latency_downstream_adds_at_least_the_setting_to_each_round_trip(ferry, servers):
    echo = servers(peers.h_echo)
    f = relay(ferry, echo.addr, "latency:latency=200")
    s = f.connect()
    r = rtts(s, 5)
    measure("latency=200 downstream, RTTs ms", [round(x * 1000, 1) for x in r])
    for x in r:
        assert x >= 0.200, "a round trip took %.1f ms, below the 200 ms latency" % (x * 1000)
        assert x < 0.200 + scaled(0.5), "a round trip took %.1f ms, far above 200 ms" % (x * 1000)
    s.close()


@pytest.mark.deadline(30)
def test_latency_both_ways_adds_up_and_jitter_stays_in_range(ferry, servers):
    echo = servers(peers.h_echo)
    f = relay(ferry, echo.addr, "latency:latency=100,stream=upstream",
              "latency:latency=150,jitter=50,stream=downstream")
    s = f.connect()
    r = rtts(s, 8)
    measure("latency up=100 + down=150+-50, RTTs ms", [round(x * 1000, 1) for x in r])
    for x in r:
        assert x >= 0.200, "RTT %.1f ms is below 100 + (150 - 50) ms" % (x * 1000)
        assert x < 0.300 + scaled(0.5), "RTT %.1f ms is far above 100 + 150 + 50 ms" % (x * 1000)
    s.close()


@pytest.mark.deadline(30)
def test_latency_does_not_serialize_throughput(ferry, servers):
    """Each chunk is delayed from its own arrival: 10 chunks sent 50 ms
    apart through latency=300 arrive ~50 ms apart after 300 ms, not one per
    300 ms."""
    def handler(srv, c, peer):
        for i in range(10):
            c.sendall(b"%d" % i)
            time.sleep(0.05)
        c.shutdown(socket.SHUT_WR)
        c.recv(1)
    src = servers(handler)
    f = relay(ferry, src.addr, "latency:latency=300")
    t0 = time.monotonic()
    s = f.connect()
    data, how = read_until_close(s, scaled(10))
    el = time.monotonic() - t0
    measure("10 chunks 50 ms apart through latency=300: total s", round(el, 3))
    assert data == b"0123456789" and how == "eof"
    assert el >= 0.300 + 0.45, "the last chunk left %.3f s after connect, before 300 ms + 9 x 50 ms" % el
    assert el < 3.0 * scaled(1), "chunks look serialized behind the latency: %.3f s" % el


# --------------------------------------------------------------------------
# bandwidth


@pytest.mark.deadline(60)
def test_bandwidth_download_time_is_bytes_over_rate(ferry, servers):
    data = os.urandom(500_000)
    src = source(servers, data)
    f = relay(ferry, src.addr, "bandwidth:rate=250")      # 250 KB/s -> 2.0 s
    t0 = time.monotonic()
    s = f.connect()
    got, how = read_until_close(s, scaled(20))
    el = time.monotonic() - t0
    measure("500 kB at rate=250 KB/s: s (ideal 2.0), KB/s", (round(el, 3), round(len(got) / el / 1000, 1)))
    assert how == "eof" and got == data, "%s after %d bytes" % (how, len(got))
    assert el >= 2.0 - 0.005, "500 kB at 250 KB/s took %.3f s (< 2 s): rate not enforced" % el
    assert el < 2.0 + scaled(2.0), "500 kB at 250 KB/s took %.3f s" % el


@pytest.mark.deadline(60)
def test_bandwidth_upload(ferry, servers):
    sink = servers(peers.h_sink_hash)
    f = relay(ferry, sink.addr, "bandwidth:rate=200,stream=upstream")    # 300 kB -> 1.5 s
    data = os.urandom(300_000)
    s = f.connect(timeout=scaled(20))
    t0 = time.monotonic()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    line = peers.recv_line(s, what="sink digest")
    el = time.monotonic() - t0
    measure("300 kB upload at rate=200 KB/s: s (ideal 1.5)", round(el, 3))
    assert line.split() == [b"300000", sha256(data).encode()]
    assert el >= 1.5 - 0.005, "upload finished in %.3f s, faster than the rate allows" % el
    assert el < 1.5 + scaled(2.0)


# --------------------------------------------------------------------------
# bitflip


@pytest.mark.deadline(30)
def test_bitflip_every_nth_byte_flips_exactly_that_many_bits_downstream(ferry, servers):
    data = os.urandom(1_000_000)
    src = source(servers, data)
    f = relay(ferry, src.addr, "bitflip:every=1000")
    s = f.connect()
    got, how = read_until_close(s, scaled(20))
    assert how == "eof" and len(got) == len(data)
    nbits, nbytes = bits_differ(data, got), bytes_differ(data, got)
    measure("bitflip every=1000 over 1 MB: bits, bytes changed", (nbits, nbytes))
    assert nbits == 1000 and nbytes == 1000
    assert all(data[i] != got[i] for i in range(999, len(data), 1000)), "not every 1000th byte was flipped"


@pytest.mark.deadline(30)
def test_bitflip_upstream_and_probability(ferry, servers):
    rec = servers(h_record)
    f = relay(ferry, rec.addr, "bitflip:probability=0.01,stream=upstream")
    data = os.urandom(1_000_000)
    s = f.connect(timeout=scaled(20))
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    ev = rec.wait_events(1, scaled(20))
    assert ev, "the upstream saw no end of stream"
    _, got, how = ev[0]
    assert how == "eof" and len(got) == len(data)
    nbits = bits_differ(data, got)
    measure("bitflip probability=0.01 over 1 MB upstream: bits (expected 10000)", nbits)
    assert 9000 <= nbits <= 11000, "%d bits flipped, expected about 10000" % nbits


@pytest.mark.deadline(30)
def test_bitflip_off_or_other_direction_or_toxicity_0_leaves_bytes_identical(ferry, servers):
    data = os.urandom(1_000_000)
    src = source(servers, data)
    for toxics in ((), ("bitflip:every=1,stream=upstream",), ("bitflip:every=1,toxicity=0",)):
        f = relay(ferry, src.addr, *toxics)
        s = f.connect()
        got, how = read_until_close(s, scaled(20))
        s.close()
        assert how == "eof" and got == data, "with %s the download changed (%d bytes, %s)" % (
            toxics or "no toxic", len(got), how)
    rec = servers(h_record)
    f = relay(ferry, rec.addr, "bitflip:every=1,toxicity=0,stream=both")
    s = f.connect()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    ev = rec.wait_events(1, scaled(20))
    assert ev and ev[0][1] == data, "bitflip with toxicity=0 changed the upload"


# --------------------------------------------------------------------------
# limit_data, timeout, reset_peer, slow_close


@pytest.mark.deadline(30)
def test_limit_data_downstream_closes_after_exactly_n_bytes(ferry, servers):
    data = os.urandom(1_000_000)
    src = source(servers, data)
    f = relay(ferry, src.addr, "limit_data:bytes=12345")
    s = f.connect()
    got, how = read_until_close(s, scaled(10))
    measure("limit_data bytes=12345 downstream: client got, how", (len(got), how))
    assert (len(got), how) == (12345, "eof"), "client got %d bytes then %s" % (len(got), how)
    assert got == data[:12345]
    s.close()
    line = one_session(f)
    # down= counts what ferry read from the upstream, before the toxics
    assert line["end"] == "toxic" and int(line["down"]) >= 12345, line["_line"]


@pytest.mark.deadline(30)
def test_limit_data_upstream_closes_after_exactly_n_bytes(ferry, servers):
    rec = servers(h_record)
    f = relay(ferry, rec.addr, "limit_data:bytes=70000,stream=upstream")
    data = os.urandom(1_000_000)
    s = f.connect(timeout=scaled(10))
    s.sendall(data)          # the rest is read and discarded while ferry lingers
    ev = rec.wait_events(1, scaled(10))
    assert ev, "the upstream was not closed"
    _, got, how = ev[0]
    measure("limit_data bytes=70000 upstream: server got, how", (len(got), how))
    assert (len(got), how) == (70000, "eof") and got == data[:70000]
    rest, how = read_until_close(s, scaled(10))
    assert (rest, how) == (b"", "eof"), "the client should get a clean EOF, got %s" % how
    assert one_session(f)["end"] == "toxic"


@pytest.mark.deadline(30)
def test_limit_data_small_through_socks_counts_only_relayed_bytes(ferry, servers):
    """The SOCKS handshake is not counted or touched: the reply arrives
    whole, then exactly 5 relayed bytes."""
    src = source(servers, b"0123456789" * 100)
    f = socks(ferry, "limit_data:bytes=5")
    s = s5_connect(f, src.host, src.port)
    got, how = read_until_close(s, scaled(10))
    assert (got, how) == (b"01234", "eof")


@pytest.mark.deadline(30)
def test_timeout_stops_data_and_closes_after_the_timeout(ferry, servers):
    rec = servers(h_record)
    f = relay(ferry, rec.addr, "timeout:timeout=500,stream=both")
    t0 = time.monotonic()
    s = f.connect()
    s.sendall(b"hello")
    got, how = read_until_close(s, scaled(10))
    el = time.monotonic() - t0
    measure("timeout=500: closed after s", round(el, 3))
    assert (got, how) == (b"", "eof") and el >= 0.5, "%r %s after %.3f s" % (got, how, el)
    assert el < 0.5 + scaled(1.0)
    ev = rec.wait_events(1, scaled(5))
    assert ev and ev[0][1] == b"", "data passed a timeout toxic: %r" % (ev,)
    assert one_session(f)["end"] == "toxic"


@pytest.mark.deadline(30)
def test_timeout_0_never_closes_and_drops_only_its_direction(ferry, servers):
    rec = servers(h_record)
    f = relay(ferry, rec.addr, "timeout:timeout=0")    # downstream only
    s = f.connect()
    s.sendall(b"upstream still flows")
    got, how = read_until_close(s, scaled(1.5))
    assert (got, how) == (b"", "timeout"), "timeout=0 closed or let data through: %r %s" % (got, how)
    s.shutdown(socket.SHUT_WR)
    ev = rec.wait_events(1, scaled(5))
    assert ev and ev[0][1] == b"upstream still flows"


@pytest.mark.deadline(30)
def test_reset_peer_gives_the_client_econnreset(ferry, servers):
    rec = servers(peers.h_identify)     # its greeting is the first downstream data
    f = relay(ferry, rec.addr, "reset_peer:timeout=300")
    t0 = time.monotonic()
    s = f.connect()
    s.settimeout(scaled(10))
    with pytest.raises(ConnectionResetError):
        data = s.recv(100)
        pytest.fail("recv returned %r instead of ECONNRESET" % data)
    el = time.monotonic() - t0
    measure("reset_peer timeout=300: ECONNRESET after s", round(el, 3))
    assert el >= 0.3 and el < 0.3 + scaled(1.0)
    line = one_session(f)
    assert line["end"] == "toxic", line["_line"]


@pytest.mark.deadline(30)
def test_reset_peer_upstream_resets_both_sides(ferry, servers):
    rec = servers(h_record)
    f = relay(ferry, rec.addr, "reset_peer:timeout=0,stream=upstream")
    s = f.connect()
    s.sendall(b"x")
    s.settimeout(scaled(10))
    with pytest.raises(ConnectionResetError):
        s.recv(100)
    ev = rec.wait_events(1, scaled(5))
    assert ev and ev[0][1:] == (b"", "reset"), "the upstream saw %r" % (ev,)


@pytest.mark.deadline(30)
def test_slow_close_delays_the_eof_not_the_data(ferry, servers):
    src = source(servers, b"hello")
    f = relay(ferry, src.addr, "slow_close:delay=500")
    t0 = time.monotonic()
    s = f.connect()
    s.settimeout(scaled(5))
    assert recv_exact(s, 5, "data") == b"hello"
    t_data = time.monotonic() - t0
    got, how = read_until_close(s, scaled(5))
    t_eof = time.monotonic() - t0
    measure("slow_close delay=500: data at s, EOF at s", (round(t_data, 3), round(t_eof, 3)))
    assert (got, how) == (b"", "eof")
    assert t_eof >= 0.5 and t_eof - t_data >= 0.4, "EOF came %.3f s after the data" % (t_eof - t_data)


# --------------------------------------------------------------------------
# slicer


@pytest.mark.deadline(30)
def test_slicer_delivers_all_bytes_in_small_reads(ferry, servers):
    data = os.urandom(20000)
    src = source(servers, data)
    f = relay(ferry, src.addr, "slicer:average_size=100,size_variation=20,delay=2000")
    s = f.connect()
    s.settimeout(scaled(10))
    reads = []
    got = bytearray()
    t0 = time.monotonic()
    while True:
        d = s.recv(65536)
        if not d:
            break
        reads.append(len(d))
        got += d
    el = time.monotonic() - t0
    small = sum(1 for n in reads if n <= 120)
    measure("slicer avg=100 var=20 delay=2ms, 20 kB: reads, max, <=120, s",
            (len(reads), max(reads), small, round(el, 3)))
    assert bytes(got) == data, "the slicer lost or changed bytes"
    # pieces are at most average + variation; a slow reader may merge two
    assert len(reads) >= 20000 // 120 // 2 and small >= 0.8 * len(reads), reads[:40]
    assert el >= (20000 // 120 - 1) * 0.002, "pieces did not wait 2 ms between them"


# --------------------------------------------------------------------------
# toxicity, memory bound, CLI and config


@pytest.mark.deadline(30)
def test_toxicity_0_has_no_effect(ferry, servers):
    data = os.urandom(300_000)
    src = source(servers, data)
    f = relay(ferry, src.addr, "limit_data:bytes=1,toxicity=0", "reset_peer:timeout=0,toxicity=0",
              "timeout:timeout=1,toxicity=0,stream=both", "bitflip:every=1,toxicity=0")
    for _ in range(5):
        s = f.connect()
        got, how = read_until_close(s, scaled(10))
        s.close()
        assert (how, got == data) == ("eof", True), "toxicity=0 toxics acted: %d bytes, %s" % (len(got), how)
    ends = [x["end"] for x in f.wait_sessions(5)]
    assert "toxic" not in ends, ends


@pytest.mark.deadline(90)
def test_latency_on_fast_streams_is_backpressure_not_memory(ferry, servers):
    """latency=3000 on streams a peer fills as fast as it can: ferry holds at
    most TOXQ_MAX_BYTES per direction, the rest waits in the peers' socket
    buffers; its RSS must not grow with what the peers try to send."""
    flood = servers(peers.h_flood)
    sink = servers(peers.h_silent)
    f = relay(ferry, flood.addr, "latency:latency=3000,stream=both")
    f_up = relay(ferry, sink.addr, "latency:latency=3000,stream=both")
    time.sleep(0.2)
    base = f.rss_kib() + f_up.rss_kib()
    stop = threading.Event()
    received = [0] * 3
    sent_up = [0] * 3
    first = [None] * 3

    started = [0.0] * 3

    def reader(i, s):
        t0 = started[i]
        while not stop.is_set():
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not d:
                return
            if first[i] is None:
                first[i] = time.monotonic() - t0
            received[i] += len(d)

    def writer(i, s):
        chunk = b"U" * 65536
        while not stop.is_set():
            try:
                sent_up[i] += s.send(chunk)
            except socket.timeout:
                continue
            except OSError:
                return

    socks_ = []
    threads = []
    for i in range(3):
        started[i] = time.monotonic()
        d = f.connect()
        d.settimeout(0.2)
        u = f_up.connect()
        u.settimeout(0.2)
        socks_ += [d, u]
        threads += [threading.Thread(target=reader, args=(i, d), daemon=True),
                    threading.Thread(target=writer, args=(i, u), daemon=True)]
    for t in threads:
        t.start()
    peak = 0
    deadline = time.monotonic() + max(6.0, scaled(4))
    while time.monotonic() < deadline:
        peak = max(peak, f.rss_kib() + f_up.rss_kib())
        time.sleep(0.1)
    with flood.lock:
        flooded = sum(getattr(flood, "counters", {}).values())
    stop.set()
    for t in threads:
        t.join(5)
    for s in socks_:
        s.close()
    growth = (peak - base) / 1024
    measure("latency=3000, 3 download + 3 upload floods for %.0f s: RSS growth MiB, "
            "server sent MiB, client got MiB, first byte s, client sent MiB" % max(6.0, scaled(4)),
            (round(growth, 1), round(flooded / MiB, 1), round(sum(received) / MiB, 2),
             [round(x, 2) if x else x for x in first], round(sum(sent_up) / MiB, 1)))
    assert growth < 40, "ferry grew by %.1f MiB holding delayed streams" % growth
    assert all(x is not None and x >= 3.0 for x in first), "first bytes after %s s, expected >= 3 s" % first
    # backpressure: the flood server could only fill the socket buffers and
    # ferry's bounded queues, not push 200 MB through
    assert flooded - sum(received) < 40 * MiB, "%d bytes vanished into ferry" % (flooded - sum(received))


@pytest.mark.parametrize("bad,why", [
    ("latency:latency=abc", "not a number"),
    ("latency:latency=-5", "'-5' must not be negative (a whole number from 0 to"),
    ("nosuch", "unknown toxic"),
    ("latency:rate=10", "no attribute"),
    ("latency:stream=sideways", "stream"),
    ("bitflip:probability=2", "probability"),
    ("slicer:average_size=0", "slicer"),
    ("latency:toxicity=1.5", "toxicity"),
])
def test_bad_toxic_exits_2_with_one_line_naming_the_flag(bad, why):
    r = run_ferry("relay", "-u", "127.0.0.1:1", "-l", "127.0.0.1:%d" % free_port(), "--toxic", bad)
    err = r.stderr.decode()
    assert r.returncode == 2, "rc=%d stderr=%r" % (r.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--toxic" in lines[0] and why in lines[0], err


def test_two_toxics_with_the_same_name_are_refused():
    r = run_ferry("relay", "-u", "127.0.0.1:1", "-l", "127.0.0.1:%d" % free_port(),
                  "--toxic", "latency:latency=1", "--toxic", "latency:latency=2")
    assert r.returncode == 2 and b"two toxics named 'latency_downstream'" in r.stderr, r.stderr


@pytest.mark.deadline(30)
def test_yaml_toxic_key_works_with_run_c(ferry, servers, workdir):
    echo = servers(peers.h_echo)
    rec = servers(h_record)
    p1, p2 = free_port(), free_port()
    cfg = os.path.join(workdir, "toxics.yaml")
    with open(cfg, "w") as fh:
        fh.write("listeners:\n"
                 "  - name: slow\n    mode: relay\n    listen: 127.0.0.1:%d\n    upstream: %s\n"
                 "    toxic:\n      - latency:latency=200\n      - bitflip:every=1,stream=upstream,toxicity=0\n"
                 "  - name: flip\n    mode: relay\n    listen: 127.0.0.1:%d\n    upstream: %s\n"
                 "    toxic: bitflip:every=10,stream=upstream\n" % (p1, echo.addr, p2, rec.addr))
    chk = run_ferry("check", "-c", cfg)
    assert chk.returncode == 0, chk.stderr
    f = ferry("run", "-c", cfg, listen=("127.0.0.1", p1))
    s = peers.connect("127.0.0.1", p1, timeout=scaled(10))
    r = rtts(s, 3)
    measure("YAML latency=200: RTTs ms", [round(x * 1000, 1) for x in r])
    assert min(r) >= 0.200
    s.close()
    data = os.urandom(100_000)
    s = peers.connect("127.0.0.1", p2, timeout=scaled(10))
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    ev = rec.wait_events(1, scaled(10))
    assert ev and bits_differ(data, ev[0][1]) == 10_000
    s.close()
    assert f.alive()


# --------------------------------------------------------------------------
# through real clients: SOCKS (python and curl), ss-local -> ss-server


@pytest.mark.deadline(30)
def test_socks_latency_and_bitflip_after_the_handshake(ferry, servers):
    echo = servers(peers.h_echo)
    f = socks(ferry, "latency:latency=200")
    s = s5_connect(f, echo.host, echo.port)
    r = rtts(s, 3)
    measure("SOCKS5 latency=200: RTTs ms", [round(x * 1000, 1) for x in r])
    assert min(r) >= 0.200 and max(r) < 0.200 + scaled(0.5)
    s.close()

    data = os.urandom(500_000)
    src = source(servers, data)
    f2 = socks(ferry, "bitflip:every=500")
    s = s5_connect(f2, src.host, src.port)     # the reply parsed: the handshake was not flipped
    got, how = read_until_close(s, scaled(10))
    assert how == "eof" and bits_differ(data, got) == 1000
    s.close()
    line = one_session(f2)
    assert line.get("proto") == "socks5" and line["end"] != "toxic", line["_line"]


@pytest.mark.deadline(60)
def test_curl_socks5_hostname_with_latency_and_bitflip(ferry, http4, bigfile, workdir, fakedns):
    dns = fakedns(records={"web.ferry.test": ["127.0.0.1"]})
    # (a latency caps throughput at 256 KiB per latency: ~1.3 MB/s here)
    f = socks(ferry, "latency:latency=200", "bitflip:every=1000000", args=("--dns-server", dns.addr))
    out = os.path.join(workdir, "mid.bin")
    t0 = time.monotonic()
    r = curl("--socks5-hostname", f.addr, "-o", out, "http://web.ferry.test:%d/mid.bin" % http4.port)
    el = time.monotonic() - t0
    assert r.returncode == 0, r.stderr.decode()
    with open(out, "rb") as fh:
        got = fh.read()
    with open(os.path.join(bigfile["dir"], "mid.bin"), "rb") as fh:
        want = fh.read()
    # ~6.3 MB plus ~200 bytes of headers: the 1st..6th millionth bytes are in the body
    nbits = bits_differ(want, got)
    measure("curl --socks5-hostname, latency=200 + bitflip every=1e6 on 6.3 MB: s, bits", (round(el, 3), nbits))
    assert el >= 0.200
    assert nbits == 6
    assert file_sha256(out) != bigfile["mid"]


@pytest.mark.deadline(60)
def test_ss_local_to_ss_server_toxics_on_the_plaintext_side(ferry, servers):
    """bitflip on ss-server's plaintext: the client gets exactly N flipped
    bits and no AEAD error (flipping ciphertext would fail the tag); latency
    on ss-local's client side."""
    data = os.urandom(1_000_000)
    src = source(servers, data)
    srv = ferry("ss-server", "-k", PW, "--toxic", "bitflip:every=1000",
                "--toxic", "limit_data:bytes=600000,stream=upstream")
    loc = ferry("ss-local", "-s", srv.addr, "-k", PW, "--toxic", "latency:latency=200,stream=upstream")
    s = s5_connect(loc, src.host, src.port, timeout=20)
    got, how = read_until_close(s, scaled(20))
    assert how == "eof" and len(got) == len(data), "%s after %d bytes; ss-server log:\n%s" % (
        how, len(got), srv.log()[-1500:])
    nbits = bits_differ(data, got)
    measure("ss-local -> ss-server, bitflip every=1000 on 1 MB plaintext: bits", nbits)
    assert nbits == 1000
    s.close()
    ends = [x["end"] for x in srv.wait_sessions(1)]
    assert ends, "no ss-server session line"
    assert "crypto_error" not in ends, ends

    echo = servers(peers.h_echo)
    s = s5_connect(loc, echo.host, echo.port, timeout=20)
    r = rtts(s, 3)
    measure("ss-local latency=200 upstream: RTTs ms", [round(x * 1000, 1) for x in r])
    assert min(r) >= 0.200 and max(r) < 0.200 + scaled(1.0)
    s.close()

    # limit_data upstream on ss-server counts plaintext: exactly 600000 bytes reach the target
    rec = servers(h_record)
    s = s5_connect(loc, rec.host, rec.port, timeout=20)
    up = os.urandom(1_000_000)
    s.sendall(up)
    ev = rec.wait_events(1, scaled(20))
    assert ev and len(ev[0][1]) == 600000 and ev[0][1] == up[:600000] and ev[0][2] == "eof", \
        "target got %s" % ((len(ev[0][1]), ev[0][2]) if ev else None,)
    s.close()


# --------------------------------------------------------------------------
# early data: bytes sent behind the handshake (or while the upstream connect
# is under way) are relayed bytes, and go through the toxics like the rest


def s5_pipelined(addr_host, addr_port, target_host, target_port, payload, timeout=10.0):
    """Greeting, CONNECT and payload in one send: the payload is early data."""
    s = peers.connect(addr_host, addr_port, timeout=scaled(timeout))
    s.sendall(b"\x05\x01\x00" + b"\x05\x01\x00\x01" + socket.inet_aton(target_host)
              + struct.pack("!H", target_port) + payload)
    assert recv_exact(s, 2, "method selection") == b"\x05\x00"
    rep = recv_exact(s, 10, "SOCKS5 reply")
    assert rep[:2] == b"\x05\x00", "SOCKS5 CONNECT failed: %r" % rep
    return s


@pytest.mark.deadline(30)
def test_socks_early_data_goes_through_the_toxics(ferry, servers):
    rec = servers(h_record)
    f = socks(ferry, "bitflip:every=1,stream=upstream")
    s = s5_pipelined(f.host, f.port, rec.host, rec.port, b"\x00" * 100)
    s.shutdown(socket.SHUT_WR)
    ev = rec.wait_events(1, scaled(10))
    assert ev and len(ev[0][1]) == 100
    flipped = sum(1 for b in ev[0][1] if b)
    assert flipped == 100, "%d of 100 early-data bytes bypassed bitflip" % (100 - flipped)
    s.close()

    echo = servers(peers.h_echo)
    f2 = socks(ferry, "latency:latency=300,stream=upstream")
    t0 = time.monotonic()
    s = s5_pipelined(f2.host, f2.port, echo.host, echo.port, b"ping")
    assert recv_exact(s, 4, "echo of early data") == b"ping"
    el = time.monotonic() - t0
    measure("SOCKS5 pipelined early data, latency=300 upstream: echo after s", round(el, 3))
    assert el >= 0.300, "early data bypassed the upstream latency (%.3f s)" % el
    s.close()


@pytest.mark.deadline(30)
def test_ss_early_data_goes_through_the_toxics_on_both_ends(ferry, servers):
    rec = servers(h_record)
    # ss-server: the first chunk carries the address and the first data
    srv = ferry("ss-server", "-k", PW, "--toxic", "bitflip:every=1,stream=upstream")
    loc = ferry("ss-local", "-s", srv.addr, "-k", PW)
    s = s5_pipelined(loc.host, loc.port, rec.host, rec.port, b"\x00" * 100)
    s.shutdown(socket.SHUT_WR)
    ev = rec.wait_events(1, scaled(10))
    assert ev and len(ev[0][1]) == 100
    assert sum(1 for b in ev[0][1] if b) == 100, "ss-server let early data past bitflip: %r" % ev[0][1]
    s.close()
    # ss-local: the client's pipelined data, before the address header is sent
    srv2 = ferry("ss-server", "-k", PW)
    loc2 = ferry("ss-local", "-s", srv2.addr, "-k", PW, "--toxic", "bitflip:every=1,stream=upstream")
    s = s5_pipelined(loc2.host, loc2.port, rec.host, rec.port, b"\x00" * 100)
    s.shutdown(socket.SHUT_WR)
    ev = rec.wait_events(2, scaled(10))
    assert len(ev) == 2 and len(ev[1][1]) == 100, ev
    assert sum(1 for b in ev[1][1] if b) == 100, "ss-local let early data past bitflip: %r" % ev[1][1]
    s.close()
