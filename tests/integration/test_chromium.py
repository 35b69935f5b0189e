"""A real browser through ferry: Debian's headless chromium, driven by npm
playwright-core (node/chromium_page.js), with --proxy-server=http://... and
then socks5://... pointing at one ferry socks port (the mixed port).

The page lives on site-a.test and pulls a script, a stylesheet and an image
from site-b.test, and an image from 127.0.0.3 (an IP literal, proxied only
because of --proxy-bypass-list=<-loopback>). Its own script sets the title
to "loaded TOKEN" only when all of them arrived, TOKEN being a random value
found only in site-b.test's script. Both names exist only in a dnsmasq
(--no-resolv, nothing upstream) that only ferry asks (--dns-server): a
browser that went around the proxy cannot even resolve them. Chromium's
background requests are off (--disable-background-networking
--disable-component-update), and any it still makes go to ferry, whose DNS
answers nothing else: nothing leaves the machine.

Checked: the title, a PNG screenshot of real size, ferry's session lines for
site-a.test, site-b.test and 127.0.0.3 (proto= as the variant), that
dnsmasq was asked for both names, and that any other destination chromium
asked ferry for connected nowhere (Debian's chromium 156 still asks for
update.googleapis.com and accounts.google.com despite the flags).
"""

import json
import os
import secrets
import shutil
import signal
import struct
import subprocess
import zlib

import pytest

import peers
from conftest import HttpServer, free_port, scaled
from test_udp import Dnsmasq as UdpDnsmasq

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")
CHROMIUM = os.environ.get("FERRY_CHROMIUM", "/usr/bin/chromium")
IP_A, IP_B, IP_LITERAL = "127.0.0.2", "127.0.0.3", "127.0.0.3"
IMG_W, IMG_H = 48, 24


# --------------------------------------------------------------------------
# peers: dnsmasq with a query log, two web servers


class Dnsmasq(UdpDnsmasq):
    """dnsmasq answering only the given names (--no-resolv: no upstream,
    NXDOMAIN for the rest), logging every query it gets to a file."""

    def __init__(self, records, workdir):
        self.logfile = os.path.join(workdir, "dnsmasq.log")
        super().__init__(records, extra=["--log-queries", "--log-facility=" + self.logfile, "--address=/#/"])

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def queried(self, name):
        return ("query[A] %s from 127.0.0.1" % name) in self.log()


def png(width, height, rgb):
    """A solid-colour PNG (what the page's <img> must decode to its size)."""
    def chunk(kind, data):
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))
    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>waiting</title>
<link rel="stylesheet" href="http://site-b.test:{pb}/b.css">
<script src="http://site-b.test:{pb}/b.js"></script>
<script src="/a.js"></script>
</head><body>
<h1>ferry: a page from site-a.test</h1>
<p>an image from site-b.test: <img id="by-name" src="http://site-b.test:{pb}/b.png"></p>
<p>an image from {ip}: <img id="by-ip" src="http://{ip}:{pb}/b.png"></p>
</body></html>
"""

# Runs once everything (or the failure of it) has loaded.
A_JS = """window.addEventListener("load", function () {
  var why = [];
  if (window.FROM_B === undefined) why.push("b.js");
  if (getComputedStyle(document.body).backgroundColor !== "rgb(255, 236, 179)") why.push("b.css");
  ["by-name", "by-ip"].forEach(function (id) {
    var img = document.getElementById(id);
    if (!img.complete || img.naturalWidth !== %d || img.naturalHeight !== %d) why.push(id);
  });
  document.title = why.length ? "failed: " + why.join(" ") : "loaded " + window.FROM_B;
});
""" % (IMG_W, IMG_H)


@pytest.fixture
def site(workdir):
    """Site A (the page) and site B (its sub-resources): two http.servers
    on two loopback addresses, each serving its own directory, so a request
    that reached the wrong server gets a 404."""
    token = secrets.token_hex(8)
    da, db = os.path.join(workdir, "site-a"), os.path.join(workdir, "site-b")
    os.mkdir(da)
    os.mkdir(db)
    b = HttpServer(db, IP_B)
    try:
        with open(os.path.join(db, "b.js"), "w") as f:
            f.write('window.FROM_B = "%s";\n' % token)
        with open(os.path.join(db, "b.css"), "w") as f:
            f.write("body { background-color: rgb(255, 236, 179); font-family: sans-serif; }\n")
        with open(os.path.join(db, "b.png"), "wb") as f:
            f.write(png(IMG_W, IMG_H, (40, 90, 200)))
        with open(os.path.join(da, "a.js"), "w") as f:
            f.write(A_JS)
        with open(os.path.join(da, "index.html"), "w") as f:
            f.write(PAGE.format(pb=b.port, ip=IP_LITERAL))
        a = HttpServer(da, IP_A)
    except BaseException:
        b.close()
        raise
    yield {"a": a, "b": b, "token": token}
    a.close()
    b.close()


@pytest.fixture
def dns(workdir):
    d = Dnsmasq({"site-a.test": IP_A, "site-b.test": IP_B}, workdir)
    yield d
    d.close()


@pytest.fixture(scope="session")
def node_playwright():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("needs node and npm (Debian packages nodejs, npm; scripts/install-deps)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("%s is not installed (apt-get install chromium; scripts/install-deps)" % CHROMIUM)
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "playwright-core")):
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, timeout=300)
        if r.returncode != 0:
            pytest.fail("npm ci failed in %s:\n%s" % (NODE_DIR, r.stderr.decode(errors="replace")[-3000:]))
    return node


def run_chromium(node, proxy, url, shot, workdir):
    """node chromium_page.js in its own process group: on a timeout the
    whole group (node and every chromium process) is killed, none is left."""
    env = dict(os.environ, FERRY_TIME_SCALE=str(scaled(1)), HOME=workdir, TMPDIR=workdir,
               XDG_CONFIG_HOME=os.path.join(workdir, ".config"), XDG_CACHE_HOME=os.path.join(workdir, ".cache"))
    p = subprocess.Popen([node, os.path.join(NODE_DIR, "chromium_page.js"), proxy, url, shot, CHROMIUM],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, start_new_session=True)
    try:
        out, err = p.communicate(timeout=scaled(35))
    except subprocess.TimeoutExpired:
        out, err = b"", b"(killed: no result within %.0f s)" % scaled(35)
    finally:
        # What is left of the group (a chromium that outlived node): the
        # group's id stays taken while it has members, so this kills ours.
        if p.poll() is None or group_members(p.pid):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait()
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def group_members(pgid):
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
                n += int(st[st.rindex(")") + 2:].split()[2]) == pgid
            except (OSError, ValueError, IndexError):
                pass
    return n


# --------------------------------------------------------------------------


@pytest.mark.deadline(45)
@pytest.mark.parametrize("scheme,proto", [("http", "http"), ("socks5", "socks5")])
def test_chromium_loads_a_two_site_page_through_ferry(ferry, dns, site, node_playwright, workdir, scheme, proto):
    f = ferry("socks", "--dns-server", "127.0.0.1:%d" % dns.port)
    a, b = site["a"], site["b"]
    shot = os.path.join(workdir, "page.png")
    url = "http://site-a.test:%d/index.html" % a.port
    rc, out, err = run_chromium(node_playwright, "%s://%s" % (scheme, f.addr), url, shot, workdir)
    why = "\n--- chromium_page.js stdout:\n%s\n--- stderr (last 3000):\n%s\n--- ferry:\n%s" % (
        out, err[-3000:], f.log()[-4000:])
    assert rc == 0 and out.strip(), why
    res = json.loads(out.strip().splitlines()[-1])
    assert res["status"] == 200, why
    assert res["title"] == "loaded " + site["token"], why

    with open(shot, "rb") as fp:
        data = fp.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG: %r" % data[:16]
    w, h = struct.unpack("!II", data[16:24])
    assert (w, h) == (640, 400), (w, h)
    assert len(data) > 4000, "screenshot of %d bytes: a blank page?" % len(data)

    # Every one of them went through ferry, named as chromium asked for it.
    want = {"site-a.test:%d" % a.port, "site-b.test:%d" % b.port, "%s:%d" % (IP_LITERAL, b.port)}

    def seen():
        return want <= {s.get("dest") for s in f.sessions() if s.get("proto") == proto}
    assert peers.wait_until(seen, scaled(5)), "sessions missing from ferry's log (want %s):\n%s" % (
        sorted(want), f.log()[-4000:])
    assert peers.wait_until(lambda: dns.queried("site-a.test") and dns.queried("site-b.test"), scaled(5)), \
        dns.log()[-3000:]
    # Chromium's own requests reached ferry too, and went nowhere.
    mine = {IP_A, IP_B}
    stray = [s["_line"] for s in f.sessions() if s.get("dest") not in want
             and s.get("upstream", "-").rsplit(":", 1)[0] not in mine | {"-"}]
    assert not stray, "chromium reached something else through ferry:\n" + "\n".join(stray)
