"""--log-file FILE: every log line goes to FILE; SIGUSR1 reopens it; --log-format json.

Through real signals and, when Debian's logrotate is installed, through
logrotate itself (rename + create + postrotate kill -USR1).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import peers
from conftest import free_port, run_ferry, scaled, session_lines
from peers import recv_exact, recv_line


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def relay(ferry, up, path, *args, **kw):
    return ferry("relay", "-u", up.addr, "--log-file", path, *args, **kw)


def wait_for(pred, what, timeout=5.0):
    assert peers.wait_until(pred, scaled(timeout)), what()


def sessions_in(*paths):
    return [s for p in paths for s in session_lines(read(p))]


def one_session(f, name="A"):
    with f.connect() as c:
        assert recv_line(c) == b"ID:%s\n" % name.encode()


class Clients:
    """Opens and closes sessions one after the other on a thread, until stopped."""

    def __init__(self, f, name="A"):
        self.f, self.name, self.done, self.error = f, name, 0, None
        self.stopping = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        try:
            while not self.stopping.is_set():
                one_session(self.f, self.name)
                self.done += 1
        except Exception as e:   # reported by stop()
            self.error = e

    def wait(self, n):
        wait_for(lambda: self.done >= n or self.error, lambda: "only %d sessions" % self.done)
        assert not self.error, self.error

    def stop(self):
        self.stopping.set()
        self.t.join(scaled(5))
        assert not self.error, "a client failed: %r" % self.error
        return self.done


@pytest.mark.deadline(30)
def test_lines_go_to_the_file_not_stderr(ferry, identify, workdir):
    up = identify("A")
    path = os.path.join(workdir, "ferry.log")
    f = relay(ferry, up, path)
    one_session(f)
    wait_for(lambda: len(sessions_in(path)) == 1, lambda: read(path))
    text = read(path)
    assert "relay listening on %s" % f.addr in text, text
    assert f.log() == "", "stderr should stay empty with --log-file:\n" + f.log()
    assert os.stat(path).st_mode & 0o777 == 0o640, oct(os.stat(path).st_mode)
    f.signal(signal.SIGTERM)
    assert f.wait(scaled(5)) == 0
    f.expect_exit = True
    assert read(path).splitlines()[-1].startswith("ferry: stopped"), read(path)
    assert f.log() == "", f.log()


@pytest.mark.deadline(40)
def test_rename_and_sigusr1_rotate_without_losing_or_repeating_a_line(ferry, identify, workdir):
    """logrotate without copytruncate: rename, then SIGUSR1. Sessions keep
    starting and ending across the rotation on two worker threads; every
    session line is in exactly one of the two files, the renamed file keeps
    what it had, and a session open across the rotation is untouched."""
    up = identify("A")
    path = os.path.join(workdir, "ferry.log")
    old = path + ".1"
    f = relay(ferry, up, path, "--threads", "2")
    keep = f.connect()
    assert recv_line(keep) == b"ID:A\n"
    for _ in range(10):
        one_session(f)
    wait_for(lambda: len(sessions_in(path)) == 10, lambda: read(path))
    before = read(path)

    clients = Clients(f)
    clients.wait(5)
    os.rename(path, old)
    f.signal(signal.SIGUSR1)
    wait_for(lambda: "reopened %s" % path in read(path), lambda: "no reopen line:\n%s" % read(old))
    at_reopen = clients.done
    clients.wait(at_reopen + 10)
    total = 10 + clients.stop() + 1

    m = os.urandom(5000)
    keep.sendall(m)
    assert recv_exact(keep, len(m), "echo on the session opened before the rotation") == m
    keep.close()
    wait_for(lambda: len(sessions_in(old, path)) >= total,
             lambda: "%d of %d session lines:\n%s\n---\n%s" % (len(sessions_in(old, path)), total, read(old), read(path)))
    assert f.alive()
    ids = sorted(int(s["sess"]) for s in sessions_in(old, path))
    assert ids == list(range(1, total + 1)), "lost or repeated session lines: %s" % ids
    assert read(old).startswith(before), "the renamed file lost lines"
    assert "reopened" not in read(old)
    new = sessions_in(path)
    assert len(new) >= 10 and "sess=1 " in read(path), "sessions after the reopen (and the kept one) go to the new file"
    assert f.log() == "", f.log()


@pytest.mark.deadline(30)
def test_failed_reopen_keeps_the_old_file_and_says_so(ferry, identify, workdir):
    """A symbolic link planted at the name between the rename and SIGUSR1 is
    not followed: one line, in the old file, and lines keep going there."""
    up = identify("A")
    path = os.path.join(workdir, "ferry.log")
    old = path + ".1"
    bait = os.path.join(workdir, "bait")
    open(bait, "w").close()
    f = relay(ferry, up, path)
    os.rename(path, old)
    os.symlink(bait, path)
    f.signal(signal.SIGUSR1)
    wait_for(lambda: "still writing to the old file" in read(old), lambda: read(old))
    lines = [l for l in read(old).splitlines() if "User defined signal 1" in l]
    assert len(lines) == 1 and "symbolic link" in lines[0], lines
    one_session(f)
    wait_for(lambda: len(sessions_in(old)) == 1, lambda: read(old))
    assert read(bait) == "" and f.alive()


@pytest.mark.deadline(20)
def test_symlink_at_log_file_is_refused_at_start(workdir):
    target = os.path.join(workdir, "target")
    with open(target, "w") as fh:
        fh.write("precious\n")
    link = os.path.join(workdir, "ferry.log")
    os.symlink(target, link)
    r = run_ferry("relay", "-l", "127.0.0.1:%d" % free_port(), "-u", "127.0.0.1:9", "--log-file", link)
    err = r.stderr.decode()
    assert r.returncode == 1, (r.returncode, err)
    assert err == "ferry: --log-file '%s': is a symbolic link; refusing to follow it\n" % link, err
    assert read(target) == "precious\n"


@pytest.mark.deadline(20)
def test_unopenable_log_file_is_one_line_on_stderr(workdir):
    path = os.path.join(workdir, "no-such-dir", "ferry.log")
    r = run_ferry("relay", "-l", "127.0.0.1:%d" % free_port(), "-u", "127.0.0.1:9", "--log-file", path)
    assert r.returncode == 1
    assert r.stderr.decode() == "ferry: --log-file '%s': No such file or directory\n" % path, r.stderr


@pytest.mark.deadline(20)
def test_start_failure_after_the_file_is_open_goes_to_both(workdir):
    """A port already taken: the reason is in the file and on stderr."""
    path = os.path.join(workdir, "ferry.log")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    addr = "127.0.0.1:%d" % s.getsockname()[1]
    r = run_ferry("relay", "-l", addr, "-u", "127.0.0.1:9", "--log-file", path)
    s.close()
    err = r.stderr.decode()
    assert r.returncode == 1 and len(err.splitlines()) == 1 and addr in err, (r.returncode, err)
    assert read(path) == err, read(path)


@pytest.mark.deadline(30)
def test_config_file_log_file(ferry, identify, workdir):
    up = identify("A")
    path = os.path.join(workdir, "from-yaml.log")
    port = free_port()
    conf = os.path.join(workdir, "f.yaml")
    with open(conf, "w") as fh:
        fh.write("log-file: %s\ndrain-timeout: 1s\nlisteners:\n"
                 "  - {name: r, mode: relay, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n" % (path, port, up.addr))
    assert run_ferry("check", conf).returncode == 0
    assert not os.path.exists(path), "ferry check must not create the log file"
    f = ferry("run", "-c", conf, listen=("127.0.0.1", port))
    one_session(f)
    wait_for(lambda: len(sessions_in(path)) == 1, lambda: read(path))
    assert "r listening on 127.0.0.1:%d" % port in read(path)
    assert f.log() == "", f.log()
    f.signal(signal.SIGUSR1)
    wait_for(lambda: "reopened %s" % path in read(path), lambda: read(path))


@pytest.mark.deadline(60)
def test_real_logrotate_create_and_postrotate(ferry, identify, workdir):
    """Debian's logrotate, forced twice: rename, create, postrotate kill -USR1."""
    exe = shutil.which("logrotate")
    if not exe:
        pytest.skip("logrotate is not installed")
    up = identify("A")
    path = os.path.join(workdir, "ferry.log")
    f = relay(ferry, up, path)
    conf = os.path.join(workdir, "logrotate.conf")
    with open(conf, "w") as fh:
        fh.write("%s {\n    create 0640\n    rotate 3\n    postrotate\n        kill -USR1 %d\n    endscript\n}\n"
                 % (path, f.pid))
    os.chmod(conf, 0o644)
    state = os.path.join(workdir, "logrotate.state")
    n = 0
    for rnd in range(2):
        for _ in range(3):
            one_session(f)
        n += 3
        wait_for(lambda: len(sessions_in(path)) == 3, lambda: read(path))
        r = subprocess.run([exe, "-s", state, "-f", conf], capture_output=True, timeout=scaled(20))
        assert r.returncode == 0, r.stderr.decode()
        wait_for(lambda: "reopened %s" % path in read(path), lambda: "after logrotate: %r\n%s" % (
            os.listdir(workdir), read(path + ".1")))
        assert len(sessions_in(path + ".1")) == 3, read(path + ".1")
    assert len(sessions_in(path + ".2")) == 3, read(path + ".2")
    one_session(f)
    wait_for(lambda: len(sessions_in(path)) == 1, lambda: read(path))
    ids = sorted(int(s["sess"]) for s in sessions_in(path + ".2", path + ".1", path))
    assert ids == list(range(1, n + 2)), ids
    assert f.alive() and f.log() == "", f.log()


def test_json_log_lines_parse_and_carry_the_fields(ferry, servers, workdir):
    """--log-format json: every line a JSON object (python3 -m json.tool
    takes it), the session line's key=value pairs as fields, numbers as
    numbers, and a client-chosen name still sanitised."""
    echo = servers(peers.h_echo)
    f = ferry("relay", "-u", echo.addr, "--log-format", "json")
    s = f.connect()
    s.sendall(b"ping")
    assert peers.recv_exact(s, 4, "echo") == b"ping"
    s.close()
    peers.wait_until(lambda: '"sess"' in f.log(), scaled(5))
    lines = [ln for ln in f.log().splitlines() if ln.strip()]
    assert lines, f.log()
    for ln in lines:
        r = subprocess.run([sys.executable, "-m", "json.tool"], input=ln.encode(), capture_output=True)
        assert r.returncode == 0, (ln, r.stderr)
    objs = [json.loads(ln) for ln in lines]
    sess = [o for o in objs if "sess" in o]
    assert len(sess) == 1, objs
    o = sess[0]
    assert o["level"] == "info" and o["listener"] and o["end"] == "client_closed", o
    assert o["up"] == 4 and o["down"] == 4 and isinstance(o["dur_ms"], int), o
    assert o["time"].endswith("Z"), o
    start = [o for o in objs if "listening on" in o.get("msg", "")]
    assert start, objs


def test_bad_log_format_is_a_flag_error():
    r = run_ferry("relay", "-u", "127.0.0.1:9", "--log-format", "xml")
    assert r.returncode == 2
    err = r.stderr.decode()
    assert "--log-format" in err and "text or json" in err, err


def test_log_sessions_start_shows_a_tunnel_while_it_is_open(ferry, servers):
    echo = servers(peers.h_echo)
    f = ferry("relay", "-u", echo.addr, "--log-sessions", "start,end")
    s = f.connect()
    s.sendall(b"ping")
    assert recv_exact(s, 4, "echo") == b"ping"
    # Still open: the start line is there, the end line is not.
    peers.wait_until(lambda: "event=start" in f.log(), scaled(5))
    start = [ln for ln in f.log().splitlines() if "event=start" in ln]
    assert len(start) == 1 and "sess=1 " in start[0] and "upstream=" + echo.addr in start[0], start
    assert not session_lines(f.log())
    s.close()
    ends = f.wait_sessions(1)
    assert ends[0]["end"] == "client_closed", ends


def test_log_sessions_start_only_and_bad_values(ferry, servers):
    echo = servers(peers.h_echo)
    f = ferry("relay", "-u", echo.addr, "--log-sessions", "start")
    s = f.connect()
    s.sendall(b"ping")
    assert recv_exact(s, 4, "echo") == b"ping"
    s.close()
    peers.wait_until(lambda: "event=start" in f.log(), scaled(5))
    time.sleep(scaled(0.3))          # the end line, were it written, would be by now
    assert not [ln for ln in f.log().splitlines() if " end=" in ln], f.log()
    r = run_ferry("relay", "-u", "127.0.0.1:9", "--log-sessions", "begin")
    assert r.returncode == 2 and "--log-sessions" in r.stderr.decode(), r.stderr


@pytest.mark.deadline(120)
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_log_nobody_reads_drops_lines_never_stalls_sessions(servers, fmt):
    """stderr is a pipe nobody reads (a stalled journald, a stopped pager):
    once it is full, workers go on relaying; the lines that did not fit are
    dropped and counted, and said once the reader is back, in the log's
    format (a JSON object with --log-format json)."""
    import urllib.request
    from conftest import FERRY_BIN, listening
    echo = servers(peers.h_echo)
    port, mport = free_port(), free_port()
    p = subprocess.Popen([FERRY_BIN, "relay", "-u", echo.addr, "-l", "127.0.0.1:%d" % port,
                          "--metrics", "127.0.0.1:%d" % mport, "--drain-timeout", "1s", "--log-sessions", "start,end",
                          "--log-format", fmt],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert peers.wait_until(lambda: listening(p.pid, port), scaled(5))
        # ~300 bytes of log per session: 5000 of them are far more than the
        # pipe (64 KiB) and the writer's two buffers (2 x 512 KiB) hold.
        t0 = time.monotonic()
        for i in range(5000):
            s = socket.create_connection(("127.0.0.1", port), timeout=scaled(5))
            s.sendall(b"x")
            assert recv_exact(s, 1) == b"x", "session %d stalled" % i
            s.close()
        assert time.monotonic() - t0 < scaled(60)

        def dropped():
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=scaled(5)) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("ferry_log_dropped_lines_total "):
                        return int(line.split()[1])
            return None
        assert peers.wait_until(lambda: (dropped() or 0) > 0, scaled(5)), dropped()
        # The reader is back: what was queued, then how many were dropped.
        out = b""
        deadline = time.monotonic() + scaled(10)
        os.set_blocking(p.stderr.fileno(), False)
        while b"log lines dropped" not in out and time.monotonic() < deadline:
            try:
                out += p.stderr.read() or b""
            except (BlockingIOError, TypeError):
                pass
            time.sleep(0.05)
        assert b"log lines dropped" in out, out[-2000:]
        note = [ln for ln in out.splitlines() if b"log lines dropped" in ln][0]
        if fmt == "json":
            assert json.loads(note)["msg"].endswith("ferry_log_dropped_lines_total counts them"), note
        else:
            assert note.startswith(b"ferry: ") and b"log lines dropped" in note, note
    finally:
        p.send_signal(signal.SIGTERM)
        os.set_blocking(p.stderr.fileno(), True)
        p.stderr.read()
        assert p.wait(scaled(10)) == 0
