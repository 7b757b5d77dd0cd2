import { existsSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type CDPSession, type Page } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';
import { startApp, type TestApp } from './app.js';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** CI sets REQUIRE_BROWSER=1 (after installing Chromium): there a missing browser is a failure, not a skip. */
export const browserAvailable = existsSync(CHROMIUM) || process.env.REQUIRE_BROWSER === '1';

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Headless Debian Chromium with the flags this machine needs, and a fresh profile. */
export async function launchBrowser(): Promise<BrowserContext> {
  return chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'mpx-chromium-')), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Chromium's CDP virtual authenticator: a platform passkey with user verification. */
export async function addVirtualAuthenticator(page: Page): Promise<{ cdp: CDPSession; authenticatorId: string }> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  return { cdp, authenticatorId };
}

/** The service listening on a real port (PUBLIC_URL = that origin, so WebAuthn works) and a browser. */
export async function startBrowserApp(): Promise<{ t: TestApp; browser: BrowserContext; close(): Promise<void> }> {
  const port = await freePort();
  const t = await startApp({ PUBLIC_URL: `http://localhost:${port}` });
  await t.app.listen({ port, host: '127.0.0.1' });
  const browser = await launchBrowser();
  return { t, browser, close: async () => { await browser.close(); await t.close(); } };
}

/** Registers the suite's hooks: a listening service and a browser, closed after the suite. Read them inside tests. */
export function useBrowserApp(): { t: TestApp; browser: BrowserContext } {
  const env = {} as { t: TestApp; browser: BrowserContext; close?: () => Promise<void> };
  beforeAll(async () => Object.assign(env, await startBrowserApp()), 60_000);
  afterAll(async () => env.close?.());
  return env;
}
