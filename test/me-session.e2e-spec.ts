import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { startApp, usingPostgres, type TestApp } from './support/app.js';
import { bearer } from './support/fixtures.js';
import { CSRF, sessionOf, setCookie, signInLink, signInWithCode, signInWithPasskey } from './support/me.js';
import { human, type Human } from './support/step-up.js';
import { totpCode } from './support/totp.js';

let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterEach(() => t.clock.reset());
afterAll(async () => {
  await t?.close();
});

const MIN = 60_000;

async function sessionsOf(app: TestApp, userId: string): Promise<number> {
  const ds = app.app.get(DataSource);
  const rows: { n: string | number }[] = await ds.query(`SELECT COUNT(*) AS n FROM human_sessions WHERE user_id = ${usingPostgres() ? '$1' : '?'}`, [userId]);
  return Number(rows[0].n);
}

const me = (cookie: string) => t.http.get('/v1/me').set('Cookie', cookie);

describe('sign-in by link', () => {
  it('issues a single-use link under PUBLIC_URL/me/sign-in/ (201) and signs in with a TOTP code: exact cookie attributes over http', async () => {
    const h = await human(t);
    const res = await t.http.post(`/v1/users/${h.userId}/sign-in-links`).set(bearer(h.tenant.apiKey)).send({ expiresIn: 120 }).expect(201);
    expect(res.body.url).toMatch(/^http:\/\/localhost:3000\/me\/sign-in\/mpx_sin_[A-Za-z0-9_-]{43}$/);
    expect(Date.parse(res.body.expiresAt) - Date.now()).toBeGreaterThan(110_000);
    expect(Date.parse(res.body.expiresAt) - Date.now()).toBeLessThanOrEqual(120_000);
    const token = res.body.url.split('/me/sign-in/')[1];

    const page = await t.http.get(`/me/sign-in/${token}`).expect(200);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.text).toContain('/assets/signin.js');

    const signedIn = await t.http.post(`/v1/me/sign-in/${token}/totp`).set(CSRF).send({ code: await totpCode(h.totpSecret) }).expect(200);
    expect(signedIn.body).toEqual({ status: 'signed_in', user: { id: h.userId, displayName: 'Ada Lovelace' } });
    const cookie = setCookie(signedIn);
    expect(cookie).toMatch(/^mpx_session=mpx_ses_[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict$/);
    const profile = await me(sessionOf(signedIn)).expect(200);
    expect(profile.body).toEqual({ user: { id: h.userId, displayName: 'Ada Lovelace' }, app: { name: expect.any(String) } });
  });

  it('signs in with a passkey of that user', async () => {
    const h = await human(t);
    const cookie = await signInWithPasskey(t, h);
    await me(cookie).expect(200);
  });

  it('expiresIn outside 60..3600 is 400 and issues nothing; another app key gets 404', async () => {
    const h = await human(t);
    for (const expiresIn of [59, 3601, '600']) {
      const res = await t.http.post(`/v1/users/${h.userId}/sign-in-links`).set(bearer(h.tenant.apiKey)).send({ expiresIn }).expect(400);
      expect(res.body.code).toBe('validation_failed');
    }
    const other = await human(t);
    const res = await t.http.post(`/v1/users/${h.userId}/sign-in-links`).set(bearer(other.tenant.apiKey)).send({}).expect(404);
    expect(res.body.code).toBe('not_found');
  });

  it('a link works once: the second sign-in is 404 and starts no session', async () => {
    const h = await human(t);
    const token = await signInLink(t, h);
    const options = (await t.http.post(`/v1/me/sign-in/${token}/webauthn/options`).set(CSRF).send({}).expect(200)).body;
    await t.http.post(`/v1/me/sign-in/${token}/webauthn/verify`).set(CSRF).send({ response: await h.authenticator.assert(options) }).expect(200);
    const again = await t.http.post(`/v1/me/sign-in/${token}/totp`).set(CSRF).send({ code: await totpCode(h.totpSecret) }).expect(404);
    expect(again.body).toMatchObject({ status: 404, code: 'not_found' });
    expect(setCookie(again)).toBe('');
    await t.http.post(`/v1/me/sign-in/${token}/webauthn/options`).set(CSRF).send({}).expect(404);
    await t.http.get(`/me/sign-in/${token}`).expect(404);
    expect(await sessionsOf(t, h.userId)).toBe(1);
  });

  it(`two concurrent uses of one link (passkey and code at once) start exactly one session${usingPostgres() ? ' (PostgreSQL)' : ''}`, async () => {
    const h = await human(t);
    const token = await signInLink(t, h);
    const options = (await t.http.post(`/v1/me/sign-in/${token}/webauthn/options`).set(CSRF).send({}).expect(200)).body;
    const assertion = await h.authenticator.assert(options);
    const code = await totpCode(h.totpSecret);
    const results = await Promise.all([
      t.http.post(`/v1/me/sign-in/${token}/webauthn/verify`).set(CSRF).send({ response: assertion }),
      t.http.post(`/v1/me/sign-in/${token}/totp`).set(CSRF).send({ code }),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 404]);
    expect(await sessionsOf(t, h.userId)).toBe(1);
  });

  it('wrong codes are limited: attemptsRemaining counts down, the fifth spends the link, then even the right code is 404', async () => {
    const h = await human(t);
    const token = await signInLink(t, h);
    const right = await totpCode(h.totpSecret);
    const wrong = right === '000000' ? '111111' : '000000';
    for (let remaining = 4; remaining >= 0; remaining--) {
      const res = await t.http.post(`/v1/me/sign-in/${token}/totp`).set(CSRF).send({ code: wrong }).expect(400);
      expect(res.body).toMatchObject({ code: 'invalid_code', attemptsRemaining: remaining });
    }
    await t.http.post(`/v1/me/sign-in/${token}/totp`).set(CSRF).send({ code: right }).expect(404);
    expect(await sessionsOf(t, h.userId)).toBe(0);
  });

  it('an expired link is refused (404) for every step', async () => {
    const h = await human(t);
    const token = await signInLink(t, h, { expiresIn: 60 });
    t.clock.advance(61_000);
    await t.http.get(`/me/sign-in/${token}`).expect(404);
    await t.http.post(`/v1/me/sign-in/${token}/webauthn/options`).set(CSRF).send({}).expect(404);
    const res = await t.http.post(`/v1/me/sign-in/${token}/totp`).set(CSRF).send({ code: await totpCode(h.totpSecret, t.clock.now()) }).expect(404);
    expect(res.body.code).toBe('not_found');
    expect(await sessionsOf(t, h.userId)).toBe(0);
  });

  it("another user's passkey is refused on a link (400 webauthn_verification_failed, no session)", async () => {
    const a = await human(t);
    const b = await human(t);
    const token = await signInLink(t, a);
    const options = (await t.http.post(`/v1/me/sign-in/${token}/webauthn/options`).set(CSRF).send({}).expect(200)).body;
    const bCredential = [...b.authenticator.credentials.keys()][0];
    const res = await t.http.post(`/v1/me/sign-in/${token}/webauthn/verify`).set(CSRF).send({ response: await b.authenticator.assert(options, { credential: bCredential }) }).expect(400);
    expect(res.body.code).toBe('webauthn_verification_failed');
    expect(setCookie(res)).toBe('');
    expect(await sessionsOf(t, a.userId)).toBe(0);
    expect(await sessionsOf(t, b.userId)).toBe(0);
  });

  it('sign-in endpoints need the CSRF header too (403 csrf_required, the link is not spent)', async () => {
    const h = await human(t);
    const token = await signInLink(t, h);
    const res = await t.http.post(`/v1/me/sign-in/${token}/totp`).send({ code: await totpCode(h.totpSecret) }).expect(403);
    expect(res.body).toMatchObject({ status: 403, code: 'csrf_required' });
    await t.http.post(`/v1/me/sign-in/${token}/totp`).set(CSRF).send({ code: await totpCode(h.totpSecret) }).expect(200);
  });
});

describe('passkey sign-in without a link (discoverable credentials)', () => {
  async function loginOptions() {
    return (await t.http.post('/v1/me/login/webauthn/options').set(CSRF).send({}).expect(200)).body;
  }

  it('options have no allowCredentials and require user verification; the assertion signs in once per challenge', async () => {
    const h = await human(t);
    const options = await loginOptions();
    expect(options.allowCredentials).toBeUndefined();
    expect(options.userVerification).toBe('required');
    expect(options.rpId).toBe('localhost');
    const assertion = await h.authenticator.assert(options);
    const res = await t.http.post('/v1/me/login/webauthn/verify').set(CSRF).send({ response: assertion }).expect(200);
    expect(res.body.user.id).toBe(h.userId);
    await me(sessionOf(res)).expect(200);
    // The challenge was single use: the same challenge again (a fresh signature over it) is refused.
    const replay = await t.http.post('/v1/me/login/webauthn/verify').set(CSRF).send({ response: await h.authenticator.assert(options) }).expect(400);
    expect(replay.body.code).toBe('webauthn_verification_failed');
    expect(await sessionsOf(t, h.userId)).toBe(1);
  });

  it('a userHandle naming another user is refused, and so is a missing one', async () => {
    const a = await human(t);
    const b = await human(t);
    const otherHandle = Buffer.from(b.userId, 'utf8').toString('base64url');
    const forged = await t.http.post('/v1/me/login/webauthn/verify').set(CSRF).send({ response: await a.authenticator.assert(await loginOptions(), { userHandle: otherHandle }) }).expect(400);
    expect(forged.body.code).toBe('webauthn_verification_failed');
    const missing = await t.http.post('/v1/me/login/webauthn/verify').set(CSRF).send({ response: await a.authenticator.assert(await loginOptions(), { userHandle: null }) }).expect(400);
    expect(missing.body.code).toBe('webauthn_verification_failed');
    expect(await sessionsOf(t, a.userId)).toBe(0);
    expect(await sessionsOf(t, b.userId)).toBe(0);
  });

  it('outstanding challenges are bounded per source IP (429 with Retry-After)', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 32; i++) statuses.push((await t.http.post('/v1/me/login/webauthn/options').set(CSRF).send({})).status);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    const res = await t.http.post('/v1/me/login/webauthn/options').set(CSRF).send({}).expect(429);
    expect(res.headers['retry-after']).toBeDefined();
  });
});

describe('the session', () => {
  it('ends after 30 min idle (injected clock); a request within the window keeps it alive', async () => {
    const h = await human(t);
    const cookie = await signInWithPasskey(t, h);
    t.clock.advance(29 * MIN);
    await me(cookie).expect(200);
    t.clock.advance(29 * MIN);
    await me(cookie).expect(200);
    t.clock.advance(30 * MIN + 1000);
    const res = await me(cookie).expect(401);
    expect(res.body).toMatchObject({ status: 401, code: 'unauthorized' });
  });

  it('does not write last-seen on every request: within a minute, idle time still counts from the earlier write', async () => {
    const h = await human(t);
    const cookie = await signInWithPasskey(t, h);
    t.clock.advance(30 * 1000);
    await me(cookie).expect(200); // 30 s after sign-in: no write
    t.clock.advance(29 * MIN + 31 * 1000); // 30 min 1 s after the last write
    await me(cookie).expect(401);
  });

  it('ends 12 h after sign-in however active (injected clock)', async () => {
    const h = await human(t);
    const cookie = await signInWithPasskey(t, h);
    for (let elapsed = 0; elapsed + 25 * MIN < 12 * 60 * MIN; elapsed += 25 * MIN) {
      t.clock.advance(25 * MIN);
      await me(cookie).expect(200);
    }
    t.clock.advance(25 * MIN);
    await me(cookie).expect(401);
  });

  it('POST /v1/me/sign-out ends it and clears the cookie; without the CSRF header it is 403 and the session lives on', async () => {
    const h = await human(t);
    const cookie = await signInWithPasskey(t, h);
    const refused = await t.http.post('/v1/me/sign-out').set('Cookie', cookie).expect(403);
    expect(refused.body).toMatchObject({ status: 403, code: 'csrf_required' });
    await me(cookie).expect(200);
    const out = await t.http.post('/v1/me/sign-out').set('Cookie', cookie).set(CSRF).expect(204);
    expect(setCookie(out)).toBe('mpx_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict');
    await me(cookie).expect(401);
    expect(await sessionsOf(t, h.userId)).toBe(0);
  });

  it('deleting the user ends its sessions (the cascade deletes them)', async () => {
    const h = await human(t);
    const cookie = await signInWithPasskey(t, h);
    await me(cookie).expect(200);
    await t.http.delete(`/v1/users/${h.userId}`).set(bearer(h.tenant.apiKey)).expect(204);
    expect(await sessionsOf(t, h.userId)).toBe(0);
    await me(cookie).expect(401);
  });

  it('401 without a session, with an unknown one, or with a cookie of another name', async () => {
    const h = await human(t);
    const cookie = await signInWithPasskey(t, h);
    await t.http.get('/v1/me').expect(401);
    await me('mpx_session=mpx_ses_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA').expect(401);
    await me(cookie.replace('mpx_session=', '__Host-mpx_session=')).expect(401);
  });

  it('session-authenticated requests are audited with actorType "user"', async () => {
    const h: Human = await human(t);
    const cookie = await signInWithPasskey(t, h);
    await me(cookie).expect(200);
    await expect.poll(async () => {
      const res = await t.http.get('/v1/audit-events').query({ userId: h.userId, type: 'http.request' }).set(bearer(h.tenant.apiKey)).expect(200);
      return res.body.events.find((e: { action: string }) => e.action === 'GET /v1/me');
    }, { timeout: 10_000 }).toMatchObject({ actorType: 'user', actorId: h.userId, userId: h.userId, outcome: 'success', status: 200 });
  });
});

describe('the session under an https PUBLIC_URL', () => {
  let s: TestApp;
  beforeAll(async () => {
    s = await startApp({ PUBLIC_URL: 'https://mfa.example.test' });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('the cookie is __Host-mpx_session with Secure; only that name is read', async () => {
    const h = await human(s, {}, 'https://mfa.example.test');
    const token = await signInLink(s, h);
    const res = await s.http.post(`/v1/me/sign-in/${token}/totp`).set(CSRF).send({ code: await totpCode(h.totpSecret) }).expect(200);
    expect(setCookie(res)).toMatch(/^__Host-mpx_session=mpx_ses_[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Secure$/);
    const cookie = sessionOf(res);
    await s.http.get('/v1/me').set('Cookie', cookie).expect(200);
    await s.http.get('/v1/me').set('Cookie', cookie.replace('__Host-mpx_session=', 'mpx_session=')).expect(401);
    const out = await s.http.post('/v1/me/sign-out').set('Cookie', cookie).set(CSRF).expect(204);
    expect(setCookie(out)).toBe('__Host-mpx_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure');
  });
});

describe('signInWithCode', () => {
  it('helper works (used by the dashboard tests)', async () => {
    const h = await human(t);
    await me(await signInWithCode(t, h)).expect(200);
  });
});
