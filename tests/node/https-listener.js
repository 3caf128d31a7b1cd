// An HTTP-mode Hybrid Connections listener built on the official hyco-https package, for the
// tests/tests/e2e/hc_http.rs interop tests.
// Usage: node https-listener.js LISTEN_URL TOKEN
//   LISTEN_URL: wss://HOST:PORT/$hc/ADDRESS?sb-hc-action=listen (as hc-listener.js takes it)
//   TOKEN:      a SAS token with the Listen right for ADDRESS
// Prints one JSON line per event: {"event":"listening"} once the control channel is open,
// {"event":"request","method","url","headers"} as each request arrives (before its body is read),
// {"event":"answered","url","status"} once its response has been handed to hyco-https, and
// {"event":"error","message"} on errors. Exits when stdin closes.
//
// Routes (req.url is /ADDRESS/SUFFIX?QUERY; only SUFFIX and QUERY matter):
//   GET  hello      200 text/plain "hello METHOD", x-echo-url: req.url, x-echo-custom: x-custom
//   POST echo       200 application/json {"length": n, "sha256": "<hex>"} of the whole body
//   GET  big?bytes=N  200 application/octet-stream, N bytes, byte i = i % 251 (one end() call)
//   GET  empty      204, no body
//   GET  slow?ms=N  200 text/plain "late" after N ms
//   GET  headers    200 application/json: req.headers as the listener received them
//   anything else   404 text/plain "no route"
'use strict';
const https = require('hyco-https');
const crypto = require('crypto');

const [listenUrl, token] = process.argv.slice(2);
if (!listenUrl || !token) {
  process.stderr.write('usage: node https-listener.js LISTEN_URL TOKEN\n');
  process.exit(2);
}
const print = (event) => process.stdout.write(JSON.stringify(event) + '\n');

// hyco-https sends only headers given to setHeader (headers passed to writeHead alone are lost)
// and drops content-length, so every route sets its headers one by one and then calls end().
const answer = (req, res, status, headers, body) => {
  res.statusCode = status;
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  if (body === undefined) res.end();
  else res.end(body);
  print({ event: 'answered', url: req.url, status });
};

const handle = (req, res) => {
  const parsed = new URL(req.url, 'http://listener.invalid');
  const route = parsed.pathname.split('/').filter((s) => s.length > 0).slice(1).join('/');
  const method = req.method;
  if (route === 'hello' && method === 'GET') {
    answer(req, res, 200, {
      'content-type': 'text/plain',
      'x-echo-url': req.url,
      'x-echo-custom': String(req.headers['x-custom'] || ''),
    }, 'hello ' + method);
  } else if (route === 'echo' && method === 'POST') {
    const hash = crypto.createHash('sha256');
    let length = 0;
    req.on('data', (chunk) => {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      length += buf.length;
      hash.update(buf);
    });
    req.on('end', () => {
      answer(req, res, 200, { 'content-type': 'application/json' },
        JSON.stringify({ length, sha256: hash.digest('hex') }));
    });
  } else if (route === 'big' && method === 'GET') {
    const n = Number(parsed.searchParams.get('bytes') || '0');
    const body = Buffer.alloc(n);
    for (let i = 0; i < n; i++) body[i] = i % 251;
    answer(req, res, 200, { 'content-type': 'application/octet-stream' }, body);
  } else if (route === 'empty' && method === 'GET') {
    answer(req, res, 204, {});
  } else if (route === 'slow' && method === 'GET') {
    const ms = Number(parsed.searchParams.get('ms') || '0');
    setTimeout(() => answer(req, res, 200, { 'content-type': 'text/plain' }, 'late'), ms);
  } else if (route === 'headers' && method === 'GET') {
    answer(req, res, 200, { 'content-type': 'application/json' }, JSON.stringify(req.headers));
  } else {
    answer(req, res, 404, { 'content-type': 'text/plain' }, 'no route');
  }
};

const server = https.createRelayedServer({ server: listenUrl, token }, (req, res) => {
  print({ event: 'request', method: req.method, url: req.url, headers: req.headers });
  try {
    handle(req, res);
  } catch (e) {
    print({ event: 'error', message: String(e && e.stack || e) });
  }
});
server.on('listening', () => print({ event: 'listening' }));
server.on('error', (e) => print({ event: 'error', message: String(e && e.message || e) }));
server.listen();
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
