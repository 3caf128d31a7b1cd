// The relay's status page in a real headless browser (Debian's Chromium, through puppeteer-core).
// Usage: node status-page.js PAGE_URL ADDRESS SCREENSHOT
//   Loads PAGE_URL, waits until the page lists ADDRESS with its listener count and prints
//   {"event":"shown","listeners":N}; then reads one line on stdin (the test has changed something)
//   and waits until the count the page shows for ADDRESS changes by itself (it refreshes on its
//   own), prints {"event":"updated","listeners":M,"details":[...]} (the listener lines shown under
//   ADDRESS at this phone's width, as a person sees them), saves a screenshot at SCREENSHOT and
//   prints {"event":"done"}. Errors print {"event":"error","message"} and exit 1.
'use strict';
const readline = require('readline');
const launchBrowser = require('./launch-browser');

const [url, address, screenshot] = process.argv.slice(2);
const say = (event) => process.stdout.write(JSON.stringify(event) + '\n');

async function listenersShown(page) {
  return page.evaluate((address) => {
    const row = [...document.querySelectorAll('#addresses tr')].find((tr) => tr.dataset.address === address);
    return row ? Number(row.querySelector('td.listeners').textContent) : 0;
  }, address);
}

// The listener lines visible on the row under ADDRESS's.
async function detailsShown(page) {
  return page.evaluate((address) => {
    const row = [...document.querySelectorAll('#addresses tr')].find((tr) => tr.dataset.address === address);
    const detail = row && row.nextElementSibling;
    if (!detail || !detail.classList.contains('detail') || getComputedStyle(detail).display === 'none') return [];
    return [...detail.querySelectorAll('.listener')].map((div) => div.innerText);
  }, address);
}

async function until(page, condition, what) {
  const deadline = Date.now() + 20000;
  for (;;) {
    const listeners = await listenersShown(page);
    if (condition(listeners)) return listeners;
    if (Date.now() > deadline) throw new Error(`${what}: the page shows ${listeners} listeners`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function main() {
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 390, height: 700 });
    await page.goto(url);
    const shown = await until(page, (n) => n > 0, `${address} listed`);
    say({ event: 'shown', listeners: shown });
    await new Promise((resolve) => readline.createInterface({ input: process.stdin }).once('line', resolve));
    const updated = await until(page, (n) => n !== shown, `${address} updated`);
    say({ event: 'updated', listeners: updated, details: await detailsShown(page) });
    await page.screenshot({ path: screenshot, fullPage: true });
    say({ event: 'done' });
  } finally {
    await browser.close();
  }
}

main().then(() => process.exit(0), (e) => {
  say({ event: 'error', message: String(e && e.message || e) });
  process.exit(1);
});
