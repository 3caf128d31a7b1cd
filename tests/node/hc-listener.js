// A Hybrid Connections listener built on the official hyco-ws package, for interop tests.
// Usage: node hc-listener.js LISTEN_URL TOKEN
// Prints one JSON line per event. Echoes text messages as "echo:" + text and binary messages
// reversed; closes the socket with 1000 "done" on the text "close please". Exits when stdin closes.
'use strict';
const WebSocket = require('hyco-ws');

const [listenUrl, token] = process.argv.slice(2);
const print = (event) => process.stdout.write(JSON.stringify(event) + '\n');

// Messages that arrive after this end has started closing are dropped (a closing socket takes
// no more sends): the sender's frames can still be in flight when "close please" is handled.
const reply = (ws, data, options) => {
  if (ws.readyState === WebSocket.OPEN) ws.send(data, options);
};

const server = WebSocket.createRelayedServer({ server: listenUrl, token }, (ws) => {
  ws.on('open', () => {
    print({ event: 'connection', address: ws.url, protocol: ws.protocol || null });
    ws.send('hello from hyco-ws');
  });
  ws.on('message', (data, flags) => {
    if (flags && flags.binary) {
      const reversed = Buffer.from(data);
      reversed.reverse();
      reply(ws, reversed, { binary: true });
    } else if (String(data) === 'close please') {
      ws.close(1000, 'done');
    } else {
      reply(ws, 'echo:' + data);
    }
  });
  ws.on('close', (code, reason) => print({ event: 'closed', code, reason: String(reason || '') }));
  ws.on('error', (e) => print({ event: 'error', message: String(e) }));
});
server.on('listening', () => print({ event: 'listening' }));
server.on('error', (e) => print({ event: 'error', message: String(e && e.message || e) }));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
