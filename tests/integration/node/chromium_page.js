// Debian's chromium, headless, driven by playwright-core (test_chromium.py):
// loads one page through a proxy given on chromium's own command line.
//
//   node chromium_page.js PROXY_URL PAGE_URL SCREENSHOT.png [CHROMIUM]
//
// PROXY_URL is what --proxy-server gets (http://HOST:PORT or
// socks5://HOST:PORT); CHROMIUM defaults to /usr/bin/chromium. playwright-core
// downloads no browser: it only speaks CDP to the one named here.
//
// Waits for the page's script to set a title starting with "loaded" or
// "failed" (or for the time to run out), takes a screenshot, and prints one
// JSON line: {title, status, requests: [{url, status | error}]}. Exits 0
// when that line was printed (the test judges it), 1 when chromium could
// not be driven at all. Every wait is bounded and scaled by FERRY_TIME_SCALE.
'use strict';

const { chromium } = require('playwright-core');

const [proxy, pageUrl, shot, exe] = process.argv.slice(2);
const SCALE = Number(process.env.FERRY_TIME_SCALE || '1');
const ms = (t) => Math.round(t * SCALE);

async function main() {
    const args = [
        '--proxy-server=' + proxy,
        // Chromium sends loopback destinations direct unless told not to.
        '--proxy-bypass-list=<-loopback>',
        // Nothing of chromium's own (updates, safe browsing, metrics...).
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--no-first-run',
    ];
    // The setuid/namespace sandbox refuses to start as root.
    if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
    const browser = await chromium.launch({
        executablePath: exe || '/usr/bin/chromium',
        headless: true,
        args,
        timeout: ms(12000),
    });
    const out = { title: null, status: null, requests: [] };
    try {
        const page = await browser.newPage({ viewport: { width: 640, height: 400 } });
        page.on('requestfinished', async (req) => {
            const resp = await req.response().catch(() => null);
            out.requests.push({ url: req.url(), status: resp ? resp.status() : null });
        });
        page.on('requestfailed', (req) => {
            out.requests.push({ url: req.url(), error: req.failure() ? req.failure().errorText : '?' });
        });
        try {
            const resp = await page.goto(pageUrl, { waitUntil: 'load', timeout: ms(8000) });
            out.status = resp ? resp.status() : null;
            await page.waitForFunction(() => /^(loaded|failed)/.test(document.title), null,
                                       { timeout: ms(5000) });
        } catch (e) {
            out.error = String(e.message || e).split('\n')[0];
        }
        out.title = await page.title().catch(() => null);
        await page.screenshot({ path: shot, timeout: ms(5000) });
    } finally {
        await browser.close();
    }
    console.log(JSON.stringify(out));
}

main().then(() => process.exit(0), (e) => {
    console.error('chromium_page.js: ' + (e && e.stack || e));
    process.exit(1);
});
