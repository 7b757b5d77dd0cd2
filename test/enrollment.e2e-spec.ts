import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { PUBLIC_URL, startApp, type TestApp } from './support/app.js';
import { bearer, createTenant, createUser, type Tenant } from './support/fixtures.js';
import { totpCode } from './support/totp.js';
import { SoftAuthenticator } from './support/webauthn.js';

let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

async function link(tenant: Tenant, userId: string, expiresIn?: number): Promise<string> {
  const res = await t.http.post(`/v1/users/${userId}/enrollment-links`).set(bearer(tenant.apiKey)).send(expiresIn ? { expiresIn } : {}).expect(201);
  expect(res.body.url).toMatch(new RegExp(`^${PUBLIC_URL}/enroll/mpx_enr_[A-Za-z0-9_-]{43}$`));
  return res.body.url.split('/enroll/')[1];
}

async function setup() {
  const tenant = await createTenant(t);
  const userId = await createUser(t, tenant);
  return { tenant, userId, token: await link(tenant, userId) };
}

const options = (token: string, name?: string) => t.http.post(`/v1/enrollment/${token}/webauthn/options`).send(name ? { name } : {}).expect(200);
const verify = (token: string, response: unknown, name?: string) => t.http.post(`/v1/enrollment/${token}/webauthn/verify`).send({ response, ...(name ? { name } : {}) });
const factorsOf = async (tenant: Tenant, userId: string) => (await t.http.get(`/v1/users/${userId}`).set(bearer(tenant.apiKey)).expect(200)).body.factors;
const countRows = async (table: string) => Number((await t.app.get(DataSource).query(`SELECT COUNT(*) AS n FROM ${table}`))[0].n);

describe('enrolling factors through the API', () => {
  it('enrolls a passkey and a TOTP factor, lists them, deletes one', async () => {
    const { tenant, userId, token } = await setup();
    const authenticator = new SoftAuthenticator(PUBLIC_URL);

    const opts = await options(token, 'Laptop');
    expect(opts.body).toMatchObject({
      rp: { id: 'localhost' },
      challenge: expect.any(String),
      authenticatorSelection: { residentKey: 'preferred', userVerification: 'required' },
      excludeCredentials: [],
    });
    const reg = await verify(token, await authenticator.register(opts.body)).expect(201);
    expect(reg.body.factorId).toMatch(/^fac_/);

    // A second registration excludes the first credential.
    const opts2 = await options(token);
    expect(opts2.body.excludeCredentials.map((c: { id: string }) => c.id)).toEqual([...authenticator.credentials.keys()]);

    const totp = await t.http.post(`/v1/enrollment/${token}/totp`).send({ name: 'Phone' }).expect(201);
    expect(totp.body.secret).toMatch(/^[A-Z2-7]{32}$/); // 20 bytes base32
    expect(totp.body.otpauthUri).toMatch(/^otpauth:\/\/totp\/.+\?.*secret=/);
    expect(totp.body.otpauthUri).toContain('issuer=');
    expect(totp.body.qrSvg).toMatch(/^<svg/);
    // Inactive until confirmed.
    expect((await factorsOf(tenant, userId)).map((f: { type: string }) => f.type)).toEqual(['webauthn']);

    const confirmed = await t.http.post(`/v1/enrollment/${token}/totp/verify`).send({ factorId: totp.body.factorId, code: await totpCode(totp.body.secret) }).expect(200);
    expect(confirmed.body).toEqual({ factorId: totp.body.factorId, status: 'active' });

    const factors = await factorsOf(tenant, userId);
    expect(factors).toEqual([
      { id: reg.body.factorId, type: 'webauthn', name: 'Laptop', createdAt: expect.any(String), lastUsedAt: null },
      { id: totp.body.factorId, type: 'totp', name: 'Phone', createdAt: expect.any(String), lastUsedAt: expect.any(String) },
    ]);

    await t.http.delete(`/v1/users/${userId}/factors/${reg.body.factorId}`).set(bearer(tenant.apiKey)).expect(204);
    expect((await factorsOf(tenant, userId)).map((f: { id: string }) => f.id)).toEqual([totp.body.factorId]);
    await t.http.delete(`/v1/users/${userId}/factors/${reg.body.factorId}`).set(bearer(tenant.apiKey)).expect(404);
    // The deleted credential's row is gone too: excludeCredentials is empty again.
    expect((await options(token)).body.excludeCredentials).toEqual([]);
  });

  it('accepts a ceremony from one of the app’s extra origins', async () => {
    const app = await t.http.post('/v1/apps').set(bearer(t.adminToken)).send({ name: 'With origins', origins: ['http://localhost:5173'] }).expect(201);
    const tenant = { appId: app.body.id, apiKey: app.body.apiKey, webhookSecret: app.body.webhookSecret };
    const userId = await createUser(t, tenant);
    const token = await link(tenant, userId);
    const authenticator = new SoftAuthenticator('http://localhost:5173', 'localhost');
    await verify(token, await authenticator.register((await options(token)).body)).expect(201);
  });
});

describe('passkey registration refused (400 webauthn_verification_failed, nothing stored)', () => {
  const cases: [string, (a: SoftAuthenticator, o: Parameters<SoftAuthenticator['register']>[0]) => ReturnType<SoftAuthenticator['register']>][] = [
    ['wrong challenge', (a, o) => a.register(o, { challenge: Buffer.from('not-the-challenge').toString('base64url') })],
    ['wrong origin', (a, o) => a.register(o, { origin: 'https://evil.example' })],
    ['wrong rp id', (a, o) => a.register(o, { rpId: 'evil.example' })],
    ['webauthn.get type', (a, o) => a.register(o, { type: 'webauthn.get' })],
    ['UV flag off', (a, o) => a.register(o, { userVerified: false })],
    ['crossOrigin: true', (a, o) => a.register(o, { crossOrigin: true })],
  ];

  for (const [name, make] of cases) {
    it(name, async () => {
      const { tenant, userId, token } = await setup();
      const before = await countRows('webauthn_credentials');
      const res = await verify(token, await make(new SoftAuthenticator(PUBLIC_URL), (await options(token)).body)).expect(400);
      expect(res.body).toEqual({
        type: expect.any(String),
        title: 'WebAuthn verification failed',
        status: 400,
        detail: 'the passkey response could not be verified',
        code: 'webauthn_verification_failed',
      });
      // The verifier's internal message (expected challenge/origin) is not echoed.
      expect(JSON.stringify(res.body)).not.toMatch(/expected|evil|localhost/i);
      expect(await factorsOf(tenant, userId)).toEqual([]);
      expect(await countRows('webauthn_credentials')).toBe(before);
    });
  }

  it('reused challenge (a second verify of the same options), even after a failed attempt', async () => {
    const { tenant, userId, token } = await setup();
    const authenticator = new SoftAuthenticator(PUBLIC_URL);
    const opts = (await options(token)).body;
    await verify(token, await authenticator.register(opts, { origin: 'https://evil.example' })).expect(400);
    // The good response for the same challenge is now refused: the challenge was used up.
    const res = await verify(token, await authenticator.register(opts)).expect(400);
    expect(res.body.code).toBe('webauthn_verification_failed');
    expect(await factorsOf(tenant, userId)).toEqual([]);

    const ok = await options(token);
    const good = await authenticator.register(ok.body);
    await verify(token, good).expect(201);
    const replay = await verify(token, good).expect(400);
    expect(replay.body.code).toBe('webauthn_verification_failed');
    expect(await factorsOf(tenant, userId)).toHaveLength(1);
  });

  it('credential id already registered (by anyone, in any app)', async () => {
    const first = await setup();
    const authenticator = new SoftAuthenticator(PUBLIC_URL);
    await verify(first.token, await authenticator.register((await options(first.token)).body)).expect(201);
    const credentialId = [...authenticator.credentials.values()][0].id;

    const second = await setup();
    const res = await verify(second.token, await new SoftAuthenticator(PUBLIC_URL).register((await options(second.token)).body, { credentialId })).expect(400);
    expect(res.body.code).toBe('webauthn_verification_failed');
    expect(await factorsOf(second.tenant, second.userId)).toEqual([]);
  });

  it('a malformed response', async () => {
    const { token } = await setup();
    await options(token);
    for (const response of [{}, { id: 'x', response: {} }, { id: 'x', response: { clientDataJSON: 'bm9wZQ', attestationObject: 'AA' } }]) {
      await options(token);
      const res = await verify(token, response).expect(400);
      expect(res.body.code).toBe('webauthn_verification_failed');
    }
    const notObject = await t.http.post(`/v1/enrollment/${token}/webauthn/verify`).send({ response: 'x' }).expect(400);
    expect(notObject.body.code).toBe('validation_failed');
  });
});

describe('TOTP enrollment', () => {
  it('a wrong code does not activate; the secret is unreadable in the database row', async () => {
    const { tenant, userId, token } = await setup();
    const created = await t.http.post(`/v1/enrollment/${token}/totp`).send({}).expect(201);
    const right = await totpCode(created.body.secret);
    const wrong = String((Number(right) + 1) % 1_000_000).padStart(6, '0');
    const res = await t.http.post(`/v1/enrollment/${token}/totp/verify`).send({ factorId: created.body.factorId, code: wrong }).expect(400);
    expect(res.body).toMatchObject({ status: 400, code: 'invalid_code' });
    // A code from far away in time is also refused (only ±1 step is accepted).
    const old = await totpCode(created.body.secret, Date.now() - 5 * 60_000);
    if (old !== right) await t.http.post(`/v1/enrollment/${token}/totp/verify`).send({ factorId: created.body.factorId, code: old }).expect(400);
    expect(await factorsOf(tenant, userId)).toEqual([]);

    const rows = await t.app.get(DataSource).createQueryBuilder().select('*').from('totp_secrets', 't').where('t.factor_id = :id', { id: created.body.factorId }).getRawMany();
    expect(rows).toHaveLength(1);
    const raw = JSON.stringify(rows[0]);
    expect(raw).not.toContain(created.body.secret);
    expect(raw).not.toContain(Buffer.from(created.body.secret).toString('base64'));
    expect(rows[0].secret_enc).toMatch(/^v1\./);
  });

  it('the code format is validated', async () => {
    const { token } = await setup();
    const created = await t.http.post(`/v1/enrollment/${token}/totp`).send({}).expect(201);
    for (const code of ['12345', '1234567', 'abcdef', 123456]) {
      const res = await t.http.post(`/v1/enrollment/${token}/totp/verify`).send({ factorId: created.body.factorId, code }).expect(400);
      expect(res.body.code).toBe('validation_failed');
    }
    await t.http.post(`/v1/enrollment/${token}/totp/verify`).send({ factorId: 'fac_AAAAAAAAAAAAAAAAAAAAAA', code: '123456' }).expect(404);
  });
});

describe('links that are not valid', () => {
  async function expectAll404(token: string) {
    const responses = [
      await t.http.get(`/v1/enrollment/${token}`),
      await t.http.post(`/v1/enrollment/${token}/webauthn/options`).send({}),
      await t.http.post(`/v1/enrollment/${token}/webauthn/verify`).send({ response: {} }),
      await t.http.post(`/v1/enrollment/${token}/totp`).send({}),
      await t.http.post(`/v1/enrollment/${token}/totp/verify`).send({ factorId: 'fac_AAAAAAAAAAAAAAAAAAAAAA', code: '123456' }),
    ];
    for (const res of responses) {
      expect(res.status).toBe(404);
      expect(res.body).toMatchObject({ status: 404, code: 'not_found' });
    }
    const page = await t.http.get(`/enroll/${token}`);
    expect(page.status).toBe(404);
    expect(page.headers['content-type']).toMatch(/text\/html/);
  }

  it('unknown token', async () => {
    await expectAll404('mpx_enr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
    await expectAll404('garbage');
  });

  it('expired link', async () => {
    const tenant = await createTenant(t);
    const userId = await createUser(t, tenant);
    const token = await link(tenant, userId, 60);
    await t.http.get(`/v1/enrollment/${token}`).expect(200);
    t.clock.advance(61_000);
    try {
      await expectAll404(token);
    } finally {
      t.clock.reset();
    }
  });

  it('link of a deleted user', async () => {
    const { tenant, userId, token } = await setup();
    await t.http.delete(`/v1/users/${userId}`).set(bearer(tenant.apiKey)).expect(204);
    await expectAll404(token);
  });

  it('links are created only for the app’s own users, with expiresIn in 60..604800', async () => {
    const { userId } = await setup();
    const other = await createTenant(t);
    await t.http.post(`/v1/users/${userId}/enrollment-links`).set(bearer(other.apiKey)).send({}).expect(404);
    const tenant = await createTenant(t);
    const own = await createUser(t, tenant);
    for (const expiresIn of [59, 604801, '3600', 1.5]) {
      await t.http.post(`/v1/users/${own}/enrollment-links`).set(bearer(tenant.apiKey)).send({ expiresIn }).expect(400);
    }
    const res = await t.http.post(`/v1/users/${own}/enrollment-links`).set(bearer(tenant.apiKey)).send({ expiresIn: 600 }).expect(201);
    expect(Date.parse(res.body.expiresAt) - Date.now()).toBeGreaterThan(590_000);
  });
});

describe('the enrollment page', () => {
  it('is served with a strict CSP, no inline script, and escapes the user’s name', async () => {
    const tenant = await createTenant(t);
    const userId = await createUser(t, tenant, { displayName: '<img src=x onerror=alert(1)>\u202Eevil' });
    const token = await link(tenant, userId);
    const res = await t.http.get(`/enroll/${token}`).expect(200);
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    expect(res.headers['content-security-policy']).not.toContain('unsafe-inline');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.text).not.toContain('<img src=x');
    expect(res.text).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(res.text).not.toContain('\u202E');
    expect(res.text).toMatch(/<script src="\/assets\/enroll.js"><\/script>/);
    expect(res.text.match(/<script(?![^>]*src=)[^>]*>/g)).toBeNull();
    await t.http.get('/assets/enroll.js').expect(200).expect('Content-Type', /javascript/);
    await t.http.get('/assets/simplewebauthn-browser.js').expect(200);
    await t.http.get('/assets/..%2Fpackage.json').expect(404);
  });
});
