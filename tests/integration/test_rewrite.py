"""Integration tests for rewrite rules (--rewrite, `rewrite:`; docs/FILTERS.md).

The byte-level behaviour (matches across reads, max, output room) is unit
tested in tests/unit/test_rewrite.c; these check that a listener applies
its rules to the relayed plaintext, in the right direction, and that bad
rules are refused where they are written. Expected outputs are computed here
with bytes.replace, which has the same meaning for one rule (leftmost,
non-overlapping).
"""

import hashlib
import os
import random
import socket

import pytest

import peers
from conftest import curl, run_ferry, scaled
from peers import read_until_close

MiB = 1024 * 1024


def relay(ferry, upstream, *rules, args=()):
    a = ["relay", "-u", upstream]
    for r in rules:
        a += ["--rewrite", r]
    return ferry(*a, *args)


def h_echo_headers(srv, c, peer):
    """A tiny HTTP server: answers any request with its own header block as
    the body, so a client sees what the server received."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d:
            return
        buf += d
    head = buf.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
              % len(head) + head)
    c.shutdown(socket.SHUT_WR)


def exchange(f, data, timeout=10):
    """Sends data through ferry, half-closes, returns what comes back."""
    c = f.connect(timeout=scaled(timeout))
    try:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        got, how = read_until_close(c, scaled(timeout))
    finally:
        c.close()
    assert how == "eof", "the session should end with EOF, got %s after %d bytes" % (how, len(got))
    return got


# --------------------------------------------------------------------------
# rules applied


@pytest.mark.deadline(60)
def test_upstream_rule_rewrites_a_request_header(ferry, servers):
    srv = servers(h_echo_headers)
    f = relay(ferry, srv.addr, "upstream:X-Ferry-Test\\: original:X-Ferry-Test\\: rewritten by ferry")
    r = curl("-H", "X-Ferry-Test: original", "-H", "X-Other: original", "http://%s/echo" % f.addr)
    assert r.returncode == 0, "curl through ferry failed: %s" % r.stderr.decode()
    body = r.stdout
    assert b"X-Ferry-Test: rewritten by ferry\r\n" in body, "the server did not see the rewritten header: %r" % body
    assert b"X-Ferry-Test: original" not in body, "the original header reached the server: %r" % body
    assert b"X-Other: original\r\n" in body, "a header the rule does not match was changed: %r" % body
    assert b"Host: %s" % f.addr.encode() in body, "the Host header was damaged: %r" % body


@pytest.mark.deadline(60)
def test_upstream_rule_leaves_the_response_alone(ferry, servers):
    """The header comes back in the body (downstream): an upstream rule must
    not touch it there, so the server's copy shows the rewrite once."""
    srv = servers(h_echo_headers)
    f = relay(ferry, srv.addr, "upstream:Accept\\: :Accept\\: x/")
    r = curl("-H", "Accept: a", "http://%s/" % f.addr)
    assert r.returncode == 0, r.stderr.decode()
    assert b"Accept: x/a\r\n" in r.stdout, r.stdout


@pytest.mark.deadline(120)
def test_downstream_hex_rule_on_a_20mb_transfer(ferry, servers):
    """Binary rule, matches scattered over 20 MB (so some straddle reads),
    replacement shorter than the match: the client's bytes are exactly
    what a one-shot replace gives."""
    match, repl = bytes.fromhex("f00dfacecafebabe"), bytes.fromhex("0102")
    rnd = random.Random(20)
    data = bytearray(os.urandom(20 * MiB))
    planted = 5000
    for slot in rnd.sample(range(len(data) // 16 - 1), planted):   # 16 apart at least: no overlaps
        pos = slot * 16 + rnd.randrange(8)
        data[pos:pos + len(match)] = match
    data = bytes(data)
    matches = data.count(match)
    assert matches >= planted, "planting went wrong: %d matches" % matches
    want = data.replace(match, repl)
    srv = servers(peers.make_source(data))
    f = relay(ferry, srv.addr, "downstream:hex:%s:hex:%s" % (match.hex(), repl.hex()))
    c = f.connect(timeout=scaled(30))
    got, how = read_until_close(c, scaled(60))
    c.close()
    assert how == "eof", "the transfer should end with EOF, got %s after %d bytes" % (how, len(got))
    n_got, n_want = len(got), len(want)
    assert n_got == n_want, "client got %d bytes, expected %d (%d matches of %d bytes -> %d)" % (
        n_got, n_want, matches, len(match), len(repl))
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(want).hexdigest(), "sha256 differs"


@pytest.mark.deadline(60)
def test_max_is_per_session_and_direction(ferry, servers):
    srv = servers(peers.h_echo)
    f = relay(ferry, srv.addr, "both:ab:X:max=3")
    # Upstream turns the first three "ab" into X; the echo sends that back
    # and downstream turns the first three "ab" it sees into X as well.
    sent = b"ab" * 10
    up = sent.replace(b"ab", b"X", 3)
    down = up.replace(b"ab", b"X", 3)
    assert exchange(f, sent) == down
    # A new session starts counting again.
    assert exchange(f, sent) == down


@pytest.mark.deadline(60)
def test_several_rules_one_scan_in_order(ferry, servers):
    srv = servers(peers.h_echo)
    # The replacement of the first rule is not matched by the second: one
    # scan, not passes; at the same position the rule given first wins.
    f = relay(ferry, srv.addr, "upstream:a:b", "upstream:b:c", "upstream:ab:NEVER")
    assert exchange(f, b"abab-") == b"bcbc-"


@pytest.mark.deadline(60)
def test_rule_on_a_socks_listener_sees_plaintext_after_the_handshake(ferry, servers):
    """The rule would break the SOCKS5 handshake if it saw it (0x05 is the
    version byte of every SOCKS5 message): only the relayed request changes."""
    srv = servers(h_echo_headers)
    f = ferry("socks", "--rewrite", "upstream:\\x05:\\x04",
              "--rewrite", "upstream:X-Ferry-Test\\: original:X-Ferry-Test\\: socks")
    r = curl("--socks5-hostname", f.addr, "-H", "X-Ferry-Test: original", "http://%s/" % srv.addr)
    assert r.returncode == 0, "curl through the SOCKS listener failed: %s" % r.stderr.decode()
    assert b"X-Ferry-Test: socks\r\n" in r.stdout, r.stdout


@pytest.mark.deadline(60)
def test_a_downstream_rule_leaves_upstream_bytes_alone(ferry, servers):
    sink = servers(peers.h_sink_hash)
    f = relay(ferry, sink.addr, "downstream:zz:y", "downstream:hex:0a:hex:0d0a")
    data = b"zz" + os.urandom(256 * 1024) + b"zz"
    got = exchange(f, data)
    # The sink's "<n> <sha256>\n" comes back through the downstream rules.
    assert got == b"%d %s\r\n" % (len(data), hashlib.sha256(data).hexdigest().encode()), got


# --------------------------------------------------------------------------
# bad rules


@pytest.mark.deadline(30)
def test_bad_spec_on_the_command_line(tmp_path):
    for spec, why in [("upstream::x", "column 10: the match is empty"),
                      ("sideways:a:b", "column 1: expected upstream, downstream or both"),
                      ("upstream:a\\q:b", "column 11: match: unknown escape"),
                      ("upstream:hex:abc:", "column 16: match: odd number of hex digits"),
                      ("upstream:a:b:max=0", "column 18: max: expected a number")]:
        r = run_ferry("relay", "-l", "127.0.0.1:1", "-u", "127.0.0.1:2", "--rewrite", spec)
        err = r.stderr.decode()
        assert r.returncode == 2, "--rewrite %r: rc=%d %s" % (spec, r.returncode, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, "--rewrite %r: expected one line, got %r" % (spec, err)
        assert "--rewrite" in lines[0] and why in lines[0], "--rewrite %r: %r" % (spec, lines[0])


BAD_YAML = """\
listeners:
  - name: web
    mode: relay
    listen: 127.0.0.1:1
    upstream: 127.0.0.1:2
    rewrite:
      - 'upstream:Host\\: a:Host\\: b'
      - 'downstream:hex:0g:'
"""


@pytest.mark.deadline(30)
def test_bad_rule_in_a_config_file(tmp_path):
    path = str(tmp_path / "bad.yaml")
    with open(path, "w") as fh:
        fh.write(BAD_YAML)
    where = "%s:8:9: rewrite: column 17: match: 'g' is not a hex digit" % path
    r = run_ferry("check", "-c", path)
    assert r.returncode == 1, "ferry check must refuse the rule: rc=%d %s" % (r.returncode, r.stderr.decode())
    assert where in r.stderr.decode(), r.stderr.decode()
    r = run_ferry("run", "-c", path)
    assert r.returncode == 2, "ferry run must refuse the rule: rc=%d %s" % (r.returncode, r.stderr.decode())
    assert where in r.stderr.decode(), r.stderr.decode()
    good = BAD_YAML.replace("0g", "0d0a")
    with open(path, "w") as fh:
        fh.write(good)
    r = run_ferry("check", "-c", path)
    assert r.returncode == 0, r.stderr.decode()
