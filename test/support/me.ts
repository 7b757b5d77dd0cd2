import { expect } from 'vitest';
import type { Response } from 'supertest';
import type { TestApp } from './app.js';
import { bearer } from './fixtures.js';
import type { Human } from './step-up.js';
import { totpCode } from './totp.js';

/** The CSRF header every state-changing /v1/me call carries. */
export const CSRF = { 'X-Requested-With': 'mfa-proxy' } as const;

/** A sign-in link's token (the part after /me/sign-in/). */
export async function signInLink(t: TestApp, h: Pick<Human, 'tenant' | 'userId'>, body: Record<string, unknown> = {}): Promise<string> {
  const res = await t.http.post(`/v1/users/${h.userId}/sign-in-links`).set(bearer(h.tenant.apiKey)).send(body).expect(201);
  return res.body.url.split('/me/sign-in/')[1];
}

/** The Set-Cookie header of a response, as one string. */
export function setCookie(res: Response): string {
  const header = res.headers['set-cookie'] as unknown as string[] | string | undefined;
  return Array.isArray(header) ? header.join('\n') : (header ?? '');
}

/** `name=value` of the session cookie a response set (for the Cookie header of later requests). */
export function sessionOf(res: Response): string {
  const cookie = setCookie(res).split(';')[0];
  expect(cookie).toMatch(/^(__Host-)?mpx_session=mpx_ses_[A-Za-z0-9_-]{43}$/);
  return cookie;
}

/** Signs in through a link with the user's current TOTP code; returns the Cookie header value. */
export async function signInWithCode(t: TestApp, h: Human): Promise<string> {
  const token = await signInLink(t, h);
  const res = await t.http.post(`/v1/me/sign-in/${token}/totp`).set(CSRF).send({ code: await totpCode(h.totpSecret, t.clock.now()) });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return sessionOf(res);
}

/** Signs in through a link with the user's passkey; returns the Cookie header value. */
export async function signInWithPasskey(t: TestApp, h: Human): Promise<string> {
  const token = await signInLink(t, h);
  const options = (await t.http.post(`/v1/me/sign-in/${token}/webauthn/options`).set(CSRF).send({}).expect(200)).body;
  const res = await t.http.post(`/v1/me/sign-in/${token}/webauthn/verify`).set(CSRF).send({ response: await h.authenticator.assert(options) });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return sessionOf(res);
}
