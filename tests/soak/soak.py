#!/usr/bin/env python3
"""Soak and fault test for ferry (issue #8).

    tests/soak/soak.py --ferry build/ferry --duration 180

Starts its own upstreams (echo servers in child processes, some of which are
SIGKILLed and restarted; a server that accepts and never reads; one that RSTs
mid-stream; a listener whose connect() hangs; a UDP DNS server that answers
one name and never answers another), one ferry with five listeners from a
YAML config, and a second ferry under `ulimit -n 64`. For --duration seconds
well-behaved clients move random payloads through ferry and check the sha256
of the echo, while fault injectors run concurrently and check ferry's
reaction to each fault. Afterwards it compares ferry's fds, RSS and
CLOSE_WAIT sockets with the baseline taken after warm-up, prints a markdown
summary and exits 1 on any violation (each printed).

Who may fail (so "every well-behaved transfer completed" is an honest claim):
- well-behaved transfers (relay `good`, SOCKS5/SOCKS4/SOCKS4a to the good
  echo servers, 1-byte-at-a-time clients) go only to servers no fault
  touches: any failure is a violation;
- transfers through relay `flaky` (three servers, health checks, retries; one
  at a time is SIGKILLed and restarted) may fail only if a kill happened
  while they ran (and, when the client already read the server's ID line,
  only a kill of that server): those are counted as expected failures, any
  other failure is a violation.

Also usable as `soak.py --serve KIND --port N [--name X]`: the upstream
servers run as child processes of the driver (so they can be SIGKILLed and
do not share the driver's GIL).
"""

import argparse
import collections
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(HERE, "..", "integration")

threading.stack_size(512 * 1024)

# --------------------------------------------------------------------------
# upstream servers (child processes)


def serve(kind, port, name):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(1024)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))

    def echo(c):
        if name:
            c.sendall(b"ID:%s\n" % name.encode())
        while True:
            d = c.recv(1 << 18)
            if not d:
                break
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)

    def rst(c):
        # read and echo a few KiB, then reset the connection mid-stream
        # (or as soon as the client pauses for 200 ms)
        want = random.randint(1, 64 * 1024)
        got = 0
        c.settimeout(0.2)
        try:
            while got < want:
                d = c.recv(min(want - got, 65536))
                if not d:
                    break
                got += len(d)
                c.sendall(d)
        except socket.timeout:
            pass
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def hole(c):
        # accept, never read, never answer; let go after a while
        time.sleep(30)

    handler = {"echo": echo, "rst": rst, "hole": hole}[kind]

    def run(c):
        try:
            c.settimeout(60)
            handler(c)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=run, args=(c,), daemon=True).start()


# --------------------------------------------------------------------------
# driver

H = None        # tests/integration/conftest.py: Ferry, /proc helpers
peers = None    # tests/integration/peers.py


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.transfers = collections.defaultdict(lambda: collections.Counter())  # path -> ok/failed/expected
        self.bytes = collections.Counter()
        self.faults = collections.Counter()       # fault -> injected
        self.reactions = collections.Counter()    # fault -> ferry reacted as required
        self.violations = []
        self.notes = []
        self.kills = []                           # (t, name)
        self.probes = collections.Counter()
        self.probe_max = 0.0

    def count(self, path, what, nbytes=0):
        with self.lock:
            self.transfers[path][what] += 1
            self.bytes[path] += nbytes

    def fault(self, name, reacted=True, why=None):
        with self.lock:
            self.faults[name] += 1
            if reacted:
                self.reactions[name] += 1
            elif len([v for v in self.violations if v.startswith(name + ":")]) < 5:
                self.violations.append("%s: %s" % (name, why))

    def violate(self, msg):
        with self.lock:
            if len(self.violations) < 200:
                self.violations.append(msg)


class Soak:
    def __init__(self, args):
        self.args = args
        self.scale = H.SCALE
        self.stats = Stats()
        self.stop = threading.Event()
        self.procs = {}        # name -> Popen (upstream servers)
        self.ports = {}
        self.threads = []
        self.workdir = args.workdir or tempfile.mkdtemp(prefix="ferry-soak-")
        self.pool = os.urandom(8 << 20)
        self.samples = []
        self.fdx_cpu_max = self.fdx_recover_max = 0.0   # the fd-exhaustion fault's worst

    # ---- setup

    def start_server(self, name, kind, port=None, ident=None):
        if port is None:
            port = H.free_port()
        argv = [sys.executable, os.path.abspath(__file__), "--serve", kind, "--port", str(port)]
        if ident:
            argv += ["--name", ident]
        for _ in range(50):
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
            if peers.wait_until(lambda: p.poll() is not None or H.listening(p.pid, port), 5):
                if p.poll() is None:
                    self.procs[name] = p
                    self.ports[name] = port
                    return port
            p.kill()
            p.wait()
            time.sleep(0.1)  # port still held (a killed server's connections in TIME_WAIT do not block SO_REUSEADDR)
        raise RuntimeError("upstream %s did not start on port %d" % (name, port))

    def setup(self):
        for n in ("good1", "good2"):
            self.start_server(n, "echo")
        for n in ("flaky1", "flaky2", "flaky3"):
            self.start_server(n, "echo", ident=n)
        self.start_server("rst", "rst")
        self.start_server("hole", "hole")
        self.hang = peers.Blackhole("127.0.0.1")
        self.hang_ok = self.hang.verify_hangs()
        if not self.hang_ok:
            self.stats.notes.append("connect-hang fault skipped: a full listen queue does not drop SYNs here")
        self.dns = peers.FakeDNS(records={"echo.soak.test": ["127.0.0.1"]}, silent_suffixes=("slow.soak.test",))
        lp = {n: H.free_port() for n in ("socks", "good", "flaky", "rst", "hole", "fdx")}
        self.lp = lp
        P = self.ports
        cfg = """\
threads: 2
log-level: info
drain-timeout: 2s
upstreams:
  flaky:
    balance: roundrobin
    retries: 2
    servers: ["127.0.0.1:{f1}", "127.0.0.1:{f2}", "127.0.0.1:{f3}"]
    health-check: {{ interval: 500ms, rise: 2, fall: 2, timeout: 400ms, expect: "ID:" }}
listeners:
  - name: socks
    mode: socks
    listen: 127.0.0.1:{socks}
    dns-server: ["{dns}"]
    resolve-timeout: 1s
    connect-timeout: 1s
    handshake-timeout: 2s
    idle-timeout: 4s
  - name: good
    mode: relay
    listen: 127.0.0.1:{good}
    upstream: ["127.0.0.1:{g1}", "127.0.0.1:{g2}"]
    idle-timeout: 10s
  - name: flaky
    mode: relay
    listen: 127.0.0.1:{flaky}
    upstream: flaky
    connect-timeout: 1s
    idle-timeout: 10s
  - name: rst
    mode: relay
    listen: 127.0.0.1:{rst}
    upstream: "127.0.0.1:{rstp}"
  - name: hole
    mode: relay
    listen: 127.0.0.1:{hole}
    upstream: "127.0.0.1:{holep}"
    idle-timeout: 2s
""".format(f1=P["flaky1"], f2=P["flaky2"], f3=P["flaky3"], g1=P["good1"], g2=P["good2"],
           rstp=P["rst"], holep=P["hole"], dns=self.dns.addr, **lp)
        path = os.path.join(self.workdir, "soak.yaml")
        with open(path, "w") as f:
            f.write(cfg)
        chk = subprocess.run([self.args.ferry, "check", "-c", path], capture_output=True, text=True)
        if chk.returncode != 0:
            raise RuntimeError("ferry check -c %s failed:\n%s%s" % (path, chk.stdout, chk.stderr))
        self.ferry = H.Ferry([self.args.ferry, "run", "-c", path], "127.0.0.1", lp["socks"], self.workdir,
                             env=H.ferry_env())
        for n in ("good", "flaky", "rst", "hole"):
            if not peers.wait_until(lambda: H.listening(self.ferry.pid, lp[n]), H.scaled(5)):
                raise RuntimeError("ferry does not listen on %s (%d)" % (n, lp[n]))

        # a second ferry under a low open-files limit (soft = hard: ferry
        # raises its soft limit to the hard one)
        def lowfd():
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.args.fdx_nofile, self.args.fdx_nofile))
        self.fdx = H.Ferry([self.args.ferry, "relay", "--threads", "1", "--drain-timeout", "2s",
                            "-l", "127.0.0.1:%d" % lp["fdx"], "-u", "127.0.0.1:%d" % P["good1"]],
                           "127.0.0.1", lp["fdx"], self.workdir, env=H.ferry_env(), preexec_fn=lowfd)
        # wait for the flaky group to be up before load
        time.sleep(1.2)

    # ---- client helpers

    def payload(self, maxlog=22):
        n = int(2 ** random.uniform(0, maxlog))
        off = random.randrange(0, len(self.pool) - n)
        return memoryview(self.pool)[off:off + n]

    def conn(self, port, timeout=None):
        return peers.connect("127.0.0.1", port, timeout=timeout or H.scaled(10))

    @staticmethod
    def send_slow(s, data, gap):
        for i in range(len(data)):
            s.sendall(data[i:i + 1])
            time.sleep(gap)

    def socks5(self, host, port, one_byte=False, timeout=None, early=None):
        """Connected SOCKS5 socket, or raises with the reply code in the message.
        early: bytes sent with the greeting and request in one write,
        before any reply (a pipelining client)."""
        s = self.conn(self.lp["socks"], timeout)
        try:
            send = (lambda d: self.send_slow(s, d, 0.003)) if one_byte else s.sendall
            if host[0].isdigit():
                a = b"\x01" + socket.inet_aton(host)
            else:
                a = b"\x03" + bytes([len(host)]) + host.encode()
            req = b"\x05\x01\x00" + a + struct.pack("!H", port)
            if early is not None:
                send(b"\x05\x01\x00" + req + early)
            else:
                send(b"\x05\x01\x00")
            g = peers.recv_exact(s, 2, "SOCKS5 method reply")
            if g != b"\x05\x00":
                raise AssertionError("SOCKS5 method reply %r" % g)
            if early is None:
                send(req)
            r = peers.recv_exact(s, 4, "SOCKS5 reply")
            if r[1] != 0:
                raise Socks5Refused(r[1])
            alen = {1: 4, 4: 16}.get(r[3])
            if alen is None:
                alen = peers.recv_exact(s, 1, "bnd len")[0]
            peers.recv_exact(s, alen + 2, "SOCKS5 bound address")
            return s
        except BaseException:
            s.close()
            raise

    def socks4(self, host, port, timeout=None):
        s = self.conn(self.lp["socks"], timeout)
        try:
            if host[0].isdigit():
                req = b"\x04\x01" + struct.pack("!H", port) + socket.inet_aton(host) + b"soak\0"
            else:
                req = b"\x04\x01" + struct.pack("!H", port) + b"\0\0\0\x01" + b"soak\0" + host.encode() + b"\0"
            s.sendall(req)
            r = peers.recv_exact(s, 8, "SOCKS4 reply")
            if r[1] != 0x5A:
                raise AssertionError("SOCKS4 reply %#04x" % r[1])
            return s
        except BaseException:
            s.close()
            raise

    def echo_check(self, s, data, want_id=False, slow_gap=0.0, chunk_gap=0.0, sent=0):
        """Send data (but its first `sent` bytes, already sent), half-close,
        read the echo to EOF; compare sha256. Returns (ok, id_or_None, detail)."""
        whole, data = data, data[sent:]
        s.settimeout(H.scaled(20))
        ident = None
        if want_id:
            ident = peers.recv_line(s, what="server ID").strip().decode()[3:]
        err = []

        def sender():
            try:
                if slow_gap:
                    self.send_slow(s, data, slow_gap)
                elif chunk_gap:
                    for i in range(0, len(data), 4096):
                        s.sendall(data[i:i + 4096])
                        time.sleep(chunk_gap)
                else:
                    s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                err.append(e)
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        try:
            n, digest = peers.recv_hashed(s, 1 << 18)
        finally:
            t.join(H.scaled(20))
        if err:
            return False, ident, "send: %r (echoed %d of %d)" % (err[0], n, len(data))
        if n != len(whole) or digest != peers.sha256(whole):
            return False, ident, "echo of %d bytes came back as %d bytes, sha256 %s" % (
                len(whole), n, "differs" if n == len(whole) else "n/a")
        return True, ident, ""

    # ---- well-behaved load

    def good_worker(self, path):
        P = self.ports
        while not self.stop.is_set():
            one_byte = path.endswith("1byte")
            data = self.payload(9 if one_byte else 22)
            dst = P[random.choice(("good1", "good2"))]
            t0 = time.monotonic()
            try:
                if path.startswith("relay good"):   # "relay good", "relay good 1byte"
                    s = self.conn(self.lp["good"])
                elif path == "socks5 ip":
                    s = self.socks5("127.0.0.1", dst)
                elif path == "socks5 domain":
                    s = self.socks5("echo.soak.test", dst)
                elif path == "socks5 pipelined":
                    sent = random.randint(0, min(len(data), 4000))
                    s = self.socks5("127.0.0.1", dst, early=bytes(data[:sent]))
                elif path == "socks5 1byte":
                    s = self.socks5("127.0.0.1", dst, one_byte=True)
                elif path == "socks4 ip":
                    s = self.socks4("127.0.0.1", dst)
                elif path == "socks4a domain":
                    s = self.socks4("echo.soak.test", dst)
                with s:
                    ok, _, why = self.echo_check(s, data, slow_gap=0.002 if one_byte else 0,
                                                 sent=sent if path == "socks5 pipelined" else 0)
            except (OSError, AssertionError) as e:
                ok, why = False, repr(e)
            if ok:
                self.stats.count(path, "ok", len(data))
            else:
                self.stats.count(path, "failed")
                self.stats.violate("well-behaved transfer failed: %s, %d bytes, after %.1fs: %s"
                                   % (path, len(data), time.monotonic() - t0, why))
            if one_byte:
                self.stats.fault("1-byte client")
            self.stop.wait(random.uniform(0, 0.05))

    def flaky_worker(self, paced=False):
        """paced: 64-256 KiB sent 4 KiB every 10 ms, so that kills often
        catch a transfer in flight."""
        while not self.stop.is_set():
            data = self.payload(21) if not paced else self.payload(18)
            t0 = time.monotonic()
            ident = None
            try:
                with self.conn(self.lp["flaky"]) as s:
                    ok, ident, why = self.echo_check(s, data, want_id=True, chunk_gap=0.01 if paced else 0)
            except (OSError, AssertionError) as e:
                ok, why = False, repr(e)
            t1 = time.monotonic()
            if ok:
                self.stats.count("relay flaky", "ok", len(data))
            else:
                with self.stats.lock:
                    kills = [n for (t, n) in self.stats.kills if t0 - 0.05 <= t <= t1]
                if kills and (ident is None or ident in kills):
                    self.stats.count("relay flaky", "expected")
                else:
                    self.stats.count("relay flaky", "failed")
                    self.stats.violate("relay flaky transfer failed with no kill of its server while it ran "
                                       "(server %s, kills during it: %s): %s" % (ident, kills, why))
            self.stop.wait(random.uniform(0, 0.05))

    # ---- fault injectors

    def fault_loop(self, name, fn, gap):
        while not self.stop.is_set():
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - an injector bug must show, not kill the run
                self.stats.fault(name, False, "injector raised %r" % e)
            self.stop.wait(random.uniform(*gap))

    def f_kill(self):
        name = random.choice(("flaky1", "flaky2", "flaky3"))
        p = self.procs[name]
        with self.stats.lock:
            self.stats.kills.append((time.monotonic(), name))
        p.kill()
        p.wait()
        self.stop.wait(random.uniform(0.3, 2.0))
        with self.stats.lock:
            self.stats.kills.append((time.monotonic(), name))   # a restart ends its window too
        self.start_server(name, "echo", port=self.ports[name], ident=name)
        # new clients must keep succeeding while a server is down or coming back:
        # checked by flaky_worker (a failure with no kill while it ran is a violation)
        self.stats.fault("upstream killed+restarted")
        self.stop.wait(random.uniform(1.0, 2.5))

    def f_hole(self):
        """Relay to a server that accepts and never reads: the client's bytes
        pile up, then ferry's idle timeout (2 s) must close the session."""
        s = self.conn(self.lp["hole"])
        with s:
            s.setblocking(False)
            chunk = b"h" * 65536
            sent = 0
            t_end = time.monotonic() + 0.5
            while time.monotonic() < t_end and sent < (8 << 20):
                try:
                    sent += s.send(chunk)
                except BlockingIOError:
                    time.sleep(0.02)
            t0 = time.monotonic()
            how, secs = peers.wait_closed(s, H.scaled(6))
            waited = time.monotonic() - t0
            self.stats.fault("upstream accepts, never answers", how in ("eof", "reset"),
                             "ferry did not close the session within %.1fs of idle (idle-timeout 2s): %s"
                             % (waited, how))

    def f_hole_socks(self):
        """SOCKS CONNECT to the never-answering server, then the client gives up."""
        s = self.socks5("127.0.0.1", self.ports["hole"])
        with s:
            s.sendall(os.urandom(random.randint(1, 100000)))
            self.stop.wait(random.uniform(0.1, 1.0))
            if random.random() < 0.5:
                peers.set_linger0(s)
        self.stats.fault("upstream accepts, never answers")

    def f_rst(self):
        """Relay and SOCKS to a server that RSTs mid-stream: the client must
        see the connection end (reset or EOF) promptly, not hang."""
        if random.random() < 0.5:
            s = self.conn(self.lp["rst"])
        else:
            s = self.socks5("127.0.0.1", self.ports["rst"])
        with s:
            s.settimeout(H.scaled(5))
            err = []

            def sender():
                try:
                    s.sendall(bytes(self.payload(18)))
                except OSError as e:
                    err.append(e)
            t = threading.Thread(target=sender, daemon=True)
            t.start()
            _, how = peers.read_until_close(s, H.scaled(5))
            t.join(H.scaled(5))
        self.stats.fault("upstream RST mid-stream", how in ("eof", "reset"),
                         "client not told within %.0fs that the upstream reset (%s)" % (H.scaled(5), how))

    def f_vanish(self):
        """A client disappears mid-transfer (RST, close without reading, or
        close after the SOCKS request, while ferry resolves its name, or while
        ferry's connect hangs)."""
        variant = random.randrange(6)
        port = self.ports[random.choice(("good1", "good2"))]
        if variant in (4, 5):
            s = self.conn(self.lp["socks"])
            if variant == 4:
                name = b"v%d.slow.soak.test" % random.randrange(1 << 30)
                a = b"\x03" + bytes([len(name)]) + name + b"\0\x50"
            else:
                a = b"\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", self.hang.port)
            s.sendall(b"\x05\x01\x00\x05\x01\x00" + a)
            peers.recv_exact(s, 2, "method reply")
            time.sleep(random.uniform(0, 0.5))
            if random.random() < 0.5:
                peers.set_linger0(s)
            s.close()
        elif variant == 3:
            s = self.conn(self.lp["socks"])
            s.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", port))
            s.close()
        else:
            s = self.socks5("127.0.0.1", port) if random.random() < 0.5 else self.conn(self.lp["good"])
            data = bytes(self.payload(22))
            s.setblocking(False)
            want = random.randint(1, len(data))
            sent = 0
            t_end = time.monotonic() + 2
            while sent < want and time.monotonic() < t_end:
                try:
                    sent += s.send(data[sent:want])
                except BlockingIOError:
                    time.sleep(0.005)
                if variant == 0:
                    try:
                        s.recv(65536)
                    except BlockingIOError:
                        pass
            if variant in (0, 1):
                peers.set_linger0(s)
            s.close()
        self.stats.fault("client vanishes mid-transfer")

    def f_slowloris(self):
        """A batch of SOCKS clients trickle a greeting that never ends; ferry
        must cut each at handshake-timeout (2 s)."""
        socks_ = []
        for _ in range(10):
            s = self.conn(self.lp["socks"])
            s.sendall(b"\x05\x7f")     # 127 methods follow...
            socks_.append(s)
        t0 = time.monotonic()
        bound = H.scaled(2 + 2)
        open_ = list(socks_)
        while open_ and time.monotonic() - t0 < bound:
            for s in list(open_):
                try:
                    s.send(b"\x01")
                except OSError:
                    open_.remove(s)
                    continue
                s.setblocking(False)
                try:
                    if s.recv(64) == b"":
                        open_.remove(s)
                except BlockingIOError:
                    pass
                except OSError:
                    open_.remove(s)
            time.sleep(0.4)
        for s in socks_:
            s.close()
            self.stats.fault("slowloris handshake", s not in open_,
                             "a trickling SOCKS greeting was still open after %.0fs (handshake-timeout 2s)" % bound)

    def f_burst(self):
        """A connection storm: 300 clients at once on the SOCKS listener, each
        leaving after a greeting (half of them) or at once. The prober must
        keep getting answers."""
        cs = []
        for _ in range(300):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", self.lp["socks"]))
            except BlockingIOError:
                pass
            cs.append(c)
        time.sleep(0.2)
        for c in cs:
            try:
                if random.random() < 0.5:
                    c.send(b"\x05\x01\x00")
            except OSError:
                pass
        time.sleep(0.1)
        for c in cs:
            c.close()
        self.stats.fault("connection storm (300 at once)")

    def f_garbage(self):
        """Random bytes to the SOCKS port (or a SOCKS5 greeting then garbage):
        ferry must close the connection, promptly, and carry on."""
        s = self.conn(self.lp["socks"])
        with s:
            junk = os.urandom(random.randint(1, 600))
            if random.random() < 0.5:
                junk = b"\x05\x01\x00" + junk
            elif junk[0] in (4, 5):
                junk = b"\xff" + junk
            try:
                s.sendall(junk)
            except OSError:
                pass
            how, _ = peers.wait_closed(s, H.scaled(4))
        self.stats.fault("garbage", how in ("eof", "reset"),
                         "ferry kept a garbage-speaking client open for %.0fs (%s)" % (H.scaled(4), how))

    def f_dns(self):
        """CONNECT to a name whose DNS server never answers: a failure reply
        must come after resolve-timeout (1 s), within a bound."""
        name = "n%d.slow.soak.test" % random.randrange(1 << 30)
        t0 = time.monotonic()
        bound = H.scaled(1 + 2)
        try:
            if random.random() < 0.7:
                s = self.socks5(name, 80, timeout=bound)
            else:
                s = self.socks4(name, 80, timeout=bound)
            s.close()
            self.stats.fault("DNS timeout", False, "CONNECT to a name that never resolves succeeded")
            return
        except Socks5Refused:
            ok, why = True, ""
        except (OSError, AssertionError) as e:
            ok = "SOCKS4 reply 0x5b" in str(e)
            why = repr(e)
        dt = time.monotonic() - t0
        self.stats.fault("DNS timeout", ok and dt <= bound,
                         "no failure reply %.1fs after CONNECT to an unresolvable name (%s)" % (dt, why))

    def f_hang(self):
        """CONNECT to an address whose connect() hangs: a failure reply after
        connect-timeout (1 s), within a bound."""
        t0 = time.monotonic()
        bound = H.scaled(1 + 2)
        try:
            s = self.socks5("127.0.0.1", self.hang.port, timeout=bound)
            s.close()
            ok, why = False, "CONNECT succeeded"
        except Socks5Refused:
            ok, why = True, ""
        except (OSError, AssertionError) as e:
            ok, why = False, repr(e)
        dt = time.monotonic() - t0
        self.stats.fault("upstream connect hangs", ok and dt <= bound,
                         "no failure reply %.1fs after CONNECT to a hanging address (%s)" % (dt, why))

    def f_fdx(self):
        """Drive the second ferry (ulimit -n 64) out of fds: it must stay up,
        not spin, keep serving the session it already has, and serve again
        once the flood closes."""
        f = self.fdx
        problems = []
        old = self.conn(self.lp["fdx"])
        old.settimeout(H.scaled(5))
        probe = os.urandom(1000)
        old.sendall(probe)
        if peers.recv_exact(old, len(probe), "old session echo") != probe:
            raise AssertionError("fdx: echo mismatch before the flood")
        flood = []
        try:
            for _ in range(3 * self.args.fdx_nofile):
                c = socket.socket()
                c.setblocking(False)
                try:
                    c.connect(("127.0.0.1", self.lp["fdx"]))
                except BlockingIOError:
                    pass
                flood.append(c)
            time.sleep(H.scaled(0.7))
            if not f.alive():
                problems.append("ferry died")
            else:
                fds = f.fd_count()
                if fds < self.args.fdx_nofile - 8:
                    self.stats.notes.append("fdx: one flood reached only %d of %d fds" % (fds, self.args.fdx_nofile))
                c0, t0 = f.cpu_seconds(), time.monotonic()
                time.sleep(1.5)
                cpu = (f.cpu_seconds() - c0) / (time.monotonic() - t0)
                self.fdx_cpu_max = max(self.fdx_cpu_max, cpu)
                if cpu > 0.3:
                    problems.append("%.0f%% CPU while out of fds (spin)" % (cpu * 100))
                try:
                    old.sendall(probe)
                    if peers.recv_exact(old, len(probe), "old session echo") != probe:
                        problems.append("the session opened before the flood echoed wrong bytes")
                except (OSError, AssertionError) as e:
                    problems.append("the session opened before the flood broke: %r" % e)
        finally:
            for c in flood:
                c.close()
            old.close()
        t0 = time.monotonic()
        recovered = None
        while time.monotonic() - t0 < H.scaled(5):
            try:
                with self.conn(self.lp["fdx"], timeout=H.scaled(2)) as s:
                    data = bytes(self.payload(16))
                    if self.echo_check(s, data)[0]:
                        recovered = time.monotonic() - t0
                        break
            except (OSError, AssertionError):
                pass
            time.sleep(0.1)
        if recovered is None:
            problems.append("no transfer through it succeeded within %.0fs after the flood closed" % H.scaled(5))
        else:
            self.fdx_recover_max = max(self.fdx_recover_max, recovered)
        self.stats.fault("fd exhaustion (ulimit -n %d)" % self.args.fdx_nofile, not problems, "; ".join(problems))

    # ---- observers

    def prober(self):
        """Every 100 ms a new client on the SOCKS listener must get its
        greeting answered within the bound."""
        bound = H.scaled(self.args.probe_bound)
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with peers.connect("127.0.0.1", self.lp["socks"], timeout=bound) as s:
                    s.sendall(b"\x05\x01\x00")
                    r = peers.recv_exact(s, 2, "greeting reply")
                dt = time.monotonic() - t0
                ok = r == b"\x05\x00" and dt <= bound
            except (OSError, AssertionError) as e:
                dt = time.monotonic() - t0
                ok = False
                r = repr(e)
            with self.stats.lock:
                self.stats.probes["ok" if ok else "late/failed"] += 1
                self.stats.probe_max = max(self.stats.probe_max, dt)
            if not ok:
                self.stats.violate("probe not answered within %.1fs (%.2fs): %r" % (bound, dt, r))
            self.stop.wait(max(0.0, 0.1 - (time.monotonic() - t0)))

    def sampler(self):
        while not self.stop.is_set():
            if not self.ferry.alive() or not self.fdx.alive():
                self.stats.violate("a ferry process exited during the soak")
                self.stop.set()
                return
            try:
                self.samples.append((time.monotonic(), H.rss_kib(self.ferry.pid), H.fd_count(self.ferry.pid)))
            except OSError:
                pass
            self.stop.wait(0.25)

    # ---- measurements

    @staticmethod
    def tcp_states():
        st = {}
        for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(fn) as f:
                next(f)
                for line in f:
                    p = line.split()
                    st[p[9]] = p[3]
        return st

    def fd_kinds(self, pid):
        """Counts of ferry's fds: tcp sockets by state, other sockets, pipes,
        other."""
        st = self.tcp_states()
        k = collections.Counter()
        for t in H.fd_targets(pid):
            if t.startswith("socket:["):
                s = st.get(t[8:-1])
                if s is None:
                    k["sock_other"] += 1
                elif s == "0A":
                    k["listen"] += 1
                elif s == "08":
                    k["close_wait"] += 1
                    k["tcp"] += 1
                else:
                    k["tcp"] += 1
            elif t.startswith("pipe:"):
                k["pipe"] += 1
            else:
                k["other"] += 1
        k["total"] = sum(v for n, v in k.items() if n != "close_wait")
        return k

    def settled(self, pid, secs=1.5):
        """fd kinds with the fewest non-listening TCP sockets over secs
        (health checks open a socket now and then)."""
        best = None
        t_end = time.monotonic() + secs
        while True:
            k = self.fd_kinds(pid)
            if best is None or (k["tcp"], k["total"]) < (best["tcp"], best["total"]):
                best = k
            if time.monotonic() > t_end:
                return best
            time.sleep(0.1)

    # ---- run

    def run(self):
        a = self.args
        t_begin = time.monotonic()
        self.setup()
        self.t_setup = time.monotonic() - t_begin
        # warm-up: every well-behaved path once, every pool touched
        t_start = time.monotonic()
        for path in PATHS:
            for _ in range(3):
                self.one_warm(path)
        time.sleep(0.5)
        self.base = self.settled(self.ferry.pid)
        self.base_rss = H.rss_kib(self.ferry.pid)
        self.base_fdx = self.settled(self.fdx.pid)
        self.base_cpu = self.ferry.cpu_seconds()
        self.stats.transfers.clear()
        self.stats.bytes.clear()

        def spawn(fn, *args):
            t = threading.Thread(target=fn, args=args, daemon=True)
            t.start()
            self.threads.append(t)
        for path in PATHS:
            for _ in range(2 if path in ("relay good", "socks5 ip") else 1):
                spawn(self.good_worker, path)
        for paced in (False, False, True, True):
            spawn(self.flaky_worker, paced)
        faults = [
            ("upstream killed+restarted", self.f_kill, (0.0, 0.5)),
            ("upstream accepts, never answers", self.f_hole, (0.5, 2.0)),
            ("upstream accepts, never answers", self.f_hole_socks, (0.2, 1.0)),
            ("upstream RST mid-stream", self.f_rst, (0.1, 0.6)),
            ("client vanishes mid-transfer", self.f_vanish, (0.05, 0.4)),
            ("slowloris handshake", self.f_slowloris, (0.5, 2.0)),
            ("garbage", self.f_garbage, (0.05, 0.3)),
            ("connection storm (300 at once)", self.f_burst, (2.0, 5.0)),
            ("DNS timeout", self.f_dns, (0.2, 1.0)),
            ("fd exhaustion", self.f_fdx, (2.0, 4.0)),
        ]
        if self.hang_ok:
            faults.append(("upstream connect hangs", self.f_hang, (0.2, 1.0)))
        for name, fn, gap in faults:
            spawn(self.fault_loop, name, fn, gap)
        spawn(self.prober)
        spawn(self.sampler)

        # --duration is the whole run: setup, warm-up, load, then up to
        # TEARDOWN_S for the last clients, the settle and the checks
        load_end = max(t_begin + a.duration - TEARDOWN_S, t_start + 10)
        while time.monotonic() < load_end and not self.stop.is_set():
            time.sleep(0.2)
        self.stop.set()
        for t in self.threads:
            t.join(H.scaled(30))
            if t.is_alive():
                self.stats.violate("a driver thread did not finish within %.0fs of the stop (a client hung)" % H.scaled(30))
        self.t_load = time.monotonic() - t_start
        self.finish(t_begin)

    def one_warm(self, path):
        P = self.ports
        data = self.payload(20)
        if path in ("relay good", "relay good 1byte"):
            s = self.conn(self.lp["good"])
        elif path.startswith("socks5"):
            s = self.socks5("127.0.0.1" if "domain" not in path else "echo.soak.test", P["good1"])
        else:
            s = self.socks4("127.0.0.1" if "4a" not in path else "echo.soak.test", P["good2"])
        with s:
            if not self.echo_check(s, data)[0]:
                raise RuntimeError("warm-up transfer failed on %s: ferry or the harness is broken" % path)
        with self.conn(self.lp["flaky"]) as s:
            self.echo_check(s, bytes(self.payload(16)), want_id=True)

    def finish(self, t_begin):
        st = self.stats
        a = self.args
        alive = self.ferry.alive() and self.fdx.alive()
        after = after_fdx = None
        if alive:
            # sessions end: hole sessions by idle timeout, the rest by EOF
            t0 = time.monotonic()
            peers.wait_until(lambda: self.fd_kinds(self.ferry.pid)["tcp"] <= self.base["tcp"]
                             and self.fd_kinds(self.fdx.pid)["tcp"] <= self.base_fdx["tcp"], H.scaled(10), 0.2)
            self.t_drain = time.monotonic() - t0
            after = self.settled(self.ferry.pid)
            after_fdx = self.settled(self.fdx.pid)
            rss_after = H.rss_kib(self.ferry.pid)
            cpu = self.ferry.cpu_seconds() - self.base_cpu
        for name, f in (("ferry", self.ferry), ("ferry fdx", self.fdx)):
            for p in f.stop(timeout=H.scaled(10)):
                st.violate("%s: %s (log: %s)" % (name, p, f.log_path))
        if not alive:
            self.report(time.monotonic() - t_begin, None, None, None, None, None)
            return
        # fd budget: listening, UDP (resolver) and other fds exactly as at
        # baseline; TCP sockets back to baseline (+2 for health checks in
        # flight); pipes at most the kernel-pipe pools' capacity
        # (64 free pipes = 128 fds per worker thread).
        for name, b, x, threads in (("ferry", self.base, after, 2), ("ferry fdx", self.base_fdx, after_fdx, 1)):
            if x["tcp"] > b["tcp"] + 2:
                st.violate("%s: %d TCP sockets open after the soak settled, %d at baseline (leak)" % (name, x["tcp"], b["tcp"]))
            if x["close_wait"]:
                st.violate("%s: %d sockets stuck in CLOSE_WAIT after the soak" % (name, x["close_wait"]))
            for kind in ("listen", "sock_other", "other"):
                if x[kind] > b[kind]:
                    st.violate("%s: %d %s fds after the soak, %d at baseline (leak)" % (name, x[kind], kind, b[kind]))
            if x["pipe"] > 128 * threads:
                st.violate("%s: %d pipe fds after the soak, more than the pools hold (%d)" % (name, x["pipe"], 128 * threads))
        # ASan keeps freed memory in its quarantine (256 MiB by default), so
        # under sanitizers RSS may grow that much more; leaks there are
        # LeakSanitizer's job, at exit (a report fails the run).
        rss_tol = int((a.rss_tolerance_mib + (256 if H.SANITIZED else 0)) * 1024)
        if rss_after > self.base_rss + rss_tol:
            st.violate("ferry: RSS %d KiB after the soak, baseline %d KiB (tolerance %d KiB)"
                       % (rss_after, self.base_rss, rss_tol))
        for name in FAULT_NAMES(self):
            if st.faults[name] < a.min_faults:
                st.violate("fault '%s' injected only %d times (want >= %d): the soak did not test it"
                           % (name, st.faults[name], a.min_faults))
        for path in PATHS + ["relay flaky"]:
            if st.transfers[path]["ok"] < a.min_faults:
                st.violate("only %d successful transfers on path '%s': load too thin" % (st.transfers[path]["ok"], path))
        log = self.ferry.log()
        self.report(time.monotonic() - t_begin, after, after_fdx, rss_after, cpu, log)

    def report(self, elapsed, after, after_fdx, rss_after, cpu, log):
        st = self.stats
        out = []
        w = out.append
        w("")
        w("## ferry soak: %.0f s (setup %.0f s, warm-up and load %.0f s, last sessions end %.0f s), ferry %s%s" % (
            elapsed, self.t_setup, self.t_load, getattr(self, "t_drain", 0), self.args.ferry,
            " (sanitizers)" if H.SANITIZED else ""))
        w("")
        w("| path | ok | failed | expected failures (fault) | MiB moved |")
        w("|---|---:|---:|---:|---:|")
        tot = collections.Counter()
        for path in PATHS + ["relay flaky"]:
            c = st.transfers[path]
            tot.update(c)
            w("| %s | %d | %d | %d | %.1f |" % (path, c["ok"], c["failed"], c["expected"], st.bytes[path] / 1048576))
        w("| **all** | **%d** | **%d** | **%d** | %.1f |" % (tot["ok"], tot["failed"], tot["expected"],
                                                             sum(st.bytes.values()) / 1048576))
        w("")
        w("| fault | injected | passed its check (own, or the end-of-run checks) |")
        w("|---|---:|---:|")
        for name in sorted(st.faults):
            w("| %s | %d | %d |" % (name, st.faults[name], st.reactions[name]))
        w("")
        w("| measure | value |")
        w("|---|---|")
        w("| probes (SOCKS5 greeting, every 100 ms, bound %.1f s) | %d ok, %d late/failed, slowest %.3f s |"
          % (H.scaled(self.args.probe_bound), st.probes["ok"], st.probes["late/failed"], st.probe_max))
        if after is not None:
            peak = max([r for _, r, _ in self.samples] + [rss_after])
            peak_fd = max([n for _, _, n in self.samples] + [after["total"]])
            w("| ferry RSS baseline / peak / after | %.1f / %.1f / %.1f MiB |" % (
                self.base_rss / 1024, peak / 1024, rss_after / 1024))
            w("| ferry fds baseline / peak / after | %d / %d / %d |" % (self.base["total"], peak_fd, after["total"]))
            w("| ferry fds after, by kind (baseline) | %s |" % fmt_kinds(after, self.base))
            w("| ferry CLOSE_WAIT sockets after | %d |" % after["close_wait"])
            w("| ferry CPU seconds during the soak | %.1f |" % cpu)
            w("| fdx ferry (ulimit -n %d) fds baseline / after | %d / %d (%s) |" % (
                self.args.fdx_nofile, self.base_fdx["total"], after_fdx["total"], fmt_kinds(after_fdx, self.base_fdx)))
            w("| fdx ferry: max CPU while out of fds / slowest recovery | %.0f%% / %.2f s |" % (
                100 * self.fdx_cpu_max, self.fdx_recover_max))
            ends = collections.Counter(H.parse_kv(l).get("end") for l in log.splitlines() if " sess=" in l)
            w("| ferry sessions logged, by end= | %s |" % ", ".join("%s %d" % kv for kv in sorted(ends.items(), key=lambda kv: -kv[1])))
        for n in st.notes:
            w("")
            w("note: " + n)
        print("\n".join(out))
        if st.violations:
            print("\nVIOLATIONS (%d):" % len(st.violations))
            for v in st.violations:
                print("  - " + v)
            print("\nferry logs kept in %s" % self.workdir)
        else:
            print("\nsoak: no violations")

    def close(self):
        for p in self.procs.values():
            p.kill()
            p.wait()
        for x in ("dns", "hang"):
            if hasattr(self, x):
                getattr(self, x).close()
        if not self.stats.violations and not self.args.workdir and not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


class Socks5Refused(Exception):
    def __init__(self, code):
        super().__init__("SOCKS5 reply %#04x" % code)
        self.code = code


TEARDOWN_S = 9     # measured: joins ~1 s, settle ~4 s, two ferries stopped ~1 s

PATHS = ["relay good", "relay good 1byte", "socks5 ip", "socks5 domain", "socks5 pipelined", "socks5 1byte",
         "socks4 ip", "socks4a domain"]


def FAULT_NAMES(soak):
    names = ["upstream killed+restarted", "upstream accepts, never answers", "upstream RST mid-stream",
             "client vanishes mid-transfer", "slowloris handshake", "1-byte client", "garbage", "DNS timeout",
             "connection storm (300 at once)",
             "fd exhaustion (ulimit -n %d)" % soak.args.fdx_nofile]
    if soak.hang_ok:
        names.append("upstream connect hangs")
    return names


def fmt_kinds(x, b):
    return ", ".join("%s %d (%d)" % (k, x[k], b[k]) for k in ("listen", "tcp", "sock_other", "pipe", "other"))


def main():
    global H, peers
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ferry", default=os.path.join(HERE, "..", "..", "build", "ferry"))
    ap.add_argument("--duration", type=float, default=180,
                    help="seconds for the whole run, setup and checks included (default 180)")
    ap.add_argument("--probe-bound", type=float, default=1.0, help="seconds a probe may wait (x3 under sanitizers)")
    ap.add_argument("--rss-tolerance-mib", type=float, default=10,
                    help="RSS growth allowed over the baseline (+256 under sanitizers: ASan's quarantine)")
    ap.add_argument("--min-faults", type=int, default=3, help="each fault / path at least this often")
    ap.add_argument("--fdx-nofile", type=int, default=64)
    ap.add_argument("--workdir", help="keep ferry's config and logs here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary workdir")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--name", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.serve, a.port, a.name)
        return 0
    a.ferry = os.path.abspath(a.ferry)
    if not os.access(a.ferry, os.X_OK):
        print("soak: no ferry binary at %s (make first, or --ferry PATH)" % a.ferry, file=sys.stderr)
        return 2
    os.environ["FERRY_BIN"] = a.ferry
    sys.path.insert(0, INTEGRATION)
    import conftest as _h   # noqa: E402 - needs FERRY_BIN set (sanitizer time scale)
    import peers as _p      # noqa: E402
    H, peers = _h, _p
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
    random.seed(seed)
    print("soak: %s for %.0f s (seed %d)" % (a.ferry, a.duration, seed), flush=True)
    soak = Soak(a)
    try:
        soak.run()
    finally:
        soak.close()
    return 1 if soak.stats.violations else 0


if __name__ == "__main__":
    sys.exit(main())
