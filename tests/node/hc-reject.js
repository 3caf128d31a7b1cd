// A minimal Hybrid Connections listener that rejects every sender, using the `ws` package that
// hyco-ws is built on (hyco-ws's own reject path is broken in 1.0.5).
// Usage: node hc-reject.js LISTEN_URL TOKEN STATUS DESCRIPTION
'use strict';
const WebSocket = require('ws');

const [listenUrl, token, status, description] = process.argv.slice(2);
const print = (event) => process.stdout.write(JSON.stringify(event) + '\n');

const control = new WebSocket(listenUrl, null, { headers: { ServiceBusAuthorization: token } });
control.on('open', () => print({ event: 'listening' }));
control.on('message', (data) => {
  const message = JSON.parse(data);
  if (!message.accept) return;
  const uri = message.accept.address + '&sb-hc-statusCode=' + status +
    '&sb-hc-statusDescription=' + encodeURIComponent(description);
  const rendezvous = new WebSocket(uri);
  rendezvous.on('error', (e) => print({ event: 'rejected', message: String(e && e.message || e) }));
});
control.on('error', (e) => print({ event: 'error', message: String(e && e.message || e) }));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
