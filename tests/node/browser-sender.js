// A Hybrid Connections sender in a real headless browser: Debian's Chromium, driven by
// puppeteer-core (which downloads no browser), using the page's own WebSocket API.
// Usage: node browser-sender.js MODE URL [URL ...]
//   MODE sender-closes:   send "hello", wait for it to come back, close with 1000 "bye".
//   MODE listener-closes: send "hello", then wait for the other end to close.
// Prints one JSON line per URL: {url, echoed, wasClean, code, reason} or {url, error}.
// CHROMIUM names the browser (default /usr/bin/chromium).
'use strict';
const launchBrowser = require('./launch-browser');

const [mode, ...urls] = process.argv.slice(2);

async function main() {
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    for (const url of urls) {
      const result = await page.evaluate((url, mode) => new Promise((resolve) => {
        let echoed = null;
        const ws = new WebSocket(url);
        const timer = setTimeout(() => resolve({ error: 'no close within 10 s', echoed }), 10000);
        ws.onopen = () => ws.send('hello');
        ws.onmessage = async (event) => {
          echoed = typeof event.data === 'string' ? event.data : await event.data.text();
          if (mode === 'sender-closes') ws.close(1000, 'bye');
        };
        ws.onerror = () => {};
        ws.onclose = (event) => {
          clearTimeout(timer);
          resolve({ echoed, wasClean: event.wasClean, code: event.code, reason: event.reason });
        };
      }), url, mode);
      process.stdout.write(JSON.stringify({ url, ...result }) + '\n');
    }
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.message || e) }) + '\n');
  process.exit(1);
});
