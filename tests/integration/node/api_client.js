// Drives ferry's --api with the real toxiproxy client (toxiproxy-node-client),
// unchanged, the way a test suite using toxiproxy would.
//   node api_client.js API_URL ECHO_HOST:PORT CLI_PROXY_NAME
// Prints one line per step; exits 1 with the reason on the first failure.
"use strict";
const net = require("net");
const assert = require("assert");
const { Toxiproxy } = require("toxiproxy-node-client");

const [api, echo, cliName] = process.argv.slice(2);
const SCALE = Number(process.env.FERRY_TIME_SCALE || "1");

function log(...a) { console.log(...a); }

// One connection that stays open across API calls: rtt() sends a byte and
// waits for the echo; closed resolves when the proxy closes it.
function openConn(listen) {
  const [host, port] = [listen.slice(0, listen.lastIndexOf(":")), Number(listen.slice(listen.lastIndexOf(":") + 1))];
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port }, () => resolve(c));
    const c = { s, waiters: [], ended: false, error: null };
    c.closed = new Promise((res) => s.on("close", () => { c.ended = true; res(); }));
    s.on("data", (d) => { const w = c.waiters.shift(); if (w) w(d); });
    s.on("error", (e) => { c.error = e; reject(e); });
  });
}

function rtt(c, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const timer = setTimeout(() => reject(new Error("no echo within " + timeoutMs + " ms")), timeoutMs);
    c.waiters.push(() => { clearTimeout(timer); resolve(Number(process.hrtime.bigint() - t0) / 1e6); });
    c.s.write("x");
  });
}

function within(p, ms, what) {
  return Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(what + ": not within " + ms + " ms")), ms))]);
}

async function refused(listen) {
  try { const c = await openConn(listen); c.s.destroy(); return false; }
  catch (e) { return e.code === "ECONNREFUSED"; }
}

async function main() {
  const tp = new Toxiproxy(api);

  const version = JSON.parse(await tp.getVersion());
  assert.ok(version.version, "version");
  log("version", version.version);

  const proxy = await tp.createProxy({ name: "echo", listen: "localhost:0", upstream: echo });
  assert.strictEqual(proxy.name, "echo");
  assert.strictEqual(proxy.upstream, echo);
  assert.match(proxy.listen, /^127\.0\.0\.1:[1-9][0-9]*$/, "the bound address comes back");
  log("created", proxy.listen);

  const all = await tp.getAll();
  assert.ok(all.echo && all[cliName], "getAll lists the new proxy and the CLI listener: " + Object.keys(all));
  assert.strictEqual(all.echo.listen, proxy.listen);
  log("listed", Object.keys(all).sort().join(","));

  // The same connection, before, during and after a latency toxic.
  const c = await openConn(proxy.listen);
  const base = Math.max(await rtt(c), await rtt(c));
  log("base_rtt_ms", base.toFixed(1));

  const toxic = await proxy.addToxic({ type: "latency", stream: "downstream", toxicity: 1,
                                       attributes: { latency: 300, jitter: 0 } });
  assert.strictEqual(toxic.name, "latency_downstream");
  assert.deepStrictEqual(toxic.attributes, { latency: 300, jitter: 0 });
  const slow = await rtt(c);
  log("latency300_rtt_ms", slow.toFixed(1));
  assert.ok(slow >= 280, "latency toxic added to an open connection: rtt " + slow);

  const updated = await toxic.update({ attributes: { latency: 600, jitter: 0 }, toxicity: 1 });
  assert.strictEqual(updated.attributes.latency, 600);
  const slower = await rtt(c);
  log("latency600_rtt_ms", slower.toFixed(1));
  assert.ok(slower >= 570, "updated latency applies to the open connection: rtt " + slower);

  const fetched = await proxy.getToxic("latency_downstream");
  assert.strictEqual(fetched.attributes.latency, 600);

  await updated.remove();
  const fast = Math.min(await rtt(c), await rtt(c));
  log("removed_rtt_ms", fast.toFixed(1));
  assert.ok(fast < 200 * SCALE, "removed toxic stops delaying: rtt " + fast);

  // timeout: data stops, the connection is closed after `timeout` ms.
  const tmo = await proxy.addToxic({ type: "timeout", attributes: { timeout: 300 } });
  const t0 = Date.now();
  c.s.write("x");
  await within(c.closed, 3000 * SCALE, "timeout toxic closes the open connection");
  log("timeout_closed_after_ms", Date.now() - t0);
  assert.ok(Date.now() - t0 >= 250, "closed only after the timeout");
  await tmo.remove();

  // reset_peer: the next connection gets an RST after its first data.
  const rp = await proxy.addToxic({ type: "reset_peer", stream: "upstream", attributes: { timeout: 50 } });
  const c2 = await openConn(proxy.listen);
  c2.s.write("x");
  await within(c2.closed, 3000 * SCALE, "reset_peer closes the connection");
  assert.ok(c2.error && c2.error.code === "ECONNRESET", "reset_peer resets: " + (c2.error && c2.error.code));
  log("reset_peer", c2.error.code);
  await rp.remove();

  // Disable: no listener, open connections closed; reset enables again.
  const c3 = await openConn(proxy.listen);
  await rtt(c3);
  const off = await proxy.update({ enabled: false, listen: proxy.listen, upstream: proxy.upstream });
  assert.strictEqual(off.enabled, false);
  await within(c3.closed, 3000 * SCALE, "disabling closes open connections");
  assert.ok(await refused(proxy.listen), "a disabled proxy does not listen");
  await proxy.addToxic({ type: "bandwidth", attributes: { rate: 1 } });
  await tp.reset();
  const back = await tp.get("echo");
  assert.strictEqual(back.enabled, true, "reset enables every proxy");
  const toxicsAfterReset = (await tp.getApi().get(api + "/proxies/echo/toxics")).data;
  assert.deepStrictEqual(toxicsAfterReset, [], "reset removes every toxic");
  const c4 = await openConn(back.listen);
  await rtt(c4);
  log("reset ok");

  // Delete: the open connection is closed, the port stops listening.
  await back.remove();
  await within(c4.closed, 3000 * SCALE, "deleting closes open connections");
  assert.ok(await refused(back.listen), "a deleted proxy does not listen");
  let notFound = null;
  try { await tp.get("echo"); } catch (e) { notFound = e; }
  assert.ok(notFound && /404/.test(notFound.message), "deleted proxy: " + (notFound && notFound.message));
  log("deleted ok");
}

main().then(() => { log("ALL OK"); process.exit(0); },
            (e) => { console.error("FAILED:", e && e.stack || e); process.exit(1); });
