// A Hybrid Connections sender built on the official hyco-ws package, for interop tests.
// Usage: [PROTOCOL=name] node hc-sender.js CONNECT_URL TOKEN [TEXT ...]
// Sends each TEXT as a text message and the bytes [1, 2, 3, 4] as a binary message, prints
// every message received and the close code as JSON lines. The line "close" on stdin closes the
// socket with 1000 "bye". Exits when stdin closes.
'use strict';
const WebSocket = require('hyco-ws');

const [connectUrl, token, ...texts] = process.argv.slice(2);
const print = (event) => process.stdout.write(JSON.stringify(event) + '\n');

const onOpen = (socket) => {
  print({ event: 'open', protocol: socket.protocol || null });
  for (const text of texts) socket.send(text);
  socket.send(Buffer.from([1, 2, 3, 4]), { binary: true });
};
// With PROTOCOL set, offer that sub-protocol (plain `ws`, as hyco-ws's relayedConnect offers none).
const ws = process.env.PROTOCOL
  ? new WebSocket(connectUrl, process.env.PROTOCOL, { headers: { ServiceBusAuthorization: token } })
  : WebSocket.relayedConnect(connectUrl, token, onOpen);
if (process.env.PROTOCOL) ws.on('open', () => onOpen(ws));
ws.on('message', (data, flags) => {
  if (flags && flags.binary) print({ event: 'binary', bytes: Array.from(Buffer.from(data)) });
  else print({ event: 'text', text: String(data) });
});
ws.on('close', (code, reason) => print({ event: 'close', code, reason: String(reason || '') }));
ws.on('error', (e) => print({ event: 'error', message: String(e && e.message || e) }));
process.stdin.on('data', (data) => {
  if (String(data).split('\n').includes('close')) ws.close(1000, 'bye');
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
