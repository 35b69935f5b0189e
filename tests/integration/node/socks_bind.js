// SOCKS5 BIND through ferry with the npm `socks` package's bind command,
// unchanged: 'bound' names where ferry listens, a peer connects there,
// 'established' names the peer, then bytes flow both ways.
//   node socks_bind.js PROXY_HOST:PORT
"use strict";
const net = require("net");
const { SocksClient } = require("socks");

const proxy = process.argv[2];
const i = proxy.lastIndexOf(":");
const SCALE = Number(process.env.FERRY_TIME_SCALE || "1");
const fail = (why) => { console.log("FAIL: " + why); process.exit(1); };
setTimeout(() => fail("timeout"), 20000 * SCALE);

const client = new SocksClient({
  proxy: { host: proxy.slice(0, i), port: Number(proxy.slice(i + 1)), type: 5 },
  command: "bind",
  destination: { host: "0.0.0.0", port: 0 },
  timeout: 5000 * SCALE,
});
let peer;
client.on("error", (e) => fail("socks: " + e.message));
client.on("bound", (info) => {
  console.log("bound at " + info.remoteHost.host + ":" + info.remoteHost.port);
  peer = net.connect(info.remoteHost.port, info.remoteHost.host);
  peer.on("error", (e) => fail("peer: " + e.message));
  peer.on("data", (d) => {
    if (d.toString() !== "pong") fail("peer got " + d);
    console.log("ALL OK");
    process.exit(0);
  });
});
client.on("established", (info) => {
  console.log("established with " + info.remoteHost.host + ":" + info.remoteHost.port);
  if (info.remoteHost.port !== peer.localPort) fail("second reply names port " + info.remoteHost.port);
  info.socket.on("data", (d) => {
    if (d.toString() !== "ping") fail("client got " + d);
    info.socket.write("pong");
  });
  peer.write("ping");
});
client.connect();
