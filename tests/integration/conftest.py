"""Harness for ferry's integration tests.

- FERRY_BIN: path of the binary. Unset: this clone's own build, build/ferry,
  else ./ferry (both relative to the repository root, two folders up). If
  neither exists, or FERRY_BIN names no executable, pytest stops at once
  with the reason: a test run never picks up another checkout's binary.
- `ferry` fixture: a factory.  ferry("relay", "-u", addr) starts the binary
  on a free loopback port (unless the args carry their own -l), waits until it
  listens, and on teardown sends SIGTERM, waits, SIGKILLs if needed, and fails
  the test if the process crashed, printed a sanitizer report, or did not exit
  0 after SIGTERM.
- Every test has a deadline (marker `deadline(seconds)`, default 60 s, scaled
  by FERRY_TIME_SCALE which defaults to 3 for a sanitizer build, 5 under a
  wrapper).
- FERRY_WRAPPER: a command put before the binary, e.g. valgrind (`make
  valgrind`). "{log}" in it becomes a file per ferry process; a test fails if
  that file is not empty when ferry has exited (the wrapper's report).
"""

import os
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import peers  # noqa: E402


REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def _find_bin():
    """(path, None) or (best guess, reason it cannot be used)."""
    b = os.environ.get("FERRY_BIN")
    if b:
        b = os.path.abspath(b)
        if not os.access(b, os.X_OK):
            return b, "FERRY_BIN=%s is not an executable file" % b
        return b, None
    cands = [os.path.join(REPO, "build", "ferry"), os.path.join(REPO, "ferry")]
    for cand in cands:
        if os.access(cand, os.X_OK):
            return cand, None
    return cands[0], ("no ferry binary in this clone (looked for %s); run `make` in %s or set FERRY_BIN"
                      % (" and ".join(cands), REPO))


FERRY_BIN, FERRY_BIN_ERROR = _find_bin()


def _is_sanitized(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return b"__asan_init" in data or b"AddressSanitizer" in data
    except OSError:
        return False


SANITIZED = _is_sanitized(FERRY_BIN)
WRAPPER = shlex.split(os.environ.get("FERRY_WRAPPER", ""))
SCALE = float(os.environ.get("FERRY_TIME_SCALE") or (3 if SANITIZED else 5 if WRAPPER else 1))
_wrapped = [0]


def wrapped_argv(args, workdir=None):
    """[wrapper..., FERRY_BIN, args...] and the wrapper's report file (or None)."""
    if not WRAPPER:
        return [FERRY_BIN] + list(args), None
    _wrapped[0] += 1
    log = os.path.join(workdir or tempfile.gettempdir(),
                       "wrapper-%d-%d.log" % (os.getpid(), _wrapped[0]))
    return [w.replace("{log}", log) for w in WRAPPER] + [FERRY_BIN] + list(args), log


def wrapper_report(log):
    """The wrapper's report for one ferry process ('' when clean)."""
    if not log:
        return ""
    try:
        with open(log, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
CLK_TCK = os.sysconf("SC_CLK_TCK")
SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                      "ERROR: ThreadSanitizer", "WARNING: ThreadSanitizer")

# the suite opens ~2000 sockets in the test process
try:
    _soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if _soft < min(_hard, 16384):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(_hard, 16384), _hard))
except (ValueError, OSError):
    pass


def scaled(t):
    return t * SCALE


# --------------------------------------------------------------------------
# per-test deadline


class Deadline(Exception):
    pass


def pytest_configure(config):
    config.addinivalue_line("markers", "deadline(seconds): fail the test if its body runs longer")
    if FERRY_BIN_ERROR:
        pytest.exit(FERRY_BIN_ERROR, returncode=4)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    m = item.get_closest_marker("deadline")
    secs = (m.args[0] if m else 60) * SCALE

    def on_alarm(signum, frame):
        raise Deadline("test exceeded its deadline of %.0f s" % secs)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, secs)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------
# ports and /proc helpers


def free_port(host="127.0.0.1"):
    s = socket.socket(peers.family_of(host), socket.SOCK_STREAM)
    s.bind((host, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def closed_port(host="127.0.0.1"):
    """A port on which nothing listens (connect gets RST)."""
    return free_port(host)


def _listen_inodes(port):
    res = set()
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, st, inode = parts[1], parts[3], parts[9]
                    if st == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        res.add(inode)
        except OSError:
            pass
    return res


def fd_targets(pid):
    """What each of pid's fds points at ("socket:[123]", "pipe:[45]", a
    path); an fd closed while we look is skipped. OSError if pid is gone."""
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            yield os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue


def socket_inodes(pid):
    try:
        return {t[8:-1] for t in fd_targets(pid) if t.startswith("socket:[")}
    except OSError:
        return set()


def descendants(pid):
    """pid and its descendants (so a wrapper script as FERRY_BIN works)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
                parent[int(d)] = int(st[st.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    res = {pid}
    grew = True
    while grew:
        grew = False
        for c, pp in parent.items():
            if pp in res and c not in res:
                res.add(c)
                grew = True
    return res


def listening(pid, port):
    """Number of listening sockets on port owned by pid (or its children)."""
    inodes = _listen_inodes(port)
    if not inodes:
        return 0
    n = len(inodes & socket_inodes(pid))
    if n:
        return n
    mine = set()
    for p in descendants(pid):
        mine |= socket_inodes(p)
    return len(inodes & mine)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime=14, stime=15 -> indexes 11, 12
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_count(pid):
    return len(os.listdir("/proc/%d/task" % pid))


# --------------------------------------------------------------------------
# log parsing

LOG_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def parse_kv(line):
    d = {}
    for tok in line.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            d[k] = v
    return d


def session_lines(text):
    """The session end lines (--log-sessions start lines have event=start)."""
    out = []
    for line in text.splitlines():
        if " sess=" in line and " event=start" not in line:
            d = parse_kv(line)
            d["_line"] = line
            out.append(d)
    return out


# --------------------------------------------------------------------------
# the ferry process


class FerryError(Exception):
    pass


class Ferry:
    def __init__(self, argv, host, port, workdir, env=None, preexec_fn=None, check_listen=True,
                 wrapper_log=None):
        self.argv = argv
        self.wrapper_log = wrapper_log
        self.host = host
        self.port = port
        self.addr = peers.fmt_addr(host, port) if port else None
        self.workdir = workdir
        self.log_path = os.path.join(workdir, "ferry-%d-%d.stderr" % (port or 0, int(time.time() * 1000) % 100000))
        self.out_path = self.log_path.replace(".stderr", ".stdout")
        self.expect_exit = False
        self.stopped = False
        self.returncode = None
        self._err = open(self.log_path, "wb")
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
                                     env=env, preexec_fn=preexec_fn, close_fds=True)
        self.pid = self.proc.pid
        if check_listen and port:
            self._wait_listening()

    def _wait_listening(self):
        deadline = time.monotonic() + scaled(5)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise FerryError("ferry exited with %s before listening on %s; argv=%s\nstderr:\n%s"
                                 % (self.proc.returncode, self.addr, self.argv, self.log()))
            if listening(self.pid, self.port):
                self._wait_announced(deadline)
                return
            time.sleep(0.01)
        raise FerryError("ferry did not listen on %s within %.0fs; argv=%s\nstderr:\n%s"
                         % (self.addr, scaled(5), self.argv, self.log()))

    def _wait_announced(self, deadline):
        """The port listens a moment before ferry writes its start-up line
        (sockets are bound first, before privileges are dropped); tests read
        that line, so wait for it. Bounded: a quiet ferry never writes it."""
        argv = list(self.argv)
        if "--log-level" in argv[:-1] and argv[argv.index("--log-level") + 1] == "quiet":
            return
        if any(a == "--log-file" or a.startswith("--log-file=") for a in argv):
            return                                  # the line goes to that file
        # A config file may send it elsewhere too: then only a moment.
        deadline = min(deadline, time.monotonic() + scaled(0.5))
        while time.monotonic() < deadline and self.proc.poll() is None:
            if " listening on " in self.log():
                return
            time.sleep(0.005)

    # ---- observation
    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout(self):
        try:
            with open(self.out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def sessions(self):
        return session_lines(self.log())

    def wait_sessions(self, n, timeout=5.0, pred=None):
        """Wait until at least n session log lines (matching pred) exist."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            ss = [s for s in self.sessions() if pred is None or pred(s)]
            if len(ss) >= n or time.monotonic() > deadline:
                return ss
            time.sleep(0.02)

    def alive(self):
        return self.proc.poll() is None

    def rss_kib(self):
        return rss_kib(self.pid)

    def fd_count(self):
        return fd_count(self.pid)

    def cpu_seconds(self):
        return cpu_seconds(self.pid)

    def connect(self, timeout=5.0, source=None):
        return peers.connect(self.host, self.port, timeout=timeout, source=source)

    # ---- shutdown
    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=None):
        """SIGTERM, bounded wait, SIGKILL.  Returns a list of problems."""
        problems = []
        if self.stopped:
            return problems
        self.stopped = True
        rc = self.proc.poll()
        if rc is not None and not self.expect_exit:
            problems.append("ferry exited on its own during the test with status %s" % rc)
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            t = timeout if timeout is not None else scaled(8)
            try:
                rc = self.proc.wait(t)
                if rc != 0:
                    problems.append("ferry exited with status %s after SIGTERM (expected 0)" % rc)
            except subprocess.TimeoutExpired:
                problems.append("ferry did not exit within %.1fs of SIGTERM; killed" % t)
                self.proc.kill()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    problems.append("ferry did not die after SIGKILL")
        self.returncode = rc
        if rc is not None and rc < 0 and -rc not in (signal.SIGTERM, signal.SIGKILL):
            problems.append("ferry was killed by signal %d" % -rc)
        self._err.close()
        self._out.close()
        text = self.log()
        for p in SANITIZER_PATTERNS:
            if p in text:
                problems.append("sanitizer report in ferry's stderr (%s)" % p)
                break
        report = wrapper_report(self.wrapper_log)
        if report:
            problems.append("%s reported (%s):\n%s" % (WRAPPER[0], self.wrapper_log, report[-6000:]))
        return problems


@pytest.fixture
def workdir(tmp_path):
    return str(tmp_path)


def ferry_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


def _has_flag(args, *names):
    for a in args:
        for n in names:
            if a == n or a.startswith(n + "="):
                return True
    return False


@pytest.fixture
def ferry(workdir, request):
    """Factory: ferry(subcommand, *args, host="127.0.0.1", nofile=None).

    Adds -l HOST:PORT on a free port unless args contain -l, and
    --drain-timeout 1s unless given (so teardown is quick)."""
    started = []

    def start(*args, host="127.0.0.1", nofile=None, listen=True, drain=True, check_listen=True):
        args = [str(a) for a in args]
        preexec = None
        if nofile is not None:
            def preexec():
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        last = None
        for attempt in range(3):
            argv, wlog = wrapped_argv(args, workdir)
            port = None
            lhost = host
            if isinstance(listen, tuple):
                lhost, port = listen
            elif listen and not _has_flag(args, "-l", "--listen"):
                port = free_port(host)
                argv += ["-l", peers.fmt_addr(host, port)]
            elif listen:
                i = [j for j, a in enumerate(args) if a in ("-l", "--listen")][0]
                spec = args[i + 1]
                m = re.match(r"^\[(.*)\]:(\d+)$", spec) or re.match(r"^(.*):(\d+)$", spec)
                lhost = m.group(1) or "127.0.0.1"
                port = int(m.group(2))
            if drain and args and args[0] in ("relay", "socks") and not _has_flag(args, "--drain-timeout"):
                argv += ["--drain-timeout", "1s"]
            try:
                f = Ferry(argv, lhost, port, workdir, env=ferry_env(), preexec_fn=preexec,
                          check_listen=check_listen, wrapper_log=wlog)
            except FerryError as e:
                last = e
                if "in use" in str(e).lower() and listen is True and not _has_flag(args, "-l", "--listen"):
                    continue
                raise
            started.append(f)
            return f
        raise last

    yield start

    problems = []
    for f in started:
        for p in f.stop():
            problems.append("%s\n  argv=%s\n--- ferry stderr (last 4000 chars) ---\n%s"
                            % (p, " ".join(f.argv), f.log()[-4000:]))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def run_ferry(*args, timeout=5):
    """Run ferry to completion (CLI tests).  Returns CompletedProcess; kills
    it if it does not exit in time."""
    argv, wlog = wrapped_argv([str(a) for a in args])
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=scaled(timeout), env=ferry_env())
    except subprocess.TimeoutExpired as e:
        raise AssertionError("ferry %s did not exit within %.0fs (stderr so far: %r)"
                             % (" ".join(map(str, args)), scaled(timeout), e.stderr))
    report = wrapper_report(wlog)
    if wlog and os.path.exists(wlog):
        os.unlink(wlog)
    if report:
        raise AssertionError("%s reported for ferry %s:\n%s" % (WRAPPER[0], " ".join(map(str, args)), report[-6000:]))
    return r


# --------------------------------------------------------------------------
# peers as fixtures


@pytest.fixture
def servers():
    """Factory for TCPServer instances, all closed at teardown."""
    made = []

    def make(handler=peers.h_identify, **kw):
        s = peers.TCPServer(handler, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def identify(servers):
    """Factory: identify(name, host=...) -> server that sends ID:<name>\\n then echoes."""
    def make(name="A", host="127.0.0.1", **kw):
        return servers(peers.h_identify, host=host, name=name, **kw)
    return make


@pytest.fixture
def blackhole():
    made = []

    def make(host="127.0.0.1"):
        b = peers.Blackhole(host)
        made.append(b)
        if not b.verify_hangs():
            pytest.skip("cannot make a loopback connect() hang here (listen backlog overflow does not drop SYNs)")
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def clients():
    """A list to put client sockets in; all closed at teardown."""
    lst = []
    yield lst
    for s in lst:
        try:
            s.close()
        except OSError:
            pass


@pytest.fixture(scope="session")
def bigfile(tmp_path_factory):
    """A 20 MB random file in a directory served by python3 -m http.server."""
    d = tmp_path_factory.mktemp("www")
    data = os.urandom(20 * 1024 * 1024)
    with open(os.path.join(d, "big.bin"), "wb") as f:
        f.write(data)
    small = data[:6 * 1024 * 1024 + 12345]
    with open(os.path.join(d, "mid.bin"), "wb") as f:
        f.write(small)
    return {"dir": str(d), "big": peers.sha256(data), "big_len": len(data),
            "mid": peers.sha256(small), "mid_len": len(small)}


class HttpServer:
    def __init__(self, directory, host):
        self.host = host
        self.proc = None
        for _ in range(3):
            self.port = free_port(host)
            self.log = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", "--bind", host,
                                          "--directory", directory, str(self.port)],
                                         stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
            ok = peers.wait_until(lambda: self.proc.poll() is not None or listening(self.proc.pid, self.port), 10)
            if self.proc.poll() is None and ok:
                return
            self.proc.kill()
            self.proc.wait()
        raise RuntimeError("python http.server did not start")

    def url(self, path, host=None):
        h = host or self.host
        if ":" in h:
            h = "[%s]" % h
        return "http://%s:%d/%s" % (h, self.port, path)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def http4(bigfile):
    s = HttpServer(bigfile["dir"], "127.0.0.1")
    yield s
    s.close()


@pytest.fixture(scope="session")
def http6(bigfile):
    try:
        s = HttpServer(bigfile["dir"], "::1")
    except (RuntimeError, OSError) as e:
        pytest.skip("no IPv6 loopback http server: %s" % e)
    yield s
    s.close()


@pytest.fixture
def fakedns():
    made = []

    def make(**kw):
        d = peers.FakeDNS(**kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


PACKAGE_OF = {"curl": "curl", "ncat": "ncat", "proxychains4": "proxychains4", "socks": "python3-socks",
              "tshark": "tshark", "mergecap": "wireshark-common", "promtool": "prometheus",
              "prometheus": "prometheus"}


def need(tool):
    """Skip (with the Debian package to install) when a client is missing."""
    import shutil
    if tool == "socks":
        try:
            import socks  # noqa: F401
            return
        except ImportError:
            pass
    elif shutil.which(tool):
        return
    pytest.skip("%s is not installed (apt-get install %s)" % (tool, PACKAGE_OF.get(tool, tool)))


def curl(*args, timeout=30):
    need("curl")
    try:
        return subprocess.run(["curl", "-sS", "--max-time", str(int(scaled(timeout)))] + [str(a) for a in args],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=scaled(timeout) + 5)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("curl %s hung: %r" % (args, e.stderr))


def file_sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# --------------------------------------------------------------------------
# the Go yamux reference peer (tests/yamux_peer, yamuxpeer.py)


@pytest.fixture(scope="session")
def yamux_peer(tmp_path_factory):
    """Path of the built yamux_peer. No Go: the test fails, saying what to install."""
    import yamuxpeer
    try:
        return yamuxpeer.build(tmp_path_factory.mktemp("yamux_peer"))
    except yamuxpeer.PeerBuildError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def yamux_server(yamux_peer):
    """Factory: yamux_server(mode="server"|"echo", args=[...]) -> yamuxpeer.Server, stopped at teardown."""
    import yamuxpeer
    made = []

    def make(mode="server", args=(), host="127.0.0.1"):
        s = yamuxpeer.Server(yamux_peer, mode, args, host)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()
