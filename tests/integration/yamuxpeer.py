"""The Go yamux reference peer (tests/yamux_peer) for integration tests.

build(outdir) compiles it offline (tests/yamux_peer/build.sh) and returns the
binary's path; without Go it raises with what to install, so a test that
needs the peer fails loudly instead of being skipped. Server(...) runs
`yamux_peer server|echo` on a loopback port of its choosing and reads the
port back from its "listening HOST:PORT" line; client(...) runs the
multi-stream client and returns its CompletedProcess.

The conftest fixtures `yamux_peer` (the built binary, once per session) and
`yamux_server` (a factory, servers stopped at teardown) wrap these.
"""

import os
import select
import shutil
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD_SH = os.path.join(REPO, "tests", "yamux_peer", "build.sh")
INSTALL = "apt-get install golang-go golang-github-hashicorp-yamux-dev (or scripts/install-deps)"


class PeerBuildError(Exception):
    pass


def build(outdir):
    """Builds yamux_peer into outdir; returns its path."""
    if not shutil.which("go"):
        raise PeerBuildError("the yamux reference peer needs Go: " + INSTALL)
    r = subprocess.run([BUILD_SH, str(outdir)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise PeerBuildError("tests/yamux_peer/build.sh failed (%d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
    return os.path.join(str(outdir), "yamux_peer")


class Server:
    """`yamux_peer <mode> -listen 127.0.0.1:0 <args>`; .port once it listens."""

    def __init__(self, binary, mode="server", args=(), host="127.0.0.1", timeout=10.0):
        # stderr to a file, not a pipe: a chatty server must never block on it.
        self._err = tempfile.TemporaryFile(mode="w+")
        self.stderr = None
        self.proc = subprocess.Popen([binary, mode, "-listen", "%s:0" % host] + [str(a) for a in args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True)
        self.host = host
        self.port = self._read_port(timeout)

    def _read_port(self, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("listening "):
                    return int(line.rsplit(":", 1)[1])
                if not line:
                    break
        raise AssertionError("yamux_peer did not start: %s" % self.stop())

    def stop(self):
        """Stops the server (once; later calls are no-ops). Returns its stderr."""
        if self.stderr is not None:
            return self.stderr
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._err.seek(0)
        self.stderr = self._err.read()
        self._err.close()
        return self.stderr


def client(binary, host, port, streams=4, nbytes=1 << 20, target=None, timeout=60):
    """Runs the multi-stream client against host:port; exit 0 = every echo matched."""
    argv = [binary, "client", "-connect", "%s:%d" % (host, port), "-streams", str(streams),
            "-bytes", str(nbytes), "-timeout", str(int(timeout))]
    if target:
        argv += ["-target", target]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout + 10)
