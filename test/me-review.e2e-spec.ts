import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DataSource } from 'typeorm';
import { FactorsRepository } from '../src/modules/factors/factors.repository.js';
import { SignInService } from '../src/modules/me/sign-in/sign-in.service.js';
import { startApp, usingPostgres, type TestApp } from './support/app.js';
import { CSRF, setCookie, signInLink, signInWithPasskey } from './support/me.js';
import { human, type Human } from './support/step-up.js';
import { totpCode } from './support/totp.js';
import { holdAfterRead } from './support/faults.js';

/** Findings of the security review of sign-in, sessions and /v1/me: each test fails without its fix. */

// Two instances need a shared database and Redis (CI's PostgreSQL + Redis pass); on SQLite both are one app.
const shared = usingPostgres() && !!process.env.TEST_REDIS_URL;

let t: TestApp;
let b: TestApp;
beforeAll(async () => {
  const prefix = `mpx-test-${randomBytes(4).toString('hex')}:`;
  t = await startApp(shared ? { REDIS_KEY_PREFIX: prefix } : {});
  b = shared ? await startApp({ REDIS_KEY_PREFIX: prefix }) : t;
});
afterEach(() => {
  vi.restoreAllMocks();
  t.clock.reset();
});
afterAll(async () => {
  if (b !== t) await b?.close();
  await t?.close();
});

const as = (app: TestApp, cookie: string) => ({
  get: (path: string) => app.http.get(path).set('Cookie', cookie),
  post: (path: string, body: Record<string, unknown> = {}) => app.http.post(path).set('Cookie', cookie).set(CSRF).send(body),
  del: (path: string) => app.http.delete(path).set('Cookie', cookie).set(CSRF),
});

type Factor = { id: string; type: string };

/** A signed-in user with one active passkey P and one pending TOTP factor T (its secret known). */
async function passkeyAndPendingTotp(): Promise<{ h: Human; cookie: string; p: string; tId: string; tSecret: string }> {
  const h = await human(t);
  const cookie = await signInWithPasskey(t, h);
  const me = as(t, cookie);
  const factors = (await me.get('/v1/me/factors').expect(200)).body.factors as Factor[];
  await me.del(`/v1/me/factors/${factors.find((f) => f.type === 'totp')!.id}`).expect(204);
  const created = (await me.post('/v1/me/factors/totp', { name: 'Phone 2' }).expect(201)).body;
  return { h, cookie, p: factors.find((f) => f.type === 'webauthn')!.id, tId: created.factorId, tSecret: created.secret };
}

/** Holds the first `find` of factor `id` on `app` after it has read the row (holdAfterRead). */
const holdFirstRead = (app: TestApp, id: string) => holdAfterRead(app.app.get(FactorsRepository), 'find', (args) => args[2] === id);

describe('M1: concurrent factor changes never leave a user without an active factor', () => {
  it('DELETE T read T as pending; T is verified and P deleted meanwhile: DELETE T is 409 last_factor, T stays', async () => {
    const { cookie, p, tId, tSecret } = await passkeyAndPendingTotp();
    const hold = holdFirstRead(t, tId);
    const deleteT = as(t, cookie).del(`/v1/me/factors/${tId}`).then((r) => r);
    await hold.read;
    await as(b, cookie).post('/v1/me/factors/totp/verify', { factorId: tId, code: await totpCode(tSecret) }).expect(200);
    await as(b, cookie).del(`/v1/me/factors/${p}`).expect(204);
    hold.release();
    const res = await deleteT;
    expect(res.status, JSON.stringify(res.body)).toBe(409);
    expect(res.body).toMatchObject({ status: 409, code: 'last_factor' });
    expect(((await as(t, cookie).get('/v1/me/factors').expect(200)).body.factors as Factor[]).map((f) => f.id)).toEqual([tId]);
  });

  it(`races of DELETE T (instance 1) against verify T then DELETE P (instance 2)${shared ? ', two instances on PostgreSQL' : ''}: always >= 1 active factor, the losing DELETE is 409 last_factor`, async () => {
    for (let round = 0; round < 8; round++) {
      const { cookie, p, tId, tSecret } = await passkeyAndPendingTotp();
      // Instance 1's read of T takes a little longer each round (a slow database), so every interleaving is tried.
      const delay = round * 5;
      setTimeout(holdFirstRead(t, tId).release, delay);
      const code = await totpCode(tSecret);
      const [delT, delP] = await Promise.all([
        as(t, cookie).del(`/v1/me/factors/${tId}`).then((r) => r),
        as(b, cookie)
          .post('/v1/me/factors/totp/verify', { factorId: tId, code })
          .then(() => as(b, cookie).del(`/v1/me/factors/${p}`).then((r) => r)),
      ]);
      vi.restoreAllMocks();
      const active = (await as(t, cookie).get('/v1/me/factors').expect(200)).body.factors as Factor[];
      expect(active.length, `round ${round}`).toBeGreaterThanOrEqual(1);
      expect([delT.status, delP.status].sort(), `round ${round}: ${JSON.stringify([delT.body, delP.body])}`).toEqual([204, 409]);
      expect([delT, delP].find((r) => r.status === 409)!.body.code).toBe('last_factor');
    }
  });
});

describe('L1: challenges have a purpose', () => {
  it("a passkey registration challenge (me-factors) is refused at passkey login: 400, no session", async () => {
    const h = await human(t);
    const cookie = await signInWithPasskey(t, h);
    const registration = (await as(t, cookie).post('/v1/me/factors/webauthn/options').expect(200)).body;
    const assertion = await h.authenticator.assert({ challenge: registration.challenge, rpId: 'localhost', userVerification: 'required' });
    const res = await t.http.post('/v1/me/login/webauthn/verify').set(CSRF).send({ response: assertion });
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.code).toBe('webauthn_verification_failed');
    expect(setCookie(res)).toBe('');
    // Still a registration challenge: it registers a passkey (it was not taken by the login attempt).
    await as(t, cookie).post('/v1/me/factors/webauthn/verify', { response: await h.authenticator.register(registration) }).expect(201);
  });

  it('a login challenge is refused by passkey registration', async () => {
    const h = await human(t);
    const cookie = await signInWithPasskey(t, h);
    const login = (await t.http.post('/v1/me/login/webauthn/options').set(CSRF).send({}).expect(200)).body;
    const registration = (await as(t, cookie).post('/v1/me/factors/webauthn/options').expect(200)).body;
    const res = await as(t, cookie).post('/v1/me/factors/webauthn/verify', { response: await h.authenticator.register({ ...registration, challenge: login.challenge }) }).expect(400);
    expect(res.body.code).toBe('webauthn_verification_failed');
  });
});

describe('L2: only a failed signature over the pending challenge counts against a sign-in link', () => {
  const linkCall = (token: string, step: 'options' | 'verify', body: Record<string, unknown> = {}) => t.http.post(`/v1/me/sign-in/${token}/webauthn/${step}`).set(CSRF).send(body);

  it('5 verifies without a pending challenge are 409 and do not spend the link; the passkey then signs in', async () => {
    const h = await human(t);
    const token = await signInLink(t, h);
    for (let i = 0; i < 5; i++) {
      const bogus = await h.authenticator.assert({ challenge: randomBytes(32).toString('base64url'), rpId: 'localhost' });
      const res = await linkCall(token, 'verify', { response: bogus });
      expect(res.status, JSON.stringify(res.body)).toBe(409);
      expect(res.body.code).toBe('conflict');
    }
    const options = (await linkCall(token, 'options').expect(200)).body;
    await linkCall(token, 'verify', { response: await h.authenticator.assert(options) }).expect(200);
  });

  it('an assertion over a superseded challenge (a second options call) is 409 and not counted, 5 times; the current one signs in', async () => {
    const h = await human(t);
    const token = await signInLink(t, h);
    for (let i = 0; i < 5; i++) {
      const first = (await linkCall(token, 'options').expect(200)).body;
      await linkCall(token, 'options').expect(200);
      const res = await linkCall(token, 'verify', { response: await h.authenticator.assert(first) });
      expect(res.status, JSON.stringify(res.body)).toBe(409);
    }
    const options = (await linkCall(token, 'options').expect(200)).body;
    await linkCall(token, 'verify', { response: await h.authenticator.assert(options) }).expect(200);
  });

  it('a failed signature over the pending challenge still counts: the fifth spends the link', async () => {
    const h = await human(t);
    const token = await signInLink(t, h);
    for (let i = 0; i < 5; i++) {
      const options = (await linkCall(token, 'options').expect(200)).body;
      const res = await linkCall(token, 'verify', { response: await h.authenticator.assert(options, { origin: 'https://evil.example' }) });
      expect(res.status, JSON.stringify(res.body)).toBe(400);
    }
    await linkCall(token, 'options').expect(404);
  });
});

describe('L3: outstanding login challenges are bounded globally', () => {
  it('past the cap, login options are 429 with Retry-After and store nothing; under it again they work', async () => {
    const ds = t.app.get(DataSource);
    const outstanding = async () => Number((await ds.query(`SELECT COUNT(*) AS n FROM login_challenges WHERE purpose = 'login' AND expires_at > ${Date.now()}`))[0].n);
    const service = t.app.get(SignInService) as unknown as { loginChallengeCap: number };
    const cap = service.loginChallengeCap;
    try {
      service.loginChallengeCap = (await outstanding()) + 3;
      for (let i = 0; i < 3; i++) await t.http.post('/v1/me/login/webauthn/options').set(CSRF).send({}).expect(200);
      const before = await outstanding();
      const res = await t.http.post('/v1/me/login/webauthn/options').set(CSRF).send({});
      expect(res.status, JSON.stringify(res.body)).toBe(429);
      expect(res.body.code).toBe('rate_limited');
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
      expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(300);
      expect(await outstanding()).toBe(before);
    } finally {
      service.loginChallengeCap = cap;
    }
    expect(cap).toBe(10_000);
    await t.http.post('/v1/me/login/webauthn/options').set(CSRF).send({}).expect(200);
  });
});

describe('L4: every session cookie of the Cookie header is tried (the first 5)', () => {
  it('mpx_session=junk; mpx_session=<valid> (and in separate Cookie headers) is the signed-in user', async () => {
    const h = await human(t);
    const cookie = await signInWithPasskey(t, h);
    const value = cookie.split('=')[1];
    for (const header of [`mpx_session=junk; ${cookie}`, `mpx_session=mpx_ses_${'A'.repeat(43)}; other=1; ${cookie}`, `mpx_session=; mpx_session=${'x'.repeat(300)}; ${cookie}`]) {
      const res = await t.http.get('/v1/me').set('Cookie', header);
      expect(res.status, header).toBe(200);
      expect(res.body.user.id).toBe(h.userId);
    }
    await t.http.get('/v1/me').set('Cookie', ['mpx_session=junk', `mpx_session=${value}`]).expect(200);
  });

  it('bounded: a valid cookie after 5 other session cookies is not looked up (401)', async () => {
    const h = await human(t);
    const cookie = await signInWithPasskey(t, h);
    const junk = Array.from({ length: 5 }, (_, i) => `mpx_session=junk${i}`);
    await t.http.get('/v1/me').set('Cookie', [...junk, cookie].join('; ')).expect(401);
    await t.http.get('/v1/me').set('Cookie', [...junk.slice(1), cookie].join('; ')).expect(200);
  });
});

describe('L5: /v1/me state-changing routes take JSON only', () => {
  it('form-encoded (or other non-JSON) bodies are 415 unsupported_media_type and change nothing; JSON and bodyless requests work', async () => {
    const h = await human(t);
    const cookie = await signInWithPasskey(t, h);
    const factors = (await as(t, cookie).get('/v1/me/factors').expect(200)).body.factors as Factor[];
    const totp = factors.find((f) => f.type === 'totp')!.id;
    const form = (path: string) => t.http.post(path).set('Cookie', cookie).set(CSRF).type('form');
    const link = await signInLink(t, h);
    const attempts: [string, () => Promise<{ status: number; body: { code?: string } }>][] = [
      ['POST factors/totp', () => form('/v1/me/factors/totp').send({ name: 'Phone 2' })],
      ['POST factors/totp/verify', () => form('/v1/me/factors/totp/verify').send({ factorId: totp, code: '123456' })],
      ['POST agents/:id/suspend', () => form(`/v1/me/agents/${h.agent.id}/suspend`).send({ x: '1' })],
      ['POST sign-out', () => form('/v1/me/sign-out').send({ x: '1' })],
      ['DELETE factors/:id', () => t.http.delete(`/v1/me/factors/${totp}`).set('Cookie', cookie).set(CSRF).type('form').send({ x: '1' })],
      ['POST sign-in/:token/totp', () => t.http.post(`/v1/me/sign-in/${link}/totp`).set(CSRF).type('form').send({ code: '123456' })],
      ['POST login/webauthn/options', () => t.http.post('/v1/me/login/webauthn/options').set(CSRF).type('form').send({ x: '1' })],
    ];
    for (const [label, call] of attempts) {
      const res = await call();
      expect(`${label}: ${res.status} ${res.body.code}`).toBe(`${label}: 415 unsupported_media_type`);
    }
    expect(((await as(t, cookie).get('/v1/me/factors').expect(200)).body.factors as Factor[]).map((f) => f.id).sort()).toEqual(factors.map((f) => f.id).sort());
    await as(t, cookie).get('/v1/me').expect(200);
    // JSON (with parameters) and bodyless requests are served.
    await t.http.post(`/v1/me/agents/${h.agent.id}/suspend`).set('Cookie', cookie).set(CSRF).set('Content-Type', 'application/json; charset=utf-8').send('{}').expect(200);
    await t.http.delete(`/v1/me/factors/${totp}`).set('Cookie', cookie).set(CSRF).expect(204);
    await t.http.post('/v1/me/sign-out').set('Cookie', cookie).set(CSRF).expect(204);
  });
});
