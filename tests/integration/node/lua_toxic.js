// A lua toxic through the real toxiproxy client (toxiproxy-node-client):
// created on a proxy, seen on connections made after it, listed with its
// file, and gone for new connections once removed.
//   node lua_toxic.js API_URL ECHO_HOST:PORT SCRIPT.lua
// Prints one line per step; exits 1 with the reason on the first failure.
"use strict";
const net = require("net");
const assert = require("assert");
const { Toxiproxy } = require("toxiproxy-node-client");

const [api, echo, script] = process.argv.slice(2);

// One connection: writes `text`, half-closes, resolves with all it read.
function roundTrip(listen, text) {
  const i = listen.lastIndexOf(":");
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: listen.slice(0, i), port: Number(listen.slice(i + 1)) }, () => s.end(text));
    const got = [];
    s.on("data", (d) => got.push(d));
    s.on("end", () => resolve(Buffer.concat(got).toString()));
    s.on("error", reject);
    s.setTimeout(10000, () => reject(new Error("no answer within 10 s")));
  });
}

async function main() {
  const tp = new Toxiproxy(api);
  const proxy = await tp.createProxy({ name: "luaecho", listen: "localhost:0", upstream: echo });
  assert.strictEqual(await roundTrip(proxy.listen, "hello"), "hello");
  console.log("plain echo ok");

  const toxic = await proxy.addToxic({ type: "lua", name: "shout", stream: "downstream", toxicity: 1,
                                      attributes: { file: script } });
  assert.strictEqual(toxic.type, "lua");
  assert.strictEqual(toxic.attributes.file, script);
  console.log("created", toxic.name);

  assert.strictEqual(await roundTrip(proxy.listen, "hello"), "HELLO");
  console.log("downstream upper-cased");

  const listed = await proxy.getToxic("shout");
  assert.strictEqual(listed.attributes.file, script);
  await listed.remove();
  assert.strictEqual(await roundTrip(proxy.listen, "hello"), "hello");
  console.log("removed: plain again");

  let refused = false;
  try {
    await proxy.addToxic({ type: "lua", name: "broken", attributes: { file: script + ".missing" } });
  } catch (e) {
    refused = e.response ? e.response.status === 400 : /400/.test(String(e));
  }
  assert.ok(refused, "a lua toxic whose script does not load is refused with 400");
  console.log("missing script refused");
  console.log("ALL OK");
}

main().catch((e) => { console.log("FAIL", e && e.stack || e); process.exit(1); });
