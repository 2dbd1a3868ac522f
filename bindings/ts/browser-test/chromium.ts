// Debian's Chromium as the browser tests launch it: headless and kept off the network
// (no component updates, sync or QUIC probes), since this machine reaches no one.

export const CHROMIUM = process.env["MERIDIAN_CHROMIUM"] ?? "/usr/bin/chromium";

export const CHROMIUM_ARGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];
