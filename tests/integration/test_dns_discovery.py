"""Integration tests for upstream groups found through DNS: SRV records
(`-u srv://NAME`, YAML `srv:`) and every address of a name (`--resolve all`,
YAML `resolve: all`), through a real DNS server: Debian's unbound, whose
records we change while ferry runs with `unbound-control local_data` and
`local_data_remove` (no restart).

Records have TTL 1 and ferry runs with the default --dns-refresh-min 1s, so
a change is seen within about a second; every wait below is bounded (a few
seconds, scaled), none is a timing assertion. Upstreams are identity
servers ("ID:name\\n", then echo).
"""

import os
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest

import peers
from conftest import free_port, run_ferry, scaled
from peers import recv_line

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
UNBOUND_CONTROL = shutil.which("unbound-control") or "/usr/sbin/unbound-control"

pytestmark = pytest.mark.skipif(not os.access(UNBOUND, os.X_OK),
                                reason="unbound is not installed (scripts/install-deps installs it)")

ZONE = "ferry.test."
SRV = "_app._tcp.ferry.test"
# A change must be seen within one TTL (1 s) plus the refresh that follows
# and slack for a loaded machine.
CHANGE_WAIT = 8.0


class Unbound:
    """unbound on 127.0.0.1:PORT (UDP and TCP), with a local zone we edit
    live through unbound-control (its own port, no certificates)."""

    def __init__(self, workdir, records, port=None):
        self.dir = workdir
        self.port = port or free_port()
        self.cport = free_port()
        self.conf = os.path.join(workdir, "unbound.conf")
        lines = [
            "server:",
            "  interface: 127.0.0.1@%d" % self.port,
            "  port: %d" % self.port,
            "  do-daemonize: no", '  username: ""', '  chroot: ""', '  pidfile: ""',
            '  directory: "%s"' % workdir, "  use-syslog: no", "  verbosity: 0", "  do-ip6: no",
            "  access-control: 127.0.0.0/8 allow",
            '  local-zone: "%s" static' % ZONE,
        ] + ['  local-data: "%s"' % r for r in records] + [
            "remote-control:",
            "  control-enable: yes", "  control-interface: 127.0.0.1",
            "  control-port: %d" % self.cport, "  control-use-cert: no",
        ]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = open(os.path.join(workdir, "unbound-%d.log" % self.port), "wb")
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", self.conf], stdout=self.log, stderr=self.log)
        ok = peers.wait_until(lambda: self.proc.poll() is not None or self.ctl("status", check=False) == 0,
                              scaled(10), interval=0.1)
        if not ok or self.proc.poll() is not None:
            raise AssertionError("unbound did not start on port %d" % self.port)

    def ctl(self, *args, check=True):
        r = subprocess.run([UNBOUND_CONTROL, "-c", self.conf] + list(args), capture_output=True, timeout=10)
        if check and (r.returncode != 0 or b"error" in r.stdout):
            raise AssertionError("unbound-control %s: %r %r" % (args, r.stdout, r.stderr))
        return r.returncode

    def add(self, record):
        self.ctl("local_data", record)

    def remove(self, name):
        self.ctl("local_data_remove", name)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def unbound(workdir):
    made = []

    def start(records, port=None):
        u = Unbound(workdir, records, port)
        made.append(u)
        return u

    yield start
    for u in made:
        u.stop()


def srv_rr(prio, weight, port, target="a." + ZONE):
    return "%s. 1 IN SRV %d %d %d %s" % (SRV, prio, weight, port, target)


def ask(f, timeout=3.0):
    """One request: the name of the server that answered, or why not."""
    try:
        c = f.connect(timeout=scaled(timeout))
    except OSError as e:
        return "connect:%s" % e
    try:
        c.settimeout(scaled(timeout))
        line = recv_line(c)
        return line.decode().strip()
    except (OSError, AssertionError) as e:
        return "failed:%s" % e
    finally:
        c.close()


def wait_for_server(f, name, timeout=CHANGE_WAIT):
    seen = []

    def got():
        r = ask(f)
        seen.append(r)
        return r == "ID:" + name
    if not peers.wait_until(got, scaled(timeout), interval=0.05):
        raise AssertionError("no request reached %s within %.0fs; answers: %s\n--- ferry log ---\n%s"
                             % (name, scaled(timeout), seen[-20:], f.log()[-3000:]))


def wait_log(f, text, timeout=CHANGE_WAIT):
    if not peers.wait_until(lambda: text in f.log(), scaled(timeout), interval=0.05):
        raise AssertionError("ferry never logged %r\n--- ferry log ---\n%s" % (text, f.log()[-3000:]))


class Clients:
    """Requests one after another on a thread until stopped; every answer
    is recorded, so a change of servers under load shows any failure."""

    def __init__(self, f):
        self.f = f
        self.answers = []
        self.stopped = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stopped.is_set():
            self.answers.append(ask(self.f))
            time.sleep(0.01)

    def stop(self):
        self.stopped.set()
        self.t.join(scaled(10))
        return self.answers


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=scaled(5)) as r:
        return r.read().decode()


def server_series(text, metric):
    """{server: value} of one per-server metric."""
    out = {}
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            labels, value = line.rsplit(" ", 1)
            server = labels.split('server="', 1)[1].split('"', 1)[0]
            out[server] = float(value)
    return out


def relay_srv(ferry, dns, *extra):
    return ferry("relay", "-u", "srv://" + SRV, "--dns-server", "127.0.0.1:%d" % dns.port,
                 "--resolve-timeout", "1s", "--threads", "2", "--log-level", "info", *extra)


# --------------------------------------------------------------------------


@pytest.mark.deadline(90)
def test_srv_servers_come_and_go_live(ferry, servers, unbound):
    a = servers(name="a")
    b = servers(name="b")
    c = servers(name="c")
    dns = unbound([srv_rr(10, 1, a.port), srv_rr(10, 1, b.port), "a.%s 1 IN A 127.0.0.1" % ZONE])
    mport = free_port()
    f = relay_srv(ferry, dns, "--metrics", "127.0.0.1:%d" % mport)
    wait_for_server(f, "a")
    wait_for_server(f, "b")
    name = lambda s: "127.0.0.1:%d" % s.port  # noqa: E731
    up = server_series(scrape(mport), "ferry_server_up")
    assert up == {name(a): 1, name(b): 1}, up      # no series for the unused slots

    load = Clients(f)
    try:
        # A new record: c takes traffic within a TTL (+ the refresh, slack).
        dns.add(srv_rr(10, 1, c.port))
        wait_for_server(f, "c")

        # A session to b in flight, then b's record goes: the RRset is
        # replaced (removed, then a and c added again; the empty answer in
        # between keeps the last set).
        held = None
        for _ in range(50):
            s = f.connect()
            if recv_line(s) == b"ID:b\n":
                held = s
                break
            s.close()
        assert held is not None, "no session reached b"
        dns.remove(SRV + ".")
        dns.add(srv_rr(10, 1, a.port))
        dns.add(srv_rr(10, 1, c.port))
        wait_log(f, "127.0.0.1:%d removed by DNS" % b.port)
        before = b.accepted
        answers = [ask(f) for _ in range(30)]
        assert "ID:b" not in answers, answers
        assert b.accepted == before
        assert {"ID:a", "ID:c"} <= set(answers), answers
        # ... while the session in flight goes on.
        held.sendall(b"still here\n")
        assert recv_line(held) == b"still here\n"
        # The metrics follow: c is up, b drains (down, its session still open).
        text = scrape(mport)
        up = server_series(text, "ferry_server_up")
        assert up == {name(a): 1, name(b): 0, name(c): 1}, up
        assert server_series(text, "ferry_server_current_connections")[name(b)] == 1
        held.close()
    finally:
        got = load.stop()
    bad = [x for x in got if not x.startswith("ID:")]
    assert not bad, "requests failed during the changes: %s" % bad[:10]
    assert len(got) > 10


@pytest.mark.deadline(90)
def test_srv_priority_backup_only_when_active_down(ferry, servers, unbound):
    a = servers(name="a")
    b = servers(name="b")
    bk = servers(name="backup")
    dns = unbound([srv_rr(10, 3, a.port), srv_rr(10, 1, b.port), srv_rr(20, 1, bk.port),
                   "a.%s 1 IN A 127.0.0.1" % ZONE])
    f = relay_srv(ferry, dns, "--check-interval", "200ms", "--check-fall", "1", "--check-rise", "1")
    wait_for_server(f, "a")
    wait_for_server(f, "b")
    # (Health checks connect to every server, the backup too: count answers.)
    answers = [ask(f) for _ in range(40)]
    assert set(answers) == {"ID:a", "ID:b"}, "the backup (priority 20) was used while a and b were up: %s" % answers
    # Weights 3:1 from the records (smooth weighted round robin per worker).
    assert answers.count("ID:a") > answers.count("ID:b"), answers

    a.close()
    b.close()
    wait_for_server(f, "backup")
    answers = [ask(f) for _ in range(10)]
    assert answers == ["ID:backup"] * 10, answers


@pytest.mark.deadline(90)
def test_resolve_all_from_yaml(ferry, servers, unbound, workdir):
    port = free_port("127.0.0.2")
    s2 = servers(name="two", host="127.0.0.2", port=port)
    s3 = servers(name="three", host="127.0.0.3", port=port)
    s4 = servers(name="four", host="127.0.0.4", port=port)
    dns = unbound(["all.%s 1 IN A 127.0.0.2" % ZONE, "all.%s 1 IN A 127.0.0.3" % ZONE])
    lport = free_port()
    path = os.path.join(workdir, "all.yaml")
    with open(path, "w") as fh:
        fh.write("""upstreams:
  app:
    resolve: all
    servers:
      - all.ferry.test:%d
listeners:
  - name: app
    mode: relay
    listen: 127.0.0.1:%d
    upstream: app
    dns-server: 127.0.0.1:%d
""" % (port, lport, dns.port))
    r = run_ferry("check", "-c", path)
    assert r.returncode == 0, r.stderr
    f = ferry("run", "-c", path, "--threads", "2", listen=("127.0.0.1", lport))
    wait_for_server(f, "two")
    wait_for_server(f, "three")
    assert s4.accepted == 0
    dns.add("all.%s 1 IN A 127.0.0.4" % ZONE)
    wait_for_server(f, "four")


@pytest.mark.deadline(90)
def test_dns_down_keeps_last_set(ferry, servers, unbound):
    a = servers(name="a")
    dns = unbound([srv_rr(10, 1, a.port), "a.%s 1 IN A 127.0.0.1" % ZONE])
    f = relay_srv(ferry, dns)
    wait_for_server(f, "a")
    port = dns.port
    dns.stop()
    wait_log(f, "keeping the last 1 servers known")
    # Several failed refreshes later (1 s apart): still served, and the
    # warning was said once.
    answers = [ask(f) for _ in range(20)]
    time.sleep(scaled(2.5))
    answers += [ask(f) for _ in range(5)]
    assert answers == ["ID:a"] * 25, answers
    assert f.log().count("keeping the last") == 1, f.log()[-3000:]
    # DNS back on the same port: said once, at info.
    unbound([srv_rr(10, 1, a.port), "a.%s 1 IN A 127.0.0.1" % ZONE], port=port)
    wait_log(f, "answers again")


def test_bad_specs_name_the_flag_or_the_place(workdir):
    for spec, want in (("srv://_a._tcp.x:80", "no port after an SRV name"),
                       ("srv://", "srv:// needs a DNS name"),
                       ("srv://a..b", "not a DNS name"),
                       ("srv://_a._tcp.x,weight=2", "no weight for an SRV name")):
        r = run_ferry("relay", "-l", "127.0.0.1:0", "-u", spec)
        err = r.stderr.decode()
        assert r.returncode != 0
        assert "--upstream" in err and want in err, err
        assert err.count("\n") == 1, err
    r = run_ferry("relay", "-l", "127.0.0.1:0", "-u", "x:1", "--resolve", "some")
    assert r.returncode != 0 and "--resolve" in r.stderr.decode(), r.stderr
    r = run_ferry("relay", "-l", "127.0.0.1:0", "-u", "x:1", "--dns-refresh-min", "10s", "--dns-refresh-max", "5s")
    assert r.returncode != 0 and "--dns-refresh-min" in r.stderr.decode(), r.stderr

    path = os.path.join(workdir, "bad.yaml")
    with open(path, "w") as fh:
        fh.write("""upstreams:
  app:
    servers:
      - { srv: _app._tcp.example, weight: 3 }
listeners:
  - { name: app, mode: relay, listen: "127.0.0.1:1", upstream: app }
""")
    r = run_ferry("check", "-c", path)
    err = r.stderr.decode()
    assert r.returncode != 0
    assert "%s:4:" % path in err and "weight" in err, err
    with open(path, "w") as fh:
        fh.write("""upstreams:
  app:
    resolve: every
    servers: [ "a.example:80" ]
listeners:
  - { name: app, mode: relay, listen: "127.0.0.1:1", upstream: app }
""")
    r = run_ferry("check", "-c", path)
    err = r.stderr.decode()
    assert r.returncode != 0 and "%s:3:" % path in err and "resolve" in err, err
