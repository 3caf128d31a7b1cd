// Cross-origin calls to the relay from real pages: headless Debian Chromium, driven by
// puppeteer-core, loads a blank page from a local HTTP server per origin and, from that page,
// calls the relay's HTTP mode with fetch() and opens a Hybrid Connections sender WebSocket.
// Usage: node browser-fetch.js RELAY_HTTPS_BASE TOKEN WSS_URL PORT [PORT ...]
//   RELAY_HTTPS_BASE  https://127.0.0.1:PORT of the relay (no trailing slash)
//   TOKEN             a send token for the HTTP address `web` (ServiceBusAuthorization)
//   WSS_URL           a sender URL, wss://.../$hc/ADDRESS?sb-hc-action=connect&sb-hc-token=...,
//                     with a listener behind it that echoes each message
//   PORT              serve the blank page on http://127.0.0.1:PORT: the page's origin
// For each PORT, in order, the page:
//   post:         POSTs {"a":2,"b":3} as JSON to RELAY_HTTPS_BASE/web/echo with the token (a
//                 preflighted request: custom header, JSON content type);
//   typed:        POSTs {"values":[1,4,5]} as JSON to RELAY_HTTPS_BASE/lab/Lab/first_even with the
//                 token: a typed contract's JSON call to a Rust host;
//   unauthorized: GETs RELAY_HTTPS_BASE/web/hello without a token;
//   ws:           opens WSS_URL, sends "hello", closes with 1000 "bye" once it comes back.
// Prints one JSON line per PORT:
//   {"origin": "http://127.0.0.1:PORT",
//    "post": {status, body} | {error}, "typed": {status, body} | {error},
//    "unauthorized": {status, body} | {error},
//    "ws": {echoed, wasClean, code, reason} | {error, echoed}}
// A fetch the browser refuses (CORS) is an {error} (a TypeError in the page): its status is not
// readable. Exits 0 whatever the relay did; 1 (after a {"error"} line) if the script itself broke.
// CHROMIUM names the browser (default /usr/bin/chromium).
'use strict';
const http = require('http');
const launchBrowser = require('./launch-browser');

const [base, token, wssUrl, ...ports] = process.argv.slice(2);
if (!base || !token || !wssUrl || ports.length === 0) {
  process.stderr.write('usage: node browser-fetch.js RELAY_HTTPS_BASE TOKEN WSS_URL PORT [PORT ...]\n');
  process.exit(2);
}

// A server of a blank HTML page on 127.0.0.1:port, listening.
function serveBlankPage(port) {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>origin</title>');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(port), '127.0.0.1', () => resolve(server));
  });
}

function stop(server) {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

// Runs in the page: every step is bounded, so a relay that never answers gives an {error}.
async function callRelay(base, token, wssUrl) {
  const LIMIT_MS = 10000;
  const attempt = async (url, init) => {
    try {
      const r = await fetch(url, { ...init, signal: AbortSignal.timeout(LIMIT_MS) });
      return { status: r.status, body: await r.text() };
    } catch (e) {
      return { error: String(e) };
    }
  };
  const post = await attempt(base + '/web/echo', {
    method: 'POST',
    headers: { 'ServiceBusAuthorization': token, 'Content-Type': 'application/json' },
    body: JSON.stringify({ a: 2, b: 3 }),
  });
  const typed = await attempt(base + '/lab/Lab/first_even', {
    method: 'POST',
    headers: { 'ServiceBusAuthorization': token, 'Content-Type': 'application/json' },
    body: JSON.stringify({ values: [1, 4, 5] }),
  });
  const unauthorized = await attempt(base + '/web/hello', {});
  const ws = await new Promise((resolve) => {
    let echoed = null;
    let socket;
    try {
      socket = new WebSocket(wssUrl);
    } catch (e) {
      resolve({ error: String(e), echoed });
      return;
    }
    const timer = setTimeout(() => resolve({ error: `no close within ${LIMIT_MS} ms`, echoed }), LIMIT_MS);
    socket.onopen = () => socket.send('hello');
    socket.onmessage = async (event) => {
      echoed = typeof event.data === 'string' ? event.data : await event.data.text();
      socket.close(1000, 'bye');
    };
    socket.onerror = () => {};
    socket.onclose = (event) => {
      clearTimeout(timer);
      resolve({ echoed, wasClean: event.wasClean, code: event.code, reason: event.reason });
    };
  });
  return { post, typed, unauthorized, ws };
}

async function main() {
  const servers = [];
  let browser;
  try {
    for (const port of ports) servers.push(await serveBlankPage(port));
    browser = await launchBrowser();
    const page = await browser.newPage();
    for (const port of ports) {
      const origin = `http://127.0.0.1:${port}`;
      await page.goto(origin + '/', { waitUntil: 'load', timeout: 30000 });
      const seen = await page.evaluate(callRelay, base, token, wssUrl);
      process.stdout.write(JSON.stringify({ origin, ...seen }) + '\n');
    }
  } finally {
    if (browser) await browser.close();
    await Promise.all(servers.map(stop));
  }
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.message || e) }) + '\n');
  process.exit(1);
});
