"""SIGHUP reloads the configuration (docs/CONFIG.md, "Reloading").

`ferry run -c FILE` reads FILE again; a command-line start reads the files
it names again. Kept listeners run on, added ones open, removed ones stop
accepting while their sessions finish, changed ones apply to new sessions
only; listening sockets of unchanged addresses pass on, so no connection is
refused; a bad config is refused and the old one serves on.
"""

import hashlib
import os
import re
import signal
import socket
import threading
import time

import pytest

import peers
from conftest import free_port, listening, scaled
from peers import recv_exact, recv_line
from test_install import NotifySocket
from test_socks import s5_auth, s5_greet, s5_reply, s5_req
from test_ss import dns, flocal, fsrv, s5_connect  # noqa: F401 (fixtures)

DIAG = re.compile(r"^ferry: (?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<msg>.+)$", re.M)


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)          # as an editor or a config manager does: never half a file


def relay_yaml(listeners, drain="3s", threads=2, extra=""):
    """listeners: [(name, port, upstream_addr, extra_keys)]"""
    out = "threads: %d\ndrain-timeout: %s\n%slisteners:\n" % (threads, drain, extra)
    for name, port, up, more in listeners:
        out += '  - {name: %s, mode: relay, listen: "127.0.0.1:%d", upstream: "%s"%s}\n' % (
            name, port, up, (", " + more) if more else "")
    return out


def reloads(f):
    return f.log().count(": reloaded ")


def failures(f):
    return f.log().count(": reload failed")


def hup(f, ok=True):
    """SIGHUP and wait for its outcome line; returns that line."""
    before = reloads(f) + failures(f)
    f.signal(signal.SIGHUP)
    assert peers.wait_until(lambda: reloads(f) + failures(f) > before, scaled(5)), \
        "no reload outcome line after SIGHUP:\n%s" % f.log()
    line = [ln for ln in f.log().splitlines() if ": reloaded " in ln or ": reload failed" in ln][-1]
    if ok is not None:
        assert (": reloaded " in line) == ok, "%s\n--- log ---\n%s" % (line, f.log())
    return line


def ident(port):
    with peers.connect("127.0.0.1", port) as c:
        return recv_line(c).decode().strip()


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=scaled(2)).close()
    except ConnectionRefusedError:
        return True
    return False


def start(ferry, workdir, text, port):
    path = os.path.join(workdir, "ferry.yaml")
    write(path, text)
    return path, ferry("run", "-c", path, listen=("127.0.0.1", port))


# --------------------------------------------------------------------------


@pytest.mark.deadline(90)
def test_50mb_transfer_across_five_reloads(ferry, workdir, servers):
    """Each reload changes the listener (maxconn), so the session's listener
    is retired five times under it: its config must outlive the reloads."""
    sink = servers(peers.h_sink_hash)
    port = free_port()
    path, f = start(ferry, workdir, relay_yaml([("a", port, sink.addr, "maxconn: 1000")], drain="60s"), port)
    chunk = os.urandom(1 << 20)
    digest = hashlib.sha256()
    c = peers.connect("127.0.0.1", port, timeout=scaled(30))
    for i in range(50):
        c.sendall(chunk)
        digest.update(chunk)
        if i in (4, 12, 20, 28, 36):   # five reloads mid-stream
            write(path, relay_yaml([("a", port, sink.addr, "maxconn: %d" % (1001 + i))], drain="60s"))
            assert "changed 1" in hup(f)
    c.shutdown(socket.SHUT_WR)
    c.settimeout(scaled(30))
    answer = recv_line(c).decode().split()
    c.close()
    assert answer == [str(50 << 20), digest.hexdigest()], "upstream got %s" % answer
    assert reloads(f) == 5
    ss = f.wait_sessions(1)
    assert ss and ss[0].get("end") not in ("drain", "api"), ss[0]["_line"]


@pytest.mark.deadline(60)
def test_no_connection_refused_during_reloads(ferry, workdir, identify):
    a, b = identify("A"), identify("B")
    port = free_port()
    path, f = start(ferry, workdir, relay_yaml([("web", port, a.addr, "")]), port)
    stop, errors, count = threading.Event(), [], [0]

    def loop():
        while not stop.is_set():
            try:
                with peers.connect("127.0.0.1", port, timeout=scaled(5)) as c:
                    line = recv_line(c).decode()
                    if line not in ("ID:A\n", "ID:B\n"):
                        errors.append("answer %r" % line)
                count[0] += 1
            except Exception as e:   # a refusal, a reset, a timeout
                errors.append(repr(e))
                return

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(5):
        seen = count[0]
        assert peers.wait_until(lambda: count[0] >= seen + 20 or errors, scaled(10)), "clients stalled"
        # upstream A/B alternate (changed), and once nothing changes (kept)
        up = (a, b)[i % 2] if i != 2 else (a, b)[1]
        write(path, relay_yaml([("web", port, up.addr, "")]))
        hup(f)
    seen = count[0]
    assert peers.wait_until(lambda: count[0] >= seen + 20 or errors, scaled(10)), "clients stalled"
    stop.set()
    for t in threads:
        t.join(scaled(10))
    assert not errors, "a client failed during the reloads: %s\n%s" % (errors[:3], f.log()[-3000:])
    assert ident(port) == "ID:A"       # the fifth reload's upstream
    assert "kept 1" in f.log(), "the third reload changed nothing"


@pytest.mark.deadline(40)
def test_bad_config_keeps_the_old_one(ferry, workdir, identify):
    a = identify("A")
    port = free_port()
    good = relay_yaml([("web", port, a.addr, "")])
    path, f = start(ferry, workdir, good, port)
    # line 5, col 3: a listener with an unknown key
    write(path, good + '  - {name: x, mode: relay, listen: "127.0.0.1:%d", upstream: "%s", bogus-key: 1}\n'
          % (free_port(), a.addr))
    line = hup(f, ok=False)
    assert "still running the old configuration" in line
    diags = [m.groupdict() for m in DIAG.finditer(f.log()) if m.group("file") == path]
    assert diags, "no FILE:LINE:COL line for %s:\n%s" % (path, f.log())
    assert diags[0]["line"] == "5" and "bogus-key" in diags[0]["msg"], diags
    assert ident(port) == "ID:A"
    # not even YAML
    write(path, "listeners: [\n")
    hup(f, ok=False)
    assert ident(port) == "ID:A"
    # and once fixed, it loads
    write(path, good)
    assert "kept 1" in hup(f)


@pytest.mark.deadline(40)
@pytest.mark.parametrize("change,option", [("threads: 3\n", "--threads"), ("log-level: debug\n", "--log-level")])
def test_restart_only_option_is_refused(ferry, workdir, identify, change, option):
    a = identify("A")
    port = free_port()
    path, f = start(ferry, workdir, relay_yaml([("web", port, a.addr, "")]), port)
    text = relay_yaml([("web", port, a.addr, "")]).replace("threads: 2\n", "threads: 2\n" + change)
    if change.startswith("threads"):
        text = text.replace("threads: 2\n", "")
    write(path, text)
    line = hup(f, ok=False)
    assert option in line and "restart" in line, line
    assert ident(port) == "ID:A"


@pytest.mark.deadline(60)
def test_listener_added_and_removed(ferry, workdir, identify):
    a, b, c = identify("A"), identify("B"), identify("C")
    pa, pb, pc = free_port(), free_port(), free_port()
    path, f = start(ferry, workdir, relay_yaml([("a", pa, a.addr, ""), ("b", pb, b.addr, "")]), pa)
    assert peers.wait_until(lambda: listening(f.pid, pb), scaled(5))
    held = peers.connect("127.0.0.1", pb)
    assert recv_line(held) == b"ID:B\n"
    write(path, relay_yaml([("a", pa, a.addr, ""), ("c", pc, c.addr, "")]))
    line = hup(f)
    assert "added 1, removed 1, changed 0, kept 1" in line, line
    assert peers.wait_until(lambda: listening(f.pid, pc), scaled(5))
    assert ident(pc) == "ID:C" and ident(pa) == "ID:A"
    assert refused(pb), "the removed listener still accepts"
    # its session in flight goes on, then ends as its client wants
    held.sendall(b"still here\n")
    assert recv_line(held) == b"still here\n"
    held.close()
    ss = f.wait_sessions(1, pred=lambda s: s.get("listener") == "b")
    assert ss and ss[0].get("end") == "client_closed", [s["_line"] for s in ss]


@pytest.mark.deadline(60)
def test_listeners_grow_and_shrink(ferry, workdir, identify):
    ups = [identify(n) for n in "ABCD"]
    ports = [free_port() for _ in ups]
    one = [("l0", ports[0], ups[0].addr, "")]
    four = [("l%d" % i, ports[i], ups[i].addr, "") for i in range(4)]
    path, f = start(ferry, workdir, relay_yaml(one), ports[0])
    write(path, relay_yaml(four))
    assert "added 3, removed 0, changed 0, kept 1" in hup(f)
    for i in range(4):
        assert peers.wait_until(lambda: listening(f.pid, ports[i]), scaled(5))
        assert ident(ports[i]) == "ID:%s" % "ABCD"[i]
    write(path, relay_yaml(four[3:]))
    assert "added 0, removed 3, changed 0, kept 1" in hup(f)
    assert ident(ports[3]) == "ID:D"
    for i in range(3):
        assert refused(ports[i])
    assert peers.wait_until(lambda: f.log().count(" retired: ") >= 3, scaled(5)), f.log()


@pytest.mark.deadline(60)
def test_removed_listener_drain_is_bounded(ferry, workdir, identify):
    a, b = identify("A"), identify("B")
    pa, pb = free_port(), free_port()
    path, f = start(ferry, workdir, relay_yaml([("a", pa, a.addr, ""), ("b", pb, b.addr, "")], drain="1s"), pa)
    assert peers.wait_until(lambda: listening(f.pid, pb), scaled(5))
    held = peers.connect("127.0.0.1", pb)
    assert recv_line(held) == b"ID:B\n"
    write(path, relay_yaml([("a", pa, a.addr, "")], drain="1s"))
    hup(f)
    ss = f.wait_sessions(1, timeout=10, pred=lambda s: s.get("listener") == "b")
    assert ss and ss[0].get("end") == "drain", [s["_line"] for s in f.sessions()]
    assert peers.wait_closed(held, scaled(5))
    held.close()
    assert ident(pa) == "ID:A"


@pytest.mark.deadline(60)
def test_drain_deadline_of_a_reloaded_listener(ferry, workdir, identify):
    """A listener a reload made (not one from the start) retired by the next
    reloads: twice changed while a session holds on, the deadline closes it."""
    a, b = identify("A"), identify("B")
    port = free_port()
    path, f = start(ferry, workdir, relay_yaml([("web", port, a.addr, "")], drain="1s"), port)
    write(path, relay_yaml([("web", port, b.addr, "")], drain="1s"))
    hup(f)
    held = peers.connect("127.0.0.1", port)
    assert recv_line(held) == b"ID:B\n"
    write(path, relay_yaml([("web", port, a.addr, "")], drain="1s"))
    hup(f)
    ss = f.wait_sessions(1, timeout=10, pred=lambda s: s.get("end") == "drain")
    assert ss, "the held session was not closed by the drain:\n%s" % f.log()
    assert peers.wait_closed(held, scaled(5))
    held.close()
    for i in range(3):      # more reloads, and sessions, after the retired listener went
        write(path, relay_yaml([("web", port, (a, b)[i % 2].addr, "")], drain="1s"))
        hup(f)
        assert ident(port) == "ID:%s" % "AB"[i % 2]
    # four listeners retired (the first reload of the loop kept it), each
    # freed once every worker is done with it
    assert peers.wait_until(lambda: f.log().count("listener=web retired") >= 4, scaled(5)), f.log()
    assert f.log().count("listener=web retired") == 4, f.log()


@pytest.mark.deadline(60)
def test_changed_option_applies_to_new_sessions_only(ferry, workdir, identify):
    a, b = identify("A"), identify("B")
    port = free_port()
    path, f = start(ferry, workdir, relay_yaml([("web", port, a.addr, "maxconn: 1")]), port)
    old = peers.connect("127.0.0.1", port)
    assert recv_line(old) == b"ID:A\n"
    # maxconn 1 is taken: a second client is refused
    with peers.connect("127.0.0.1", port) as c:
        assert peers.read_until_close(c, timeout=scaled(5)) in ((b"", "eof"), (b"", "reset"))
    write(path, relay_yaml([("web", port, b.addr, "maxconn: 2")]))
    assert "changed 1" in hup(f)
    new1 = peers.connect("127.0.0.1", port)
    assert recv_line(new1) == b"ID:B\n", "a new session takes the new upstream"
    new2 = peers.connect("127.0.0.1", port)
    assert recv_line(new2) == b"ID:B\n", "the new maxconn (2) counts new sessions"
    with peers.connect("127.0.0.1", port) as c:
        assert peers.read_until_close(c, timeout=scaled(5)) in ((b"", "eof"), (b"", "reset")), \
            "a third new session is over maxconn 2"
    old.sendall(b"old\n")
    assert recv_line(old) == b"old\n", "the session in flight keeps its upstream"
    for s in (old, new1, new2):
        s.close()


@pytest.mark.deadline(40)
def test_connection_waiting_for_its_proxy_header_survives_a_reload(ferry, workdir, identify):
    a, b = identify("A"), identify("B")
    port = free_port()
    path, f = start(ferry, workdir, relay_yaml([("web", port, a.addr, "accept-proxy: true")]), port)
    c = peers.connect("127.0.0.1", port)
    c.sendall(b"PROXY TCP4 192.0.2.7 ")
    time.sleep(0.2)          # accepted and held (nothing in the log says so at info level)
    write(path, relay_yaml([("web", port, b.addr, "accept-proxy: true")]))
    assert "changed 1" in hup(f)
    c.sendall(b"127.0.0.1 5555 80\r\n")
    assert recv_line(c) == b"ID:B\n", "admitted by the new listener"
    c.close()
    ss = f.wait_sessions(1)
    assert ss and ss[0].get("client", "").startswith("192.0.2.7"), [s["_line"] for s in ss]


def socks_login(f, user, pw, up_port):
    """0 when user:pw logs in and CONNECT to up_port works, else the failing status."""
    with f.connect() as s:
        assert s5_greet(s, (2,)) == 2
        st = s5_auth(s, user, pw)
        if st != 0:
            return st
        s.sendall(s5_req(1, "127.0.0.1", up_port))
        rep = s5_reply(s)[0]
        if rep == 0:
            assert recv_line(s) == b"ID:A\n"
        return rep


@pytest.mark.deadline(40)
def test_users_file_reloaded_on_a_command_line_start(ferry, workdir, identify):
    up = identify("A")
    uf = os.path.join(workdir, "users")
    write(uf, "alice:first-pw\n")
    f = ferry("socks", "--users-file", uf, "--threads", "2")
    assert socks_login(f, "alice", "first-pw", up.port) == 0
    write(uf, "alice:second-pw\nbob:bobs-pw\n")
    line = hup(f)
    assert "the command line and its files: --users-file %s" % uf in line, line
    assert "changed 1" in line, line
    assert socks_login(f, "alice", "first-pw", up.port) != 0, "the old password still works"
    assert socks_login(f, "alice", "second-pw", up.port) == 0
    assert socks_login(f, "bob", "bobs-pw", up.port) == 0
    # an unchanged file: the listener is kept
    assert "kept 1" in hup(f)
    # a file that no longer reads: refused, the users stay
    os.unlink(uf)
    hup(f, ok=False)
    assert socks_login(f, "bob", "bobs-pw", up.port) == 0
    for pw in ("first-pw", "second-pw", "bobs-pw"):
        assert pw not in f.log()


def through(loc, up):
    with s5_connect(loc.addr, "127.0.0.1", up.port) as s:
        return recv_line(s)


@pytest.mark.deadline(60)
def test_ss_server_password_file_reloaded(fsrv, flocal, identify, workdir):
    """The key changes with the file; a reload that keeps it keeps the
    listener (and its replay filter)."""
    up = identify("A")
    pf = os.path.join(workdir, "pw")
    write(pf, "first-secret\n")
    srv = fsrv("--password-file", pf, "--drain-timeout", "60s")
    old_loc = flocal(srv.addr, "-k", "first-secret")
    assert through(old_loc, up) == b"ID:A\n"
    assert "kept 1" in hup(srv)
    assert through(old_loc, up) == b"ID:A\n"
    held = s5_connect(old_loc.addr, "127.0.0.1", up.port)
    assert recv_line(held) == b"ID:A\n"
    write(pf, "second-secret\n")
    line = hup(srv)
    assert "--password-file %s" % pf in line and "changed 1" in line, line
    new_loc = flocal(srv.addr, "-k", "second-secret")
    assert through(new_loc, up) == b"ID:A\n"
    held.sendall(b"old key, old session\n")
    assert recv_line(held) == b"old key, old session\n"
    held.close()
    with s5_connect(old_loc.addr, "127.0.0.1", up.port) as s:   # the old key opens nothing any more
        assert peers.read_until_close(s, timeout=scaled(3))[0] == b""
    assert "second-secret" not in srv.log() and "first-secret" not in srv.log()


@pytest.mark.deadline(40)
def test_filter_script_reloaded(ferry, workdir, identify):
    up = identify("A")
    script = os.path.join(workdir, "f.lua")
    lua = 'function on_data(s, dir, data) if dir == "down" then return (data:gsub("ID:A", "%s")) end return data end\n'
    write(script, lua % "ID:X")
    f = ferry("relay", "-u", up.addr, "--filter", script)
    assert ident(f.port) == "ID:X"
    write(script, lua % "ID:Y")
    line = hup(f)
    assert "--filter %s" % script in line and "changed 1" in line, line
    assert ident(f.port) == "ID:Y"


@pytest.mark.deadline(40)
def test_notify_reloading_then_ready(ferry, workdir, identify, monkeypatch):
    a = identify("A")
    port = free_port()
    ns = NotifySocket(workdir, False)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", ns.env)
        path, f = start(ferry, workdir, relay_yaml([("web", port, a.addr, "")]), port)
        msg, text = ns.recv()
        assert msg.get("READY") == "1", text
        for bad in (False, True):
            if bad:
                write(path, "listeners: [\n")
            before = time.monotonic()
            f.signal(signal.SIGHUP)
            msg, text = ns.recv()
            assert msg.get("RELOADING") == "1", "first message after SIGHUP: %r" % text
            usec = int(msg["MONOTONIC_USEC"])
            assert before - 5 <= usec / 1e6 <= time.monotonic() + 5, "MONOTONIC_USEC is CLOCK_MONOTONIC: %r" % text
            msg, text = ns.recv()
            assert msg.get("READY") == "1", "after the reload (failed: %s): %r" % (bad, text)
            assert "web=127.0.0.1:%d" % port in msg.get("STATUS", ""), text
        assert ns.pending() is None
        assert ident(port) == "ID:A"
    finally:
        ns.close()
