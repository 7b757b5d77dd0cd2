// `npm run demo -- --browser`: the human is Chromium with a virtual passkey (CDP WebAuthn domain).
// The launch flags and the authenticator are those of test/support/browser.ts; that file cannot be
// imported here (it imports vitest and the in-process service, and the demo runs from dist/ after
// `tsc -b`), so these few lines are a copy of it: change both together.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Headless Debian Chromium with the flags this machine needs (root, no GPU), on a fresh profile. */
export async function launchBrowser(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  if (!existsSync(CHROMIUM)) throw new Error(`--browser needs Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`);
  // loaded only for --browser: the scripted demo needs no browser library
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'mfa-proxy-demo-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Chromium's CDP virtual authenticator on `page`: a platform passkey with user verification, touched automatically. */
export async function addVirtualAuthenticator(page: Page): Promise<{ credentials(): Promise<number> }> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  return { credentials: async () => (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials.length };
}

/** Waits until `selector`'s text contains `text`; fails with what the page shows after `ms`. */
export async function waitForText(page: Page, selector: string, text: string, ms = 15_000): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    const shown = (await page.textContent(selector)) ?? '';
    if (shown.includes(text)) return shown;
    if (Date.now() > until) throw new Error(`${selector} shows "${shown.trim()}", not "${text}"`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
