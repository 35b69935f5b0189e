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
SUBCOMMANDS = ["socks", "relay", "ss-server", "ss-local", "run", "check"]
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
