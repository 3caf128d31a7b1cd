// Launches Debian's Chromium headless through puppeteer-core (which downloads no browser), as
// the browser tests use it. CHROMIUM names the browser (default /usr/bin/chromium).
'use strict';
const puppeteer = require('puppeteer-core');

module.exports = function launchBrowser() {
  return puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // A first launch on a fresh machine under a loaded test run can be slow; the Rust side
    // bounds the whole script anyway.
    timeout: 60000,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // The test relay's certificate is self-signed.
      '--ignore-certificate-errors',
    ],
  });
};
