"""Privilege drop: --run-as USER, --run-as-group GROUP, --chroot DIR.

ferry binds as root, then switches user (and optionally root directory)
before its worker threads start. These tests need root; they check the
credentials in /proc/PID/status, that traffic still flows, and that bad
requests are refused with exit status 2 and one line naming the flag.
"""

import grp
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import tempfile

import pytest

import peers
from conftest import FERRY_BIN, SANITIZED, free_port, run_ferry, scaled
from peers import recv_exact, recv_line

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop needs root (run the suite as root)")


def ids(pid):
    """{'Uid': [...], 'Gid': [...], 'Groups': [...]} from /proc/PID/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = [int(x) for x in v.split()]
    return out


def nobody():
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this system")


def no_lsan_in_chroot(monkeypatch):
    """LeakSanitizer reads /proc/PID/task at exit, which a chroot hides (it
    then fails the run). The valgrind subset checks leaks under --chroot."""
    if SANITIZED:
        monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")


def echo_ok(s, name):
    assert recv_line(s) == b"ID:%s\n" % name.encode()
    s.sendall(b"ping\n")
    assert recv_exact(s, 5) == b"ping\n"


def assert_dropped(f, uid, gid):
    got = ids(f.pid)
    assert got["Uid"] == [uid] * 4, got
    assert got["Gid"] == [gid] * 4, got
    assert got["Groups"] == [gid], "supplementary groups kept: %s" % got
    # Not dumpable (so not ptrace-able by other processes of that user):
    # the kernel then shows its private /proc files (not the directory) as root's.
    assert os.stat("/proc/%d/environ" % f.pid).st_uid == 0


@pytest.mark.deadline(30)
def test_run_as_nobody_drops_uid_gid_groups_and_relays(ferry, identify):
    pw = nobody()
    up = identify("A")
    f = ferry("relay", "-u", up.addr, "--run-as", "nobody")
    assert_dropped(f, pw.pw_uid, pw.pw_gid)
    for _ in range(3):
        with f.connect() as s:
            echo_ok(s, "A")


@pytest.mark.deadline(30)
def test_ss_json_user_drops_root(ferry, workdir):
    """shadowsocks-libev's "user" is --run-as: a migrated config started as
    root must not keep running as root (issue #20, 5)."""
    import json
    pw = nobody()
    port = free_port()
    path = os.path.join(workdir, "server.json")
    with open(path, "w") as fh:
        json.dump({"server": "127.0.0.1", "server_port": port, "password": "pw",
                   "method": "chacha20-ietf-poly1305", "user": "nobody"}, fh)
    f = ferry("ss-server", "-c", path, "--drain-timeout", "1s", listen=("127.0.0.1", port))
    assert_dropped(f, pw.pw_uid, pw.pw_gid)
    assert "'user' ignored" not in f.log(), f.log()


def free_privileged_port():
    for port in range(1023, 900, -1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free port below 1024 on 127.0.0.1")


@pytest.mark.deadline(30)
def test_run_as_keeps_an_api_on_a_privileged_port(ferry, identify):
    """The API socket is bound with the listeners, before root is dropped."""
    import urllib.request
    pw = nobody()
    up = identify("A")
    port = free_privileged_port()
    f = ferry("relay", "-u", up.addr, "--run-as", "nobody", "--api", "127.0.0.1:%d" % port)
    assert_dropped(f, pw.pw_uid, pw.pw_gid)
    with urllib.request.urlopen("http://127.0.0.1:%d/version" % port, timeout=scaled(5)) as r:
        assert r.status == 200
    with f.connect() as s:
        echo_ok(s, "A")


@pytest.mark.deadline(30)
def test_run_as_group(ferry, identify):
    pw = nobody()
    try:
        gid = grp.getgrnam("daemon").gr_gid
    except KeyError:
        pytest.skip("no group 'daemon'")
    up = identify("G")
    f = ferry("relay", "-u", up.addr, "--run-as", "nobody", "--run-as-group", "daemon")
    assert_dropped(f, pw.pw_uid, gid)
    with f.connect() as s:
        echo_ok(s, "G")


@pytest.mark.deadline(30)
def test_chroot_empty_dir_relay_to_literal_ip(ferry, identify, tmp_path, monkeypatch):
    pw = nobody()
    no_lsan_in_chroot(monkeypatch)
    root = tmp_path / "empty"
    root.mkdir()
    up = identify("C")
    f = ferry("relay", "-u", up.addr, "--run-as", "nobody", "--chroot", str(root))
    assert os.readlink("/proc/%d/root" % f.pid) == str(root)
    assert_dropped(f, pw.pw_uid, pw.pw_gid)
    with f.connect() as s:
        echo_ok(s, "C")
    assert "--chroot" in f.log()     # warns that name lookups will not see /etc/resolv.conf


@pytest.mark.deadline(30)
def test_chroot_socks5_literal_ip(ferry, identify, tmp_path, monkeypatch):
    nobody()
    no_lsan_in_chroot(monkeypatch)
    up = identify("S")
    f = ferry("socks", "--run-as", "nobody", "--chroot", str(tmp_path), "--dns-server", "127.0.0.1:9")
    with f.connect() as s:
        s.sendall(b"\x05\x01\x00")
        assert recv_exact(s, 2) == b"\x05\x00"
        s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", up.port))
        assert recv_exact(s, 10)[:2] == b"\x05\x00"
        echo_ok(s, "S")
    assert "--chroot" not in f.log()  # --dns-server given: nothing to warn about


def read(path):
    with open(path) as fh:
        return fh.read()


def wait_in(path, text):
    assert peers.wait_until(lambda: os.path.exists(path) and text in read(path), scaled(5)), \
        "%r not in %s" % (text, path)


@pytest.mark.deadline(30)
def test_log_file_in_the_chroot_is_reopened_inside_it_as_the_user(ferry, identify, tmp_path, monkeypatch):
    """--log-file opened as root before the drop; SIGUSR1 opens the same
    file's name inside the chroot, as nobody (its directory is nobody's)."""
    pw = nobody()
    no_lsan_in_chroot(monkeypatch)
    logdir = tmp_path / "root" / "log"
    logdir.mkdir(parents=True)
    os.chown(str(logdir), pw.pw_uid, pw.pw_gid)
    path = str(logdir / "ferry.log")
    up = identify("L")
    f = ferry("relay", "-u", up.addr, "--run-as", "nobody", "--chroot", str(tmp_path / "root"),
              "--dns-server", "127.0.0.1:9", "--log-file", path)
    assert os.stat(path).st_uid == 0
    with f.connect() as s:
        echo_ok(s, "L")
    wait_in(path, " sess=1 ")
    os.rename(path, path + ".1")
    f.signal(signal.SIGUSR1)
    wait_in(path, "reopened %s" % path)
    assert os.stat(path).st_uid == pw.pw_uid
    with f.connect() as s:
        echo_ok(s, "L")
    wait_in(path, " sess=2 ")
    assert " sess=2 " not in read(path + ".1") and f.log() == "", f.log()


@pytest.mark.deadline(30)
def test_log_file_outside_the_chroot_cannot_be_reopened(ferry, identify, tmp_path, monkeypatch):
    """No name inside the chroot reaches it: a warning at start, one line at
    SIGUSR1, and lines keep going to the file (copytruncate still works)."""
    nobody()
    no_lsan_in_chroot(monkeypatch)
    root = tmp_path / "root"
    root.mkdir()
    path = str(tmp_path / "ferry.log")
    up = identify("O")
    f = ferry("relay", "-u", up.addr, "--run-as", "nobody", "--chroot", str(root), "--dns-server", "127.0.0.1:9",
              "--log-file", path)
    wait_in(path, "warning: --log-file: cannot reopen it: '%s' is outside --chroot" % path)
    f.signal(signal.SIGUSR1)
    wait_in(path, "still writing to the old file")
    with f.connect() as s:
        echo_ok(s, "O")
    wait_in(path, " sess=1 ")
    assert f.alive() and f.log() == "", f.log()


@pytest.mark.parametrize("args,flag", [
    (["--run-as", "no-such-user-ferry"], "--run-as"),
    (["--run-as", "root"], "--run-as"),
    (["--run-as", "nobody", "--run-as-group", "no-such-group-ferry"], "--run-as-group"),
    (["--run-as", "nobody", "--run-as-group", "root"], "--run-as"),
    (["--run-as-group", "daemon"], "--run-as-group"),
    (["--chroot", "/"], "--chroot"),
    (["--run-as", "nobody", "--chroot", "relative/dir"], "--chroot"),
    (["--run-as", "nobody", "--chroot", "/nonexistent-ferry-dir"], "--chroot"),
])
def test_bad_request_exit_2_one_line_naming_the_flag(args, flag):
    port = free_port()
    r = run_ferry("relay", "-l", "127.0.0.1:%d" % port, "-u", "127.0.0.1:9", *args)
    err = r.stderr.decode()
    assert r.returncode == 2, (r.returncode, err)
    assert len(err.strip().splitlines()) == 1, err
    assert flag in err, err


def test_not_root_is_refused():
    pw = nobody()
    if not os.access(FERRY_BIN, os.X_OK):
        pytest.skip("ferry binary not executable")
    # The build tree may sit in a directory only root can enter (mktemp -d
    # is 0700): give nobody a copy it can run.
    home = tempfile.mkdtemp(prefix="ferry-nobody-")
    os.chmod(home, 0o755)
    exe = os.path.join(home, "ferry")
    shutil.copy2(FERRY_BIN, exe)
    os.chmod(exe, 0o755)

    def become_nobody():
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)

    try:
        r = subprocess.run([exe, "relay", "-l", "127.0.0.1:%d" % free_port(), "-u", "127.0.0.1:9",
                            "--run-as", "nobody"], preexec_fn=become_nobody, cwd=home,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=scaled(10))
    except PermissionError:     # exec itself refused (a noexec /tmp)
        pytest.skip("nobody cannot execute a copy of %s in %s" % (FERRY_BIN, home))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    err = r.stderr.decode()
    # A wrapper script as FERRY_BIN execs, then its shell cannot run ferry.
    if r.returncode == 126 or "ermission denied" in err and "--run-as" not in err:
        pytest.skip("nobody cannot execute %s" % FERRY_BIN)
    assert r.returncode == 2, (r.returncode, err)
    assert "--run-as" in err and "root" in err, err
