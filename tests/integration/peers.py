"""Peers for the integration tests: upstream servers, a fake DNS server and
small client-side helpers.  Everything binds to loopback only.

Servers are thread-per-connection (simple, and good enough for ~1000
connections); every server answers with something that identifies it, so
cross talk between sessions is detectable.
"""

import errno
import hashlib
import socket
import struct
import threading
import time

threading.stack_size(512 * 1024)

LOOP4 = "127.0.0.1"
LOOP6 = "::1"


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def fmt_addr(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


# --------------------------------------------------------------------------
# client helpers


def connect(host, port, timeout=5.0, source=None):
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source is not None:
        s.bind((source, 0))
    s.connect((host, port))
    return s


def recv_exact(s, n, what="data"):
    """Read exactly n bytes; raise AssertionError naming what was short."""
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = s.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            raise AssertionError("timed out reading %s: got %d of %d bytes: %r"
                                 % (what, len(buf), n, bytes(buf[:80])))
        if not chunk:
            raise AssertionError("connection closed while reading %s: got %d of %d bytes: %r"
                                 % (what, len(buf), n, bytes(buf[:80])))
        buf += chunk
    return bytes(buf)


def recv_line(s, limit=4096, what="line"):
    buf = bytearray()
    while not buf.endswith(b"\n"):
        if len(buf) > limit:
            raise AssertionError("no newline in %d bytes reading %s: %r" % (len(buf), what, bytes(buf[:80])))
        try:
            c = s.recv(1)
        except socket.timeout:
            raise AssertionError("timed out reading %s, got %r" % (what, bytes(buf)))
        if not c:
            raise AssertionError("connection closed reading %s, got %r" % (what, bytes(buf)))
        buf += c
    return bytes(buf)


def read_until_close(s, timeout=5.0, limit=1 << 30):
    """Read until EOF/RST/timeout.  Returns (data, how) with how one of
    'eof', 'reset', 'timeout'."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(buf), "timeout"
        s.settimeout(left)
        try:
            chunk = s.recv(1 << 20)
        except socket.timeout:
            return bytes(buf), "timeout"
        except ConnectionResetError:
            return bytes(buf), "reset"
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE):
                return bytes(buf), "reset"
            raise
        if not chunk:
            return bytes(buf), "eof"
        buf += chunk
        if len(buf) > limit:
            return bytes(buf), "limit"


def wait_closed(s, timeout):
    """Wait for the peer to close without caring about data.  Returns
    (how, seconds)."""
    t0 = time.monotonic()
    _, how = read_until_close(s, timeout)
    return how, time.monotonic() - t0


def set_linger0(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def recv_hashed(s, bufsize=1 << 20):
    """Read until EOF without keeping the bytes. Returns (nbytes, sha256
    hexdigest)."""
    h = hashlib.sha256()
    n = 0
    while True:
        d = s.recv(bufsize)
        if not d:
            return n, h.hexdigest()
        h.update(d)
        n += len(d)


def wait_until(pred, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------
# servers


class TCPServer:
    """Thread-per-connection TCP server.  handler(server, conn, peer) runs in
    its own thread; the server records peers, accepted count and handler
    errors, and closes everything on close()."""

    def __init__(self, handler, host=LOOP4, port=0, backlog=1024, name="srv",
                 conn_timeout=30.0, accept=True):
        self.sock = socket.socket(family_of(host), socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.addr = fmt_addr(host, self.port)
        self.name = name
        self.handler = handler
        self.conn_timeout = conn_timeout
        self.lock = threading.Lock()
        self.conns = set()
        self.peers = []          # (host, port) as the server saw them
        self.events = []         # free-form records appended by handlers
        self.errors = []
        self.accepted = 0
        self.active = 0
        self.max_active = 0
        self.closed = False
        self.threads = []
        self.cond = threading.Condition(self.lock)
        self.accept_thread = None
        if accept:
            self.start_accepting()

    def start_accepting(self):
        self.accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.accept_thread.start()

    def _accept_loop(self):
        while not self.closed:
            try:
                c, peer = self.sock.accept()
            except OSError:
                if self.closed:
                    return
                time.sleep(0.01)
                continue
            c.settimeout(self.conn_timeout)
            with self.lock:
                if self.closed:
                    c.close()
                    return
                self.conns.add(c)
                self.peers.append(peer[:2])
                self.accepted += 1
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                self.cond.notify_all()
            t = threading.Thread(target=self._run, args=(c, peer[:2]), daemon=True)
            t.start()   # before it is listed: close() may join the list at any time
            self.threads.append(t)

    def _run(self, c, peer):
        try:
            self.handler(self, c, peer)
        except Exception as e:  # noqa: BLE001 - recorded for the test to look at
            if not self.closed:
                with self.lock:
                    self.errors.append("%s %r" % (peer, e))
        finally:
            try:
                c.close()
            except OSError:
                pass
            with self.lock:
                self.conns.discard(c)
                self.active -= 1
                self.cond.notify_all()

    def record(self, ev):
        with self.lock:
            self.events.append(ev)
            self.cond.notify_all()

    def wait_events(self, n, timeout):
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.events) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return list(self.events)

    def wait_accepted(self, n, timeout):
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.accepted < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return self.accepted

    def wait_active(self, n, timeout):
        """Wait until exactly <= n handlers are active."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.active > n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return self.active

    def close(self):
        with self.lock:
            self.closed = True
            conns = list(self.conns)
        for fn in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.sock.close):
            try:
                fn()
            except OSError:
                pass
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 3
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self.accept_thread:
            self.accept_thread.join(1)


# handlers ---------------------------------------------------------------


def echo_loop(c):
    while True:
        d = c.recv(65536)
        if not d:
            return
        c.sendall(d)


def h_echo(srv, c, peer):
    echo_loop(c)


def h_identify(srv, c, peer):
    c.sendall(b"ID:%s\n" % srv.name.encode())
    echo_loop(c)


def h_sink_hash(srv, c, peer):
    """Read until EOF, then answer '<nbytes> <sha256>\\n' and close."""
    n, digest = recv_hashed(c)
    srv.record(("sink", n, digest))
    c.sendall(b"%d %s\n" % (n, digest.encode()))


def make_source(data):
    def h(srv, c, peer):
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        # wait for the client to finish so the close is clean
        c.settimeout(10)
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass
    return h


def h_flood(srv, c, peer):
    """Send forever; counts bytes sent per connection in srv.counters."""
    chunk = b"F" * 65536
    key = peer
    with srv.lock:
        if not hasattr(srv, "counters"):
            srv.counters = {}
        srv.counters[key] = 0
    c.settimeout(60)
    while not srv.closed:
        try:
            n = c.send(chunk)
        except OSError:
            return
        with srv.lock:
            srv.counters[key] += n


def h_silent(srv, c, peer):
    """Accept and hold; read and discard until EOF."""
    c.settimeout(60)
    while not srv.closed:
        try:
            if not c.recv(65536):
                return
        except socket.timeout:
            continue
        except OSError:
            return


# --------------------------------------------------------------------------
# a loopback listener on which connect() hangs: listen(0) and fill the
# accept queue with one connection that is never accepted.


class Blackhole:
    def __init__(self, host=LOOP4):
        self.sock = socket.socket(family_of(host), socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(0)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.addr = fmt_addr(host, self.port)
        self.fillers = []
        # fill the queue: with listen(0) one established connection fills it;
        # any further SYN is dropped, so connect() hangs.
        for _ in range(4):
            f = socket.socket(family_of(host), socket.SOCK_STREAM)
            f.setblocking(False)
            try:
                f.connect((host, self.port))
            except BlockingIOError:
                pass
            self.fillers.append(f)
        time.sleep(0.05)

    def verify_hangs(self, t=0.3):
        """True if a fresh connect() does not complete within t seconds."""
        s = socket.socket(family_of(self.host), socket.SOCK_STREAM)
        s.settimeout(t)
        try:
            s.connect((self.host, self.port))
            return False
        except socket.timeout:
            return True
        except OSError:
            return False
        finally:
            s.close()

    def close(self):
        for f in self.fillers:
            f.close()
        self.sock.close()


# --------------------------------------------------------------------------
# fake DNS server (UDP): answers A/AAAA from a table, NXDOMAIN for unknown
# names, or never answers (silent names / silent mode).


class FakeDNS:
    def __init__(self, records=None, silent=False, silent_suffixes=(), host=LOOP4, delay=0.0):
        self.records = {k.lower().rstrip("."): list(v) for k, v in (records or {}).items()}
        self.silent = silent
        self.silent_suffixes = tuple(s.lower() for s in silent_suffixes)
        self.delay = delay          # seconds before each answer leaves
        self.sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.addr = fmt_addr(host, self.port)
        self.queries = []   # (name, qtype)
        self.lock = threading.Lock()
        self.closed = False
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def names_queried(self):
        with self.lock:
            return [q[0] for q in self.queries]

    def _loop(self):
        while not self.closed:
            try:
                pkt, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                resp = self._answer(pkt)
            except Exception:  # noqa: BLE001 - malformed query: ignore
                resp = None
            if resp is not None and self.delay:
                threading.Timer(self.delay, self._send, (resp, peer)).start()
            elif resp is not None:
                self._send(resp, peer)

    def _send(self, resp, peer):
        try:
            self.sock.sendto(resp, peer)
        except OSError:
            pass

    def _answer(self, pkt):
        qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", pkt[:12])
        i = 12
        labels = []
        while True:
            ln = pkt[i]
            i += 1
            if ln == 0:
                break
            labels.append(pkt[i:i + ln].decode("ascii", "replace"))
            i += ln
        qtype, qclass = struct.unpack("!HH", pkt[i:i + 4])
        question = pkt[12:i + 4]
        name = ".".join(labels).lower()
        with self.lock:
            self.queries.append((name, qtype))
        if self.silent or (self.silent_suffixes and name.endswith(self.silent_suffixes)):
            return None
        rd = flags & 0x0100
        answers = []
        if name in self.records:
            rcode = 0
            for ip in self.records[name]:
                if qtype == 1 and ":" not in ip:
                    answers.append((1, socket.inet_pton(socket.AF_INET, ip)))
                elif qtype == 28 and ":" in ip:
                    answers.append((28, socket.inet_pton(socket.AF_INET6, ip)))
        else:
            rcode = 3
        hdr = struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | rd | 0x0080 | rcode, 1, len(answers), 0, 0)
        body = question
        for t, rdata in answers:
            body += struct.pack("!HHHIH", 0xC00C, t, 1, 5, len(rdata)) + rdata
        return hdr + body

    def close(self):
        self.closed = True
        self.sock.close()
        self.t.join(1)
