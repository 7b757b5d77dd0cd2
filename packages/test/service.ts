// Test-only helpers for the packages' tests: the real service, listening on a free port, with the
// fixtures of the service's own tests. Package sources never import this (nor src/).
import { afterAll, beforeAll } from 'vitest';
import { startApp, type TestApp } from '../../test/support/app.js';
import { freePort } from '../../test/support/browser.js';

export interface Service {
  t: TestApp;
  /** The listening origin, equal to PUBLIC_URL (and so the issuer). */
  issuer: string;
}

export async function startService(env: Record<string, string> = {}): Promise<Service> {
  const port = await freePort();
  const issuer = `http://localhost:${port}`;
  const t = await startApp({ PUBLIC_URL: issuer, ...env });
  await t.app.listen({ port, host: '127.0.0.1' });
  return { t, issuer };
}

/** Registers the suite's hooks: one listening service for the file, closed after it. */
export function useService(env: Record<string, string> = {}): Service {
  const s = {} as Service;
  beforeAll(async () => Object.assign(s, await startService(env)), 60_000);
  afterAll(async () => s.t?.close());
  return s;
}

/** Polls `fn` until it returns a value (not undefined), or fails after `ms`. */
export async function eventually<T>(fn: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** test/support's `human` (a user with a passkey and TOTP, an agent) on this service's origin. */
export { human as humanOn } from '../../test/support/step-up.js';
import { human as supportHuman } from '../../test/support/step-up.js';
export function human(s: Service, agentBody: Record<string, unknown> = {}, appBody: Record<string, unknown> = { approvalUrlToAgent: true }) {
  return supportHuman(s.t, agentBody, s.issuer, appBody);
}
