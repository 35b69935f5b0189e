"""Installing and running ferry as a service: sd_notify (NOTIFY_SOCKET), the
man page, bash completion, `make install`/`make uninstall`, the systemd unit.

Tools these tests need beyond the build (scripts/install-deps lists them):
man-db and groff-base (man page), bash, systemd (systemd-analyze only;
nothing here starts systemd). A missing one skips its test, naming it."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

import peers
from conftest import FERRY_BIN, HERE, run_ferry, scaled

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MAN = os.path.join(ROOT, "docs", "ferry.1")
COMPLETION = os.path.join(ROOT, "contrib", "ferry.bash")
UNIT = os.path.join(ROOT, "contrib", "ferry.service")
SUBCOMMANDS = ["socks", "relay", "ss-server", "ss-local", "mux-server", "mux-local", "run", "check"]
LONG_OPT = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")


def need_tool(tool, package):
    if not shutil.which(tool):
        pytest.skip("%s is not installed (apt-get install %s)" % (tool, package))


# --------------------------------------------------------------------------
# sd_notify


class NotifySocket:
    """The service manager's end: a unix datagram socket at a path or, for
    "@name", in the abstract namespace."""

    def __init__(self, workdir, abstract):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            self.env = "@ferry-test-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + self.env[1:])
        else:
            self.env = os.path.join(workdir, "notify.sock")
            self.sock.bind(self.env)

    def recv(self, timeout=5.0):
        """The next message as {KEY: VALUE} (and its text), or AssertionError."""
        self.sock.settimeout(scaled(timeout))
        try:
            data = self.sock.recv(4096).decode()
        except socket.timeout:
            raise AssertionError("no notify message within %.0fs" % scaled(timeout))
        return dict(line.split("=", 1) for line in data.splitlines() if "=" in line), data

    def pending(self):
        self.sock.setblocking(False)
        try:
            return self.sock.recv(4096).decode()
        except BlockingIOError:
            return None
        finally:
            self.sock.setblocking(True)

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_ready_then_stopping(ferry, workdir, monkeypatch, abstract):
    ns = NotifySocket(workdir, abstract)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", ns.env)
        f = ferry("socks", check_listen=False)
        msg, text = ns.recv()
        assert msg.get("READY") == "1", "first notify message is not READY=1: %r" % text
        assert "socks=%s" % f.addr in msg.get("STATUS", ""), text
        # READY means serving: a SOCKS5 greeting is answered at once.
        c = peers.connect(f.host, f.port, timeout=scaled(5))
        c.sendall(b"\x05\x01\x00")
        assert peers.recv_exact(c, 2, "SOCKS5 method reply") == b"\x05\x00"
        c.close()
        assert ns.pending() is None, "a second message before any signal"

        f.expect_exit = True
        f.signal(signal.SIGTERM)
        msg, text = ns.recv()
        assert msg.get("STOPPING") == "1", "after SIGTERM: %r" % text
        assert "draining" in msg.get("STATUS", ""), text
        assert f.wait(scaled(8)) == 0, f.log()
        assert ns.pending() is None
    finally:
        ns.close()


def test_notify_quit_stops_at_once(ferry, workdir, monkeypatch):
    ns = NotifySocket(workdir, False)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", ns.env)
        f = ferry("relay", "-u", "127.0.0.1:9", check_listen=False)
        assert ns.recv()[0].get("READY") == "1"
        f.expect_exit = True
        f.signal(signal.SIGQUIT)
        msg, text = ns.recv()
        assert msg.get("STOPPING") == "1" and "stopping now" in msg.get("STATUS", ""), text
        assert f.wait(scaled(8)) == 0, f.log()
    finally:
        ns.close()


def test_notify_socket_missing_is_only_a_warning(ferry, workdir, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", os.path.join(workdir, "nobody-listens-here"))
    f = ferry("socks")
    assert peers.wait_until(lambda: "warning: NOTIFY_SOCKET" in f.log(), scaled(5)), f.log()
    c = f.connect()
    c.sendall(b"\x05\x01\x00")
    assert peers.recv_exact(c, 2, "SOCKS5 method reply") == b"\x05\x00"
    c.close()


# --------------------------------------------------------------------------
# man page

def man_source_text():
    """docs/ferry.1 with roff's escapes for dashes and fonts undone."""
    with open(MAN) as f:
        src = "".join(line for line in f if not line.startswith('.\\"'))     # not the comments
    return re.sub(r"\\f[BIRP]", "", src.replace("\\-", "-").replace("\\&", ""))


def ferry_help(*args):
    r = run_ferry(*args, "--help")
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def dump_options_flags():
    r = run_ferry("--dump-options")
    assert r.returncode == 0, r.stderr
    flags = set()
    for line in r.stdout.decode().splitlines():
        cells = line.split(" | ")
        if line.startswith("| `") and len(cells) > 2 and cells[1].startswith("`-"):
            flags |= set(re.findall(r"`(-[^`]+)`", cells[1]))
    assert len(flags) > 50, r.stdout
    return flags


def test_man_renders_without_warnings():
    need_tool("groff", "groff-base")
    r = subprocess.run(["groff", "-ww", "-z", "-man", MAN], capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stderr == b"", r.stderr.decode()
    need_tool("man", "man-db")
    r = subprocess.run(["man", "--warnings", "-l", MAN], capture_output=True, timeout=30,
                       env=dict(os.environ, MANPAGER="cat", PAGER="cat"))
    assert r.returncode == 0 and r.stderr == b"", r.stderr.decode()
    assert b"ferry" in r.stdout


def test_man_options_are_current():
    """The generated OPTIONS are what scripts/gen-man-options makes of this
    binary's --dump-options and --help (else: `make man`)."""
    r = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "gen-man-options"), "--check",
                        FERRY_BIN, MAN], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def test_man_names_every_option_and_no_other():
    text = man_source_text()
    known = dump_options_flags()
    for sub in SUBCOMMANDS[:4]:
        h = ferry_help(sub)
        for short, long_ in re.findall(r"^  (?:(-\w), )?\s*(--[a-z0-9-]+)", h, re.M):
            known.add(long_)
            if short:
                known.add(short)
                assert "%s, %s" % (short, long_) in text, "%s, %s is not in the man page" % (short, long_)
    known |= {"--" + o for o in LONG_OPT.findall(ferry_help())}      # --version, --dump-options
    named = {"--" + o for o in LONG_OPT.findall(text)}
    missing = sorted(o for o in known if o.startswith("--") and o not in named)
    assert not missing, "options ferry has and docs/ferry.1 does not name: %s" % missing
    unknown = sorted(named - known - {"--help"})
    assert not unknown, "docs/ferry.1 names options ferry does not have: %s" % unknown


def test_man_synopsis_and_version():
    text = man_source_text()
    synopsis = text.split(".SH SYNOPSIS", 1)[1].split(".SH ", 1)[0]
    for sub in SUBCOMMANDS:
        assert re.search(r"(^|[\s\"])%s\b" % re.escape(sub), synopsis), "%s is not in the SYNOPSIS" % sub
    version = run_ferry("--version").stdout.decode().split()[-1]
    th = [line for line in text.splitlines() if line.startswith(".TH ")][0]
    assert '"ferry %s"' % version in th, "docs/ferry.1 .TH says %s, ferry --version %s" % (th, version)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS", "FILES", "EXIT STATUS", "EXAMPLES",
                    "SEE ALSO"):
        assert ".SH %s\n" % section in text, section


# --------------------------------------------------------------------------
# bash completion

def complete(*words, cwd=None):
    """COMPREPLY of the completion function for a command line whose last
    word is being completed (words[0]: the ferry binary)."""
    need_tool("bash", "bash")
    words = [FERRY_BIN] + list(words)
    script = ('source "$1"; shift; complete -p ferry; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1));'
              'COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; _ferry ferry "${COMP_WORDS[COMP_CWORD]}" '
              '"${COMP_WORDS[COMP_CWORD - 1]}"; printf "%s\\n" "${COMPREPLY[@]}"')
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", COMPLETION] + words,
                       capture_output=True, timeout=scaled(20), cwd=cwd)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "complete -F _ferry ferry", lines[0]
    return sorted(x for x in lines[1:] if x)


def help_options(sub):
    return set(re.findall(r"^  (?:(-\w), )?\s*(--[a-z0-9-]+)", ferry_help(sub), re.M))


def test_completion_subcommands_and_options():
    assert complete("s") == ["socks", "ss-local", "ss-server"]
    assert complete("") == sorted(SUBCOMMANDS)
    assert complete("socks", "--us") == ["--user", "--users-file"]
    assert complete("--us") == ["--user", "--users-file"]          # no subcommand: socks
    assert complete("--ver") == ["--version"]
    assert complete("relay", "--bal") == ["--balance"]
    for sub in SUBCOMMANDS[:4]:
        want = {o for pair in help_options(sub) for o in pair if o} | {"--help"}
        assert set(complete(sub, "-")) == want, sub
    assert "--log-level" in complete("run", "--") and "-c" in complete("check", "-")
    assert "--listen" not in complete("run", "--"), "run takes global options only"


def test_completion_values():
    relay_help, ss_help, socks_help = ferry_help("relay"), ferry_help("ss-local"), ferry_help("socks")
    algos = complete("relay", "--balance", "")
    assert algos == sorted(["roundrobin", "leastconn", "source", "random2"])
    assert all(a in relay_help for a in algos)
    methods = complete("ss-local", "-m", "")
    assert "chacha20-ietf-poly1305" in methods and all(m in ss_help for m in methods)
    assert complete("ss-local", "-m", "aes-1") == ["aes-128-gcm", "aes-192-gcm"]
    levels = complete("--log-level", "=", "d")            # --log-level=d, split at '=' by bash
    assert levels == ["debug"] and "debug" in socks_help
    assert complete("relay", "-l", "") == [], "nothing to offer for an address"
    assert complete("relay", "--threads", "--") == [], "the value of --threads, not an option"


def test_completion_files(workdir):
    open(os.path.join(workdir, "prod.yaml"), "w").close()
    os.mkdir(os.path.join(workdir, "caps"))
    assert complete("run", "-c", "pro", cwd=workdir) == ["prod.yaml"]
    assert complete("check", "pro", cwd=workdir) == ["prod.yaml"]
    assert complete("socks", "--capture", "ca", cwd=workdir) == ["caps"]
    assert complete("socks", "--chroot", "", cwd=workdir) == ["caps"]


# --------------------------------------------------------------------------
# make install / make uninstall

def make(*args):
    drop = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PREFIX", "DESTDIR")     # an outer make's, a shell's
    env = {k: v for k, v in os.environ.items() if k not in drop}
    # Install the binary under test, never rebuild it: BUILD is its folder, -o keeps make off it.
    bdir = os.path.dirname(FERRY_BIN)
    argv = ["make", "--no-print-directory", "-C", ROOT, "BUILD=" + bdir, "-o", FERRY_BIN] + list(args)
    r = subprocess.run(argv, capture_output=True, timeout=scaled(60), env=env)
    assert r.returncode == 0, "%s:\n%s%s" % (" ".join(argv), r.stdout.decode(), r.stderr.decode())
    return r.stdout.decode()


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_make_install_and_uninstall(workdir):
    if os.path.basename(FERRY_BIN) != "ferry":
        pytest.skip("FERRY_BIN is not a build folder's ferry")
    dest = os.path.join(workdir, "dest")
    make("install", "DESTDIR=" + dest, "PREFIX=/usr")
    got = files_under(dest)
    for want in ("usr/bin/ferry", "usr/share/man/man1/ferry.1", "usr/share/bash-completion/completions/ferry",
                 "usr/share/doc/ferry/README.md", "usr/share/doc/ferry/CONFIG.md",
                 "usr/share/doc/ferry/examples/relay-lb.yaml"):
        assert want in got, "%s not installed; installed: %s" % (want, got)
    binary = os.path.join(dest, "usr/bin/ferry")
    assert os.stat(binary).st_mode & 0o777 == 0o755
    r = subprocess.run([binary, "--version"], capture_output=True, timeout=scaled(10))
    assert r.returncode == 0 and r.stdout.startswith(b"ferry ")
    for f in ("usr/share/man/man1/ferry.1", "usr/share/bash-completion/completions/ferry"):
        assert os.stat(os.path.join(dest, f)).st_mode & 0o777 == 0o644, f
    if shutil.which("man"):
        r = subprocess.run(["man", "-w", "ferry"], capture_output=True, timeout=30,
                           env=dict(os.environ, MANPATH=os.path.join(dest, "usr/share/man")))
        assert r.stdout.decode().strip() == os.path.join(dest, "usr/share/man/man1/ferry.1"), r

    make("uninstall", "DESTDIR=" + dest, "PREFIX=/usr")
    assert files_under(dest) == [], "left behind by make uninstall"
    assert not os.path.exists(os.path.join(dest, "usr/share/doc/ferry"))


def test_make_install_default_prefix(workdir):
    out = make("-n", "install", "DESTDIR=" + workdir)
    assert "%s/usr/local/bin/ferry" % workdir in out, out
    assert "%s/usr/local/share/man/man1/ferry.1" % workdir in out, out


# --------------------------------------------------------------------------
# systemd unit

def unit_settings():
    """[(key, value)] of contrib/ferry.service, comments left out."""
    out = []
    with open(UNIT) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")):
                k, v = line.split("=", 1)
                out.append((k, v))
    return out


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|min|m|h)?", text)
    assert m, text
    return int(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "min": 60, "m": 60, "h": 3600}[m.group(2)]


def test_unit_settings():
    s = dict(unit_settings())
    assert s["Type"] == "notify"
    assert s["ExecStart"] == "/usr/local/bin/ferry run -c /etc/ferry/ferry.yaml"
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID", "SIGHUP reloads the config"
    assert s["KillSignal"] == "SIGTERM"
    dump = run_ferry("--dump-options").stdout.decode()
    drain = re.search(r"^\| `drain-timeout` \|.*?\| `([^`]+)` \|", dump, re.M).group(1)
    assert seconds(s["TimeoutStopSec"]) > seconds(drain), "TimeoutStopSec must exceed the drain timeout"
    for k, v in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                 ("PrivateTmp", "yes"), ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
                 ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"), ("DynamicUser", "yes")):
        assert s.get(k) == v, "%s=%s expected, got %s" % (k, v, s.get(k))
    assert int(s["LimitNOFILE"]) >= 65536
    assert "AF_UNIX" in s["RestrictAddressFamilies"], "the notify socket is AF_UNIX"


def test_unit_verifies(workdir):
    """systemd-analyze verify (systemd itself is not started): no warning at
    all. ExecStart points at the binary under test (verify wants it to
    exist) and the man page of Documentation= is found through MANPATH."""
    need_tool("systemd-analyze", "systemd")
    with open(UNIT) as f:
        text = f.read()
    path = os.path.join(workdir, "ferry.service")
    with open(path, "w") as f:
        f.write(text.replace("/usr/local/bin/ferry", FERRY_BIN))
    man1 = os.path.join(workdir, "man", "man1")
    os.makedirs(man1)
    shutil.copy(MAN, man1)
    r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, timeout=scaled(60),
                       env=dict(os.environ, MANPATH=os.path.join(workdir, "man")))
    assert r.returncode == 0 and r.stderr == b"" and r.stdout == b"", (r.stdout + r.stderr).decode()
