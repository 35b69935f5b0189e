// yamux-js (npm) as a second yamux peer for ferry mux-server (test_mux.py).
//
// node yamux_client.js HOST PORT STREAMS BYTES
//
// Opens STREAMS streams over one TCP connection; each sends BYTES bytes of
// its own deterministic data and must read back exactly what it sent (the
// upstream is an echo server). Prints "ok: ..." and exits 0 when every
// stream matched, else prints what failed and exits 1.
//
// yamux-js 0.2.0 has two bugs that shape this client: it ignores a FIN it
// receives (processFlags tests SYN where it means FIN), so a stream is done
// when BYTES came back, not at its end; and its parser loses a frame split
// across two socket reads, so BYTES x STREAMS stays well below one read
// (64 KiB) and ferry's frames, written whole, arrive whole on loopback.
'use strict';

const net = require('net');
const crypto = require('crypto');
const { Client } = require('yamux-js');

const [host, port, nstreams, nbytes] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];

function pattern(i, n) {
    const b = Buffer.alloc(n);
    for (let k = 0; k < n; k++) b[k] = (k * 31 + i * 7 + (k >> 8)) & 0xff;
    return b;
}

const timer = setTimeout(() => {
    console.log('FAIL: timeout');
    process.exit(1);
}, 60000);

const sock = net.connect(port, host);
const client = new Client({ enableKeepAlive: false });
client.on('error', (e) => {
    console.log('FAIL: session error', e && e.message);
    process.exit(1);
});
sock.on('error', (e) => {
    console.log('FAIL: socket error', e.message);
    process.exit(1);
});
sock.pipe(client).pipe(sock);

let done = 0;
let bad = 0;
sock.on('connect', () => {
    for (let i = 0; i < nstreams; i++) {
        const want = pattern(i, nbytes);
        const got = [];
        const st = client.open();
        let have_len = 0;
        st.on('error', (e) => {
            console.log('FAIL stream', i, e && e.message);
            bad++;
        });
        st.on('data', (d) => {
            got.push(d);
            have_len += d.length;
            if (have_len < nbytes) return;
            const have = Buffer.concat(got);
            const ok = crypto.createHash('sha256').update(have).digest('hex') ===
                crypto.createHash('sha256').update(want).digest('hex');
            if (!ok) {
                console.log('FAIL stream', i, 'got', have.length, 'bytes of', want.length);
                bad++;
            }
            if (++done === nstreams) {
                clearTimeout(timer);
                console.log((bad ? 'FAILED: ' : 'ok: ') + nstreams + ' streams x ' + nbytes + ' bytes echoed, ' +
                    bad + ' bad');
                sock.destroy();
                process.exit(bad ? 1 : 0);
            }
        });
        st.write(want);
    }
});
