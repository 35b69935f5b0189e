"""--syslog TARGET: log lines as RFC 3164 datagrams, through Debian's rsyslog.

Each test runs its own rsyslogd (`rsyslogd -n -f CONF -i PIDFILE`) with an
imuxsock socket in the test's directory and imudp on a free loopback port,
writing every message to a file with a template that shows the facility,
severity, host, tag and pid as rsyslog parsed them. Nothing touches
/dev/log or /etc.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.request

import pytest

import peers
from conftest import SANITIZED, free_port, run_ferry, scaled
from peers import recv_line

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
SEP = "\x1f"            # between the template's fields and the message


class Rsyslog:
    """rsyslogd on a unix socket (self.sock) and a UDP port (self.port);
    what it parses goes to self.out, one line per message."""

    def __init__(self, workdir, udp_host="127.0.0.1", sock=None):
        self.dir = workdir
        self.sock = sock or os.path.join(workdir, "log.sock")
        self.out = os.path.join(workdir, "syslog.out")
        self.conf = os.path.join(workdir, "rsyslog.conf")
        self.pidfile = os.path.join(workdir, "rsyslogd.pid")
        self.udp_host = udp_host
        self.port = self._free_udp_port()
        with open(self.conf, "w") as fh:
            fh.write(
                'global(workDirectory="%s" maxMessageSize="8k")\n'
                'module(load="imuxsock" SysSock.Use="off")\n'
                'input(type="imuxsock" Socket="%s" RateLimit.Interval="0")\n'
                'module(load="imudp")\n'
                'input(type="imudp" address="%s" port="%d")\n'
                'template(name="fields" type="string" string="%%syslogfacility-text%% %%syslogseverity-text%% '
                '%%hostname%% %%syslogtag%% %%programname%% %%procid%%%s%%msg%%\\n")\n'
                '*.* action(type="omfile" file="%s" template="fields")\n'
                % (workdir, self.sock, udp_host, self.port, SEP, self.out))
        self.proc = None
        self.start()

    def _free_udp_port(self):
        s = socket.socket(peers.family_of(self.udp_host), socket.SOCK_DGRAM)
        s.bind((self.udp_host, 0))
        port = s.getsockname()[1]
        s.close()
        return port

    def start(self):
        self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", self.conf, "-i", self.pidfile],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "rsyslogd.stderr"), "ab"))
        # Ready when a probe sent to each input is in the file.
        probe = "probe-%d-%d" % (self.proc.pid, len(self.read()))
        udp = socket.socket(peers.family_of(self.udp_host), socket.SOCK_DGRAM)
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

        def ready():
            assert self.proc.poll() is None, "rsyslogd exited: %s" % self.stderr()
            for s, to in ((udp, (self.udp_host, self.port)), (unix, self.sock)):
                try:
                    s.sendto(b"<13>probe: " + probe.encode(), to)
                except OSError:
                    return False
            return self.read().count(probe) >= 2
        try:
            assert peers.wait_until(ready, scaled(5), interval=0.05), "rsyslogd did not start: %s" % self.stderr()
        finally:
            udp.close()
            unix.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(scaled(5))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def stderr(self):
        with open(os.path.join(self.dir, "rsyslogd.stderr"), errors="replace") as fh:
            return fh.read()

    def read(self):
        try:
            with open(self.out, errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def messages(self, tag):
        """Messages whose tag is tag[PID]: dicts of the parsed fields."""
        out = []
        for line in self.read().splitlines():
            head, _, msg = line.partition(SEP)
            f = head.split(" ")
            if len(f) != 6 or f[4] != tag:
                continue
            out.append({"facility": f[0], "severity": f[1], "host": f[2], "tag": f[3], "pid": f[5],
                        "msg": msg[1:] if msg.startswith(" ") else msg})
        return out

    def wait_for(self, tag, pred, what):
        assert peers.wait_until(lambda: any(pred(m) for m in self.messages(tag)), scaled(5)), \
            "%s not in syslog:\n%s" % (what, self.read())
        return [m for m in self.messages(tag) if pred(m)]


@pytest.fixture
def rsyslog(workdir):
    if not os.path.exists(RSYSLOGD):
        pytest.skip("rsyslogd is not installed (apt-get install rsyslog)")
    made = []

    def make(**kw):
        r = Rsyslog(workdir, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.stop()


def session(f, name="A", source=None):
    with f.connect(source=source) as c:
        assert recv_line(c) == b"ID:%s\n" % name.encode()


def refused(f, source):
    """A client the ACL refuses: closed without a byte."""
    with f.connect(source=source) as c:
        c.settimeout(scaled(5))
        assert c.recv(16) == b""


@pytest.mark.deadline(30)
def test_unix_socket_levels_facility_tag_and_pid(rsyslog, ferry, identify, workdir):
    """Every kind of line reaches a local socket with its severity: the
    start-up line notice, sessions info, a refused client info, a server
    going DOWN warning, a health check's detail debug, a failed hexdump
    write err; stderr keeps every line (syslog is one more destination)."""
    rs = rsyslog()
    up = identify("A")
    f = ferry("relay", "-u", up.addr, "-u", "127.0.0.1:%d" % free_port(), "--allow", "127.0.0.1/32",
              "--check-interval", "100ms", "--check-fall", "1", "--log-level", "debug",
              "--hexdump-file", "/dev/full",
              "--syslog", "unix:" + rs.sock, "--syslog-facility", "local3", "--syslog-tag", "ferry-t")
    for _ in range(2):
        session(f)
    refused(f, "127.0.0.2")

    by = lambda text: (lambda m: text in m["msg"])  # noqa: E731
    start = rs.wait_for("ferry-t", by("relay listening on %s" % f.addr), "the start-up line")
    sessions = rs.wait_for("ferry-t", lambda m: m["msg"].startswith("sess=") and "end=" in m["msg"], "2 sessions")
    rs.wait_for("ferry-t", by("sess=- "), "the refused client")
    rs.wait_for("ferry-t", by("is DOWN"), "the DOWN warning")
    rs.wait_for("ferry-t", by("hexdump '/dev/full': write failed"), "the hexdump error")
    msgs = rs.messages("ferry-t")
    assert {m["facility"] for m in msgs} == {"local3"}, msgs
    assert {m["tag"] for m in msgs} == {"ferry-t[%d]:" % f.pid}, msgs
    assert {m["pid"] for m in msgs} == {str(f.pid)}, msgs
    assert start[0]["severity"] == "notice" and start[0]["msg"].startswith("relay listening on "), start
    assert peers.wait_until(lambda: len([m for m in rs.messages("ferry-t") if m["msg"].startswith("sess=") and
                                         " end=" in m["msg"] and "sess=- " not in m["msg"]]) == 2, scaled(5)), \
        rs.read()
    assert {m["severity"] for m in sessions} == {"info"}, sessions
    sev = lambda text: {m["severity"] for m in rs.messages("ferry-t") if text in m["msg"]}  # noqa: E731
    assert sev("end=denied") == {"info"}
    assert sev("is DOWN") == {"warning"}
    assert sev("health relay/") == {"debug"}
    assert sev("hexdump '/dev/full'") == {"err"}
    # the message is the line after its time and level
    stderr_line = [l for l in f.log().splitlines() if " info sess=1 " in l][0]
    assert stderr_line.split(" ", 2)[2] in [m["msg"] for m in msgs], (stderr_line, msgs)
    assert "relay listening on" in f.log() and "is DOWN" in f.log()


@pytest.mark.deadline(30)
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_udp_json_with_host_name(rsyslog, ferry, identify, host):
    """Over UDP (an IPv4 and an IPv6 literal): the message carries the short
    host name, and with --log-format json it is the JSON object whole."""
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    rs = rsyslog(udp_host=host)
    up = identify("B")
    target = "udp:%s" % peers.fmt_addr(host, rs.port) if host == "::1" else "%s:%d" % (host, rs.port)
    f = ferry("relay", "-u", up.addr, "--log-format", "json", "--syslog", target, "--syslog-facility", "local5")
    session(f, "B")
    got = rs.wait_for("ferry", lambda m: '"sess":1' in m["msg"], "the session's JSON line")
    o = json.loads(got[0]["msg"])
    assert o["sess"] == 1 and o["level"] == "info" and o["end"] == "client_closed", o
    assert got[0]["severity"] == "info" and got[0]["facility"] == "local5", got
    assert got[0]["host"] == socket.gethostname().split(".")[0], got
    assert got[0]["pid"] == str(f.pid)
    start = rs.wait_for("ferry", lambda m: "listening on" in m["msg"], "the start-up line")
    assert json.loads(start[0]["msg"])["msg"].startswith("relay listening on"), start


@pytest.mark.deadline(30)
def test_daemon_restart_then_sigusr1_resumes_and_counts(rsyslog, ferry, identify, workdir):
    """rsyslogd stops: ferry says once that lines are dropped, counts them,
    and goes on relaying; rsyslogd comes back (a new socket at the path):
    SIGUSR1 reconnects, lines arrive again with the count of those lost.
    The options come from the YAML file (its keys are the flags' names)."""
    rs = rsyslog()
    up = identify("A")
    port, mport = free_port(), free_port()
    conf = os.path.join(workdir, "f.yaml")
    with open(conf, "w") as fh:
        fh.write("syslog: %s\nsyslog-tag: edge\nmetrics: 127.0.0.1:%d\ndrain-timeout: 1s\nlisteners:\n"
                 "  - {name: r, mode: relay, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n"
                 % (rs.sock, mport, port, up.addr))
    assert run_ferry("check", conf).returncode == 0
    f = ferry("run", "-c", conf, listen=("127.0.0.1", port))
    session(f)
    rs.wait_for("edge", lambda m: "sess=1 " in m["msg"], "the first session")

    rs.stop()
    session(f)
    session(f)
    assert peers.wait_until(lambda: "sess=3 " in f.log(), scaled(5)), f.log()
    notes = [l for l in f.log().splitlines() if "dropping lines until it takes them again" in l]
    assert len(notes) == 1 and ("syslog unix:%s: " % rs.sock) in notes[0], f.log()

    rs.start()
    f.signal(signal.SIGUSR1)
    assert peers.wait_until(lambda: "reconnected to syslog unix:%s" % rs.sock in f.log(), scaled(5)), f.log()
    session(f)
    rs.wait_for("edge", lambda m: "sess=4 " in m["msg"], "a session after the reconnect")
    back = rs.wait_for("edge", lambda m: "delivering again" in m["msg"], "the count of lines lost")
    lost = int(back[0]["msg"].split("delivering again; ")[1].split()[0])
    assert lost >= 2 and back[0]["severity"] == "notice", back
    assert not [m for m in rs.messages("edge") if "sess=2 " in m["msg"] or "sess=3 " in m["msg"]]
    metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=scaled(5)).read().decode()
    counted = [l for l in metrics.splitlines() if l.startswith("ferry_syslog_dropped_lines_total ")]
    assert counted and int(counted[0].split()[1]) == lost, counted


@pytest.mark.parametrize("args,msg", [
    (["--syslog", "tcp:127.0.0.1:514"], "syslog over TCP is not supported"),
    (["--syslog", "dev/log"], "expected unix:/PATH, /PATH, udp:HOST:PORT or HOST:PORT"),
    (["--syslog", "127.0.0.1:0"], "expected unix:/PATH"),
    (["--syslog", "/dev/log", "--syslog-facility", "local8"], "expected kern, user"),
    (["--syslog", "/dev/log", "--syslog-tag", "a b"], "--syslog-tag: 'a b': expected 1 to 31"),
    (["--syslog-facility", "local0"], "--syslog-facility needs --syslog TARGET"),
    (["--syslog", "/dev/log", "--syslog-tag", "t" * 32], "expected 1 to 31 letters"),
    (["--syslog-tag", "x"], "--syslog-tag needs --syslog TARGET"),
])
def test_bad_options_are_one_line(args, msg):
    r = run_ferry("relay", "-l", "127.0.0.1:%d" % free_port(), "-u", "127.0.0.1:9", *args)
    err = r.stderr.decode()
    assert r.returncode == 2 and msg in err and len(err.splitlines()) == 1, (r.returncode, err)


def test_unresolvable_name_stops_the_start(workdir):
    r = run_ferry("relay", "-l", "127.0.0.1:%d" % free_port(), "-u", "127.0.0.1:9",
                  "--syslog", "udp:no-such-host.invalid:514")
    err = r.stderr.decode()
    assert r.returncode == 1 and err.startswith("ferry: --syslog udp:no-such-host.invalid:514: "), err
    assert len(err.splitlines()) == 1, err


@pytest.mark.deadline(20)
def test_no_daemon_yet_is_a_warning(ferry, identify, workdir):
    path = os.path.join(workdir, "nobody-listens.sock")
    up = identify("A")
    f = ferry("relay", "-u", up.addr, "--syslog", path)
    assert "warning: --syslog unix:%s: No such file or directory" % path in f.log(), f.log()
    session(f)
    assert peers.wait_until(lambda: "sess=1 " in f.log(), scaled(5)), f.log()
    assert "dropping lines" not in f.log(), "said once, at start"


@pytest.mark.deadline(30)
@pytest.mark.skipif(os.geteuid() != 0, reason="--run-as and --chroot need root")
def test_chroot_reconnects_by_the_name_inside(rsyslog, ferry, identify, workdir, monkeypatch):
    """Under --run-as nobody --chroot ROOT, the socket connected at start
    keeps working; after the daemon's restart, SIGUSR1 reconnects by the
    socket's name inside ROOT. A socket outside ROOT: a warning at start."""
    if SANITIZED:       # LeakSanitizer cannot read /proc from inside the chroot
        monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
    root = os.path.join(workdir, "root")
    os.makedirs(os.path.join(root, "dev"))
    os.chmod(workdir, 0o755)
    rs = rsyslog(sock=os.path.join(root, "dev", "log"))
    up = identify("A")
    f = ferry("relay", "-u", up.addr, "--run-as", "nobody", "--chroot", root, "--dns-server", "127.0.0.1:9",
              "--syslog", rs.sock)
    assert "--syslog" not in f.log(), f.log()
    session(f)
    rs.wait_for("ferry", lambda m: "sess=1 " in m["msg"], "a session under the chroot")
    rs.stop()
    rs.start()
    f.signal(signal.SIGUSR1)
    assert peers.wait_until(lambda: "reconnected to syslog" in f.log(), scaled(5)), f.log()
    session(f)
    rs.wait_for("ferry", lambda m: "sess=2 " in m["msg"], "a session after the reconnect inside the chroot")

    elsewhere = os.path.join(workdir, "elsewhere.sock")
    other = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    other.bind(elsewhere)
    try:
        g = ferry("relay", "-u", up.addr, "--run-as", "nobody", "--chroot", root, "--dns-server", "127.0.0.1:9",
                  "--syslog", elsewhere)
        assert "warning: --syslog: '%s' is outside --chroot" % elsewhere in g.log(), g.log()
    finally:
        other.close()


@pytest.mark.deadline(20)
def test_udp_port_nobody_listens_on_is_counted_and_said_rarely(ferry, identify):
    """Over UDP nothing says whether a collector listens, but the ICMP port
    unreachable answers do: those lines are counted and said, at most every
    10 s, and relaying goes on."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    up = identify("A")
    f = ferry("relay", "-u", up.addr, "--syslog", "udp:127.0.0.1:%d" % port)
    for _ in range(6):
        session(f)
    assert peers.wait_until(lambda: "sess=6 " in f.log(), scaled(5)), f.log()
    notes = [l for l in f.log().splitlines() if "nothing listens on the UDP port" in l]
    assert len(notes) == 1 and notes[0].startswith("ferry: syslog udp:127.0.0.1:%d: " % port), f.log()
