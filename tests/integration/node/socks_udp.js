// SOCKS5 UDP ASSOCIATE through ferry with the npm `socks` package (its
// associate command and UDP frame helpers), unchanged, as an application
// using it would.
//   node socks_udp.js PROXY_HOST:PORT ECHO_PORT DNS_PORT [USER PASS]
// The echo server and dnsmasq listen on 127.0.0.1; ferry resolves
// echo.test (to 127.0.0.1) through that dnsmasq. Prints one line per step
// and ALL OK; exits 1 with the reason on the first failure.
"use strict";
const dgram = require("dgram");
const assert = require("assert");
const { SocksClient } = require("socks");

const [proxy, echoPort, dnsPort, user, pass] = process.argv.slice(2);
const SCALE = Number(process.env.FERRY_TIME_SCALE || "1");
const i = proxy.lastIndexOf(":");

function dnsQuery(name, id) {
  const labels = name.split(".").map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const head = Buffer.alloc(12);
  head.writeUInt16BE(id, 0);
  head.writeUInt16BE(0x0100, 2);
  head.writeUInt16BE(1, 4);
  return Buffer.concat([head, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

// Sends a frame and waits for the next datagram from the relay.
function exchange(udp, relay, frame) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no reply within " + 5000 * SCALE + " ms")), 5000 * SCALE);
    udp.once("message", (msg) => { clearTimeout(timer); resolve(SocksClient.parseUDPFrame(msg)); });
    udp.send(frame, relay.port, relay.host);
  });
}

async function main() {
  const opts = {
    proxy: { host: proxy.slice(0, i), port: Number(proxy.slice(i + 1)), type: 5 },
    command: "associate",
    destination: { host: "0.0.0.0", port: 0 },
    timeout: 5000 * SCALE,
  };
  if (user) Object.assign(opts.proxy, { userId: user, password: pass });
  // createConnection() is CONNECT only: associate goes through an instance
  // and its 'established' event, as the package's README shows.
  const info = await new Promise((resolve, reject) => {
    const client = new SocksClient(opts);
    client.on("established", resolve);
    client.on("error", reject);
    client.connect();
  });
  const relay = info.remoteHost;
  console.log("associated, relay", relay.host + ":" + relay.port);
  const udp = dgram.createSocket("udp4");
  await new Promise((r) => udp.bind(0, "127.0.0.1", r));

  for (let n = 0; n < 20; n++) {
    const data = Buffer.from("node datagram " + n + " " + "y".repeat(n * 50));
    const f = await exchange(udp, relay, SocksClient.createUDPFrame({ remoteHost: { host: "127.0.0.1", port: Number(echoPort) }, data }));
    assert.strictEqual(f.remoteHost.host, "127.0.0.1");
    assert.strictEqual(f.remoteHost.port, Number(echoPort));
    assert.ok(f.data.equals(data), "echo " + n + " differs");
  }
  console.log("20 echoes ok");

  const byName = Buffer.from("to a name");
  const g = await exchange(udp, relay, SocksClient.createUDPFrame({ remoteHost: { host: "echo.test", port: Number(echoPort) }, data: byName }));
  assert.strictEqual(g.remoteHost.host, "127.0.0.1");
  assert.ok(g.data.equals(byName));
  console.log("name destination ok");

  const q = dnsQuery("test.example", 0x4242);
  const d = await exchange(udp, relay, SocksClient.createUDPFrame({ remoteHost: { host: "127.0.0.1", port: Number(dnsPort) }, data: q }));
  assert.strictEqual(d.data.readUInt16BE(0), 0x4242);
  assert.strictEqual(d.data.readUInt16BE(6), 1, "one answer");
  assert.ok(d.data.slice(-4).equals(Buffer.from([127, 0, 0, 9])), "test.example is 127.0.0.9");
  console.log("dns ok");

  udp.close();
  info.socket.destroy();
  console.log("ALL OK");
}

main().catch((e) => { console.error("FAILED:", e && e.stack || e); process.exit(1); });
