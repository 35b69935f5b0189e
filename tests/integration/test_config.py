"""Integration tests for config files: `ferry check -c`, `ferry run -c`, and
shadowsocks-libev JSON with `ferry ss-server|ss-local -c`."""

import glob
import json
import os
import re
import threading

import pytest

import peers
from conftest import HERE, curl, free_port, listening, run_ferry, scaled
from peers import recv_line

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DIAG = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<warn>warning: )?(?P<msg>.+)$")


def write(workdir, name, text):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def diags(stderr, path):
    """(line, col, message) of every error line for path, in order."""
    out = []
    for line in stderr.decode().splitlines():
        m = DIAG.match(line)
        if m and m.group("file") == path and not m.group("warn"):
            out.append((int(m.group("line")), int(m.group("col")), m.group("msg")))
    return out


def wait_listening(f, port, timeout=5.0):
    assert peers.wait_until(lambda: listening(f.pid, port) or not f.alive(), scaled(timeout)), \
        "ferry does not listen on %d:\n%s" % (port, f.log())
    assert f.alive(), "ferry exited:\n%s" % f.log()


# --------------------------------------------------------------------------
# ferry check


@pytest.mark.parametrize("example", sorted(glob.glob(os.path.join(ROOT, "examples", "*.yaml"))),
                         ids=lambda p: os.path.basename(p))
def test_check_examples(example):
    r = run_ferry("check", "-c", example)
    assert r.returncode == 0, "example %s does not pass ferry check:\n%s" % (example, r.stderr.decode())
    assert re.match(r"^%s: ok \(\d+ listeners?, \d+ upstream groups?, 0 warnings\)$" % re.escape(example),
                    r.stdout.decode().strip()), r.stdout
    assert r.stderr == b"", "a clean example should print nothing on stderr: %r" % r.stderr


BAD = """\
threads: 300
listeners:
  - name: web
    mode: relay
    listen: 127.0.0.1:8080
    upstream: wbe
    conect-timeout: 5s
  - name: web
    mode: socks
    listen: 127.0.0.1:8080
    idle-timeout: 1s
    idle-timeout: 2s
    allow: [10.0.0.0/33]
upstreams:
  web: ["10.0.0.1"]
"""


def test_check_reports_every_error_with_position(workdir):
    path = write(workdir, "bad.yaml", BAD)
    r = run_ferry("check", "-c", path)
    assert r.returncode == 1, "ferry check must exit 1 on a bad config: %s" % r.stderr.decode()
    assert r.stdout == b""
    got = diags(r.stderr, path)
    want = [
        (1, 10, "threads: '300': expected a whole number from 0 to 256"),
        (6, 15, "upstream: unknown group 'wbe' (did you mean 'web'?)"),
        (7, 5, "unknown key 'conect-timeout' in a listener (did you mean 'connect-timeout'?)"),
        (8, 11, "name: listener 'web' is already defined (line 3)"),
        (10, 13, "listen: 127.0.0.1:8080 is also used by listener 'web'"),
        (12, 5, "duplicate key 'idle-timeout' (first at line 11)"),
        (13, 13, "allow: '10.0.0.0/33'"),
        (15, 9, "server: '10.0.0.1': expected HOST:PORT"),
    ]
    assert len(got) == len(want), "errors:\n%s" % r.stderr.decode()
    for (gl, gc, gm), (wl, wc, wm) in zip(got, want):
        assert (gl, gc) == (wl, wc) and gm.startswith(wm), "got %s:%s: %s, want %s:%s: %s" % (gl, gc, gm, wl, wc, wm)
    assert r.stderr.decode().rstrip().endswith("%s: %d errors" % (path, len(want)))


@pytest.mark.parametrize("globals_, line, col, msg", [
    ("api: 0.0.0.0:8474\n", 1, 6, "refusing to serve the API on a non-loopback address"),
    ("chroot: /var/empty\n", 1, 9, "--chroot needs --run-as USER"),
    ("run-as: nobody\nchroot: var/empty\n", 2, 9, "--chroot 'var/empty': needs an absolute path"),
])
def test_check_refuses_what_run_would_refuse(workdir, globals_, line, col, msg):
    """Global options that only make sense together are checked by `ferry
    check` too, at the line of the option to blame."""
    path = write(workdir, "g.yaml", globals_ + """listeners:
  - {name: s, mode: socks, listen: "127.0.0.1:1080"}
""")
    r = run_ferry("check", "-c", path)
    assert r.returncode == 1, r.stderr.decode()
    got = diags(r.stderr, path)
    assert len(got) == 1 and got[0][:2] == (line, col) and got[0][2].startswith(msg), r.stderr.decode()


def test_check_warnings_do_not_fail(workdir):
    path = write(workdir, "warn.yaml", """\
upstreams:
  web:
    balance: leastconn
    health-check: {interval: 2s, send: "PING\\r\\n", expect: "+PONG"}
    servers: ["127.0.0.1:1", {address: "127.0.0.1:2", backup: true}]
  unused: ["127.0.0.1:3"]
listeners:
  - {name: a, mode: relay, listen: "127.0.0.1:1234", upstream: web}
""")
    r = run_ferry("check", "-c", path)
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    assert "not yet enforced" not in err, err
    assert "%s:6:3: warning: upstream group 'unused' is not used" % path in err, err
    n = err.count(": warning: ")
    assert n == 1, err
    assert r.stdout.decode().strip().endswith("1 warning)"), r.stdout


def test_check_unreadable_and_usage(workdir):
    missing = os.path.join(workdir, "nope.yaml")
    r = run_ferry("check", "-c", missing)
    assert r.returncode == 1
    assert r.stderr.decode().startswith("%s: cannot read: No such file" % missing), r.stderr
    for args in (["check"], ["check", "-c"], ["run", "x.yaml"], ["relay", "-c", "x.yaml", "-u", "a:1"]):
        r = run_ferry(*args)
        assert r.returncode == 2, "ferry %s: rc=%d %s" % (args, r.returncode, r.stderr)
        assert len(r.stderr.decode().splitlines()) == 1, r.stderr
    r = run_ferry("check", "--help")
    assert r.returncode == 0 and b"ferry check [-c] FILE" in r.stdout
    r = run_ferry("--help")
    assert b"run " in r.stdout and b"check " in r.stdout


def test_run_refuses_bad_config(workdir):
    port = free_port()
    line2 = "  - {name: a, mode: socks, listen: \"127.0.0.1:%d\", maxconn: lots}" % port
    path = write(workdir, "bad.yaml", "listeners:\n%s\n" % line2)
    r = run_ferry("run", "-c", path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.decode().splitlines()
    # as every other message of ferry run (check prints them bare, as a compiler)
    assert lines[0].startswith("ferry: %s:2:%d: maxconn: 'lots'" % (path, line2.index("lots") + 1)), lines
    assert lines[-1] == "ferry: %s: 1 error, not started" % path


# --------------------------------------------------------------------------
# ferry run


@pytest.mark.deadline(60)
def test_run_relay_and_socks_at_once(ferry, workdir, http4, bigfile):
    prelay, psocks = free_port(), free_port()
    path = write(workdir, "two.yaml", """\
threads: 2
drain-timeout: 1s
upstreams:
  files: ["127.0.0.1:%d"]
listeners:
  - name: files
    mode: relay
    listen: 127.0.0.1:%d
    upstream: files
  - name: proxy
    mode: socks
    listen: 127.0.0.1:%d
    user: ["alice:s3cret"]
""" % (http4.port, prelay, psocks))
    f = ferry("run", "-c", path, listen=("127.0.0.1", prelay))
    wait_listening(f, psocks)
    results = {}

    def get(name, *args):
        results[name] = curl(*args, "-o", os.path.join(workdir, name), timeout=30)

    jobs = [threading.Thread(target=get, args=("via-relay", "http://127.0.0.1:%d/mid.bin" % prelay)),
            threading.Thread(target=get, args=("via-socks", "--socks5", "127.0.0.1:%d" % psocks,
                                               "--proxy-user", "alice:s3cret", http4.url("mid.bin")))]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    for name, r in results.items():
        assert r.returncode == 0, "curl %s failed: %s" % (name, r.stderr.decode())
        assert peers.sha256(open(os.path.join(workdir, name), "rb").read()) == bigfile["mid"], name
    ss = f.wait_sessions(2)
    assert sorted(s.get("listener") for s in ss) == ["files", "proxy"], [s["_line"] for s in ss]
    r = curl("--socks5", "127.0.0.1:%d" % psocks, http4.url("mid.bin"), "-o", "/dev/null", timeout=10)
    assert r.returncode != 0, "the socks listener must require its user"


@pytest.mark.deadline(30)
def test_run_shared_group_and_inline(ferry, workdir, identify):
    a, b, c = identify("A"), identify("B"), identify("C")
    p1, p2, p3 = free_port(), free_port(), free_port()
    path = write(workdir, "shared.yaml", """\
drain-timeout: 1s
upstreams:
  ab:
    servers: ["%s", {address: "%s", weight: 1}]
listeners:
  - {name: one, mode: relay, listen: "127.0.0.1:%d", upstream: ab}
  - {name: two, mode: relay, listen: "127.0.0.1:%d", upstream: ab}
  - {name: three, mode: relay, listen: "127.0.0.1:%d", upstream: "%s"}
""" % (a.addr, b.addr, p1, p2, p3, c.addr))
    f = ferry("run", "-c", path, listen=("127.0.0.1", p1))
    for p in (p2, p3):
        wait_listening(f, p)
    for port, allowed in ((p1, {"A", "B"}), (p2, {"A", "B"}), (p3, {"C"})):
        seen = set()
        for _ in range(8):
            s = peers.connect("127.0.0.1", port)
            seen.add(recv_line(s).decode().strip()[3:])
            s.close()
        assert seen == allowed, "listener on %d reached %s, want %s" % (port, seen, allowed)


@pytest.mark.deadline(30)
def test_run_group_retries(ferry, workdir, identify):
    """A group's retries reaches its listeners: a dead server is skipped."""
    up = identify("LIVE")
    dead = "127.0.0.1:%d" % free_port()
    port = free_port()
    path = write(workdir, "retry.yaml", """\
drain-timeout: 1s
upstreams:
  g: {retries: 1, servers: ["%s", "%s"]}
listeners:
  - {name: r, mode: relay, listen: "127.0.0.1:%d", upstream: g}
""" % (dead, up.addr, port))
    f = ferry("run", "-c", path, listen=("127.0.0.1", port))
    for _ in range(4):
        s = peers.connect("127.0.0.1", port)
        assert recv_line(s) == b"ID:LIVE\n"
        s.close()
    assert f.alive()


# --------------------------------------------------------------------------
# the reference in docs/CONFIG.md


def test_config_doc_matches_option_table():
    r = run_ferry("--dump-options")
    assert r.returncode == 0
    with open(os.path.join(ROOT, "docs", "CONFIG.md")) as fh:
        doc = fh.read()
    m = re.search(r"<!-- BEGIN generated by: ferry dump-options -->\n(.*)<!-- END generated by: ferry "
                  r"dump-options -->", doc, re.S)
    assert m, "docs/CONFIG.md lost its generated section markers"
    assert m.group(1) == r.stdout.decode(), \
        "docs/CONFIG.md is out of date with the option table: regenerate it (see the doc)"
    for name in re.findall(r"^\| `([a-z0-9-]+)` \| `--", r.stdout.decode(), re.M):
        assert "| `%s` |" % name in doc


# --------------------------------------------------------------------------
# shadowsocks-libev JSON


@pytest.mark.deadline(60)
def test_ss_json_server_and_local(ferry, workdir, http4, bigfile):
    sport, lport = free_port(), free_port()
    server = write(workdir, "server.json", json.dumps({
        "server": "127.0.0.1", "server_port": sport, "password": "correct horse",
        "method": "aes-256-gcm", "timeout": 60, "fast_open": True}))
    local = write(workdir, "local.json", json.dumps({
        "server": "127.0.0.1", "server_port": sport, "local_address": "127.0.0.1",
        "local_port": free_port(), "password": "wrong", "method": "aes-256-gcm", "mode": "tcp_only"}))
    srv = ferry("ss-server", "-c", server, "--drain-timeout", "1s", listen=("127.0.0.1", sport))
    assert "'fast_open' ignored" in srv.log()
    # -l and -k on the command line win over local_port and password
    loc = ferry("ss-local", "-c", local, "-l", "127.0.0.1:%d" % lport, "-k", "correct horse",
                "--drain-timeout", "1s")
    out = os.path.join(workdir, "ss.bin")
    r = curl("--socks5-hostname", loc.addr, http4.url("mid.bin"), "-o", out, timeout=30)
    assert r.returncode == 0, "curl through ss-local -> ss-server failed: %s\n%s\n%s" % (
        r.stderr.decode(), loc.log(), srv.log())
    assert peers.sha256(open(out, "rb").read()) == bigfile["mid"]


def test_ss_json_errors(workdir):
    path = write(workdir, "bad.json", '{"server": "0.0.0.0", "server_port": 8388,\n'
                                      ' "plugin": "v2ray-plugin", "passwd": "x"}\n')
    r = run_ferry("ss-server", "-c", path)
    assert r.returncode == 2
    err = r.stderr.decode()
    assert "%s:2:2: 'plugin': SIP003 plugins are not supported" % path in err, err
    assert "%s:2:28: unknown key 'passwd' in a shadowsocks-libev config (did you mean 'password'?)" % path \
        in err, err


# --------------------------------------------------------------------------
# addresses


@pytest.mark.deadline(30)
def test_localhost_listens_on_127_0_0_1_everywhere(ferry, workdir):
    """localhost:PORT, as toxiproxy users type it, is 127.0.0.1:PORT for -l,
    --api and the config file alike (the API's `listen` took it already)."""
    port, api = free_port(), free_port()
    f = ferry("socks", "-l", "localhost:%d" % port, "--api", "LOCALHOST:%d" % api, listen=("127.0.0.1", port))
    assert "socks listening on 127.0.0.1:%d" % port in f.log(), f.log()
    assert peers.wait_until(lambda: "api listening on 127.0.0.1:%d" % api in f.log(), scaled(5)), f.log()
    path = write(workdir, "lh.yaml", "api: localhost:%d\nlisteners:\n"
                 "  - {name: s, mode: socks, listen: \"localhost:%d\"}\n" % (free_port(), free_port()))
    r = run_ferry("check", "-c", path)
    assert r.returncode == 0, r.stderr.decode()
    r = run_ferry("socks", "-l", "example.com:1080")
    assert r.returncode == 2 and b"host must be an IP address or localhost" in r.stderr, r.stderr


@pytest.mark.parametrize("args,msg", [
    (["relay", "-l", "127.0.0.1:{p}", "-u", "127.0.0.1:1", "-u", "127.0.0.1:1"],
     "--upstream: server '127.0.0.1:1' is listed twice"),
    (["relay", "-l", "127.0.0.1:{p}", "-u", "127.0.0.1:1", "-u", "LOCALHOST:1,weight=2", "-u", "localhost:1"],
     "--upstream: server 'localhost:1' is listed twice"),
    (["relay", "-l", "127.0.0.1:{p}", "-l", "localhost:{p}", "-u", "127.0.0.1:1"],
     "--listen: 127.0.0.1:{p} is listed twice"),
    (["relay", "-l", "0.0.0.0:{p}", "-l", "127.0.0.1:{p}", "-u", "127.0.0.1:1"],
     "--listen: 127.0.0.1:{p} overlaps 0.0.0.0:{p}, listed before"),
    (["socks", "-l", "127.0.0.1:{p}", "--api", "127.0.0.1:{p}"],
     "--api 127.0.0.1:{p} is also used by listener 'socks'"),
])
def test_command_line_refuses_what_the_file_refuses(args, msg):
    """The same server or listen address twice is refused on the command
    line as in the file (one check, in the option table), naming what
    already has it, before anything is bound."""
    p = free_port()
    r = run_ferry(*[a.format(p=p) for a in args])
    assert r.returncode == 2, r.stderr.decode()
    assert r.stderr.decode() == "ferry: %s\n" % msg.format(p=p)


def test_check_listen_clashes(workdir):
    p = free_port()
    path = write(workdir, "clash.yaml", """\
listeners:
  - {name: a, mode: socks, listen: ["127.0.0.1:%d", "localhost:%d"]}
  - {name: b, mode: relay, listen: "0.0.0.0:%d", upstream: ["127.0.0.1:1", "127.0.0.1:1"], open: true}
""".replace("open: true}", "}") % (p, p, p))
    r = run_ferry("check", "-c", path)
    assert r.returncode == 1
    got = [(l, m) for l, _, m in diags(r.stderr, path)]
    assert got == [(2, "listen: 127.0.0.1:%d is listed twice" % p),
                   (3, "listen: 0.0.0.0:%d overlaps 127.0.0.1:%d of listener 'a'" % (p, p)),
                   (3, "server '127.0.0.1:1' is listed twice")], r.stderr.decode()


def test_empty_upstream_group_is_an_error_at_the_group(workdir):
    """`servers: []` is an error where it is written, used or not; the
    listener naming the group gets no second error with a command-line
    hint (-u HOST:PORT)."""
    path = write(workdir, "empty.yaml", """\
upstreams:
  web:
    servers: []
  db: []
  unused: {servers: []}
listeners:
  - {name: a, mode: relay, listen: "127.0.0.1:%d", upstream: web}
  - {name: b, mode: relay, listen: "127.0.0.1:%d", upstream: db}
  - {name: c, mode: relay, listen: "127.0.0.1:%d", upstream: []}
""" % (free_port(), free_port(), free_port()))
    r = run_ferry("check", "-c", path)
    assert r.returncode == 1
    assert diags(r.stderr, path) == [
        (3, 14, "upstream group 'web': no servers"),
        (4, 7, "upstream group 'db': no servers"),
        (5, 21, "upstream group 'unused': no servers"),
        (9, 65, "upstream: no servers"),
    ], r.stderr.decode()
    assert b"warning" not in r.stderr and b"-u HOST:PORT" not in r.stderr, r.stderr


# --------------------------------------------------------------------------
# --help


def test_help_is_aligned_and_complete():
    top = run_ferry("--help").stdout.decode()
    rows = [l for l in top.splitlines() if re.match(r"^  [a-z-]+ +\S", l)]
    assert len(rows) == 8 and len({re.match(r"^  [a-z-]+ +", l).end() for l in rows}) == 1, top
    assert "ferry --dump-options" in top, top
    for mode in ("socks", "relay", "ss-server", "ss-local", "mux-server", "mux-local"):
        out = run_ferry(mode, "--help").stdout.decode()
        lines = out.splitlines()
        assert all(len(l) <= 100 for l in lines), [l for l in lines if len(l) > 100]
        # option text starts in one column; a flag too long for its column has a line of its own
        starts = {len(l) - len(l.lstrip()) for l in lines if l.startswith(" " * 41)}
        assert starts <= {43}, out
        assert not re.search(r"\) \(default", out), out
    socks = run_ferry("socks", "--help").stdout.decode()
    assert re.search(r"--listen ADDR .*\n?.*default 127\.0\.0\.1:1080\)", socks), socks
    relay = run_ferry("relay", "--help").stdout.decode()
    assert "(0 =\n" in relay or "(0 = refuse at once; default 1024)" in " ".join(relay.split()), relay
    assert re.search(r"^  -u, --upstream HOST:PORT\S*\n {43}upstream server", relay, re.M), relay


@pytest.mark.parametrize("args,cmd", [(["--bogus"], "socks"), (["relay", "--bogus"], "relay"),
                                      (["ss-local", "-x"], "ss-local")])
def test_unknown_option_points_at_the_subcommands_help(args, cmd):
    r = run_ferry(*args)
    assert r.returncode == 2
    assert r.stderr.decode().rstrip().endswith("(see 'ferry %s --help')" % cmd), r.stderr



# --------------------------------------------------------------------------
# ferry run|check: the command line


SOCKS_YAML = "listeners:\n  - {name: s, mode: socks, listen: \"127.0.0.1:%d\"}\n"


@pytest.mark.deadline(30)
def test_run_takes_a_bare_file_and_global_overrides(ferry, workdir):
    """`ferry run FILE --log-level debug --threads 1`: FILE as -c FILE, and
    global options on the command line win over the file's."""
    port = free_port()
    path = write(workdir, "g.yaml", "threads: 3\nlog-level: error\n" + SOCKS_YAML % port)
    f = ferry("run", path, "--log-level", "info", "--threads", "1", listen=("127.0.0.1", port))
    assert "s listening on 127.0.0.1:%d (1 thread)" % port in f.log(), f.log()
    r = run_ferry("check", path, "--threads", "2")
    assert r.returncode == 0 and r.stdout.decode().startswith("%s: ok" % path), r.stderr


@pytest.mark.parametrize("extra,msg", [
    (["--maxconn", "2"], "'--maxconn' is a listener option: set it in the file"),
    (["--log-level", "loud"], "--log-level: 'loud': expected quiet"),
    (["--bogus"], "unknown option '--bogus' (see 'ferry check --help')"),
    (["-c", "{other}"], "'{path}' and '{other}': ferry check takes one config file"),
    (["{other}"], "'{path}' and '{other}': ferry check takes one config file"),
])
def test_check_command_line_errors(workdir, extra, msg):
    path = write(workdir, "a.yaml", SOCKS_YAML % free_port())
    other = write(workdir, "b.yaml", "nonsense: 1\n")
    r = run_ferry("check", "-c", path, *[a.format(other=other) for a in extra])
    assert r.returncode == 2
    assert r.stderr.decode().startswith("ferry: " + msg.format(path=path, other=other)), r.stderr


def test_check_recognizes_shadowsocks_libev_json(workdir):
    """A libev config given to ferry check is checked as one, and says which
    subcommand runs it; ferry run points there instead of failing on keys."""
    server = write(workdir, "server.json", json.dumps({
        "server": "127.0.0.1", "server_port": free_port(), "password": "pw", "method": "aes-256-gcm"}))
    r = run_ferry("check", "-c", server)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "%s: ok as a shadowsocks-libev config for ss-server (0 warnings): run it with " \
        "'ferry ss-server -c %s'\n" % (server, server)
    local = write(workdir, "local.conf", json.dumps({
        "server": "127.0.0.1", "server_port": 8388, "local_port": free_port(), "password": "pw",
        "method": "rc4-md5"}))
    r = run_ferry("check", local)
    assert r.returncode == 1
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 2 and "method: 'rc4-md5': unknown method" in lines[0], lines
    assert lines[1] == "%s: 1 error (checked as a shadowsocks-libev config for 'ferry ss-local -c')" % local
    r = run_ferry("run", server)
    assert r.returncode == 2
    assert r.stderr.decode() == "ferry: %s is a shadowsocks-libev config: run it with 'ferry ss-server -c %s'\n" \
        % (server, server)


@pytest.mark.parametrize("args", [["ss-server", "-c"], ["ss-local", "-c"], ["run"], ["run", "-c"]])
def test_unreadable_file_is_one_line(workdir, args):
    missing = os.path.join(workdir, "nope.json")
    r = run_ferry(*args, missing)
    assert r.returncode == 2
    assert r.stderr.decode() == "ferry: %s: cannot read: No such file or directory\n" % missing
