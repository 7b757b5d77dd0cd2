import { base64url, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { createHmac, createPublicKey, type KeyObject } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeysService, signEs256Jws } from '../src/modules/keys/keys.service.js';
import { startApp, type TestApp } from './support/app.js';
import { agentToken, bearer, createAgent, createUser, world } from './support/fixtures.js';
import { approveWithPasskey, createStepUp, expectStatus, human } from './support/step-up.js';

let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

const enc = (o: object) => base64url.encode(JSON.stringify(o));

/** Re-signs nothing: swaps the payload and keeps the original signature. */
function tamper(token: string, change: (p: JWTPayload) => JWTPayload): string {
  const [h, , s] = token.split('.');
  return `${h}.${enc(change(decodeJwt(token)))}.${s}`;
}

async function expect401(token: string, scheme = 'Bearer') {
  const res = await t.http.get('/v1/whoami').set('Authorization', `${scheme} ${token}`).expect(401);
  expect(res.body).toMatchObject({ status: 401, code: 'unauthorized' });
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.headers['www-authenticate']).toMatch(/^Bearer realm="mfa-proxy"/);
}

describe('agent token attacks on an agent endpoint', () => {
  let token: string;
  let claims: JWTPayload;
  beforeAll(async () => {
    ({ token } = await world(t));
    claims = decodeJwt(token);
    // The genuine token works, so every 401 below is caused by the attack alone.
    await t.http.get('/v1/whoami').set(bearer(token)).expect(200);
  });

  it('refuses alg none', async () => {
    await expect401(`${enc({ alg: 'none', typ: 'at+jwt' })}.${enc(claims)}.`);
    await expect401(`${enc({ alg: 'none', typ: 'at+jwt', kid: decodeProtectedHeader(token).kid })}.${enc(claims)}.`);
  });

  it('refuses HS256 signed with our public key', async () => {
    const jwks = (await t.http.get('/.well-known/jwks.json').expect(200)).body.keys;
    const pem = createPublicKey({ key: jwks[0], format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
    const header = enc({ alg: 'HS256', typ: 'at+jwt', kid: jwks[0].kid });
    const body = enc(claims);
    for (const secret of [pem, JSON.stringify(jwks[0]), jwks[0].x]) {
      const sig = createHmac('sha256', secret).update(`${header}.${body}`).digest('base64url');
      await expect401(`${header}.${body}.${sig}`);
    }
  });

  it('refuses a tampered payload', async () => {
    await expect401(tamper(token, (p) => ({ ...p, scope: `${p.scope} admin:all` })));
    await expect401(tamper(token, (p) => ({ ...p, exp: (p.exp as number) + 3600 })));
    await expect401(tamper(token, (p) => ({ ...p, sub: 'usr_AAAAAAAAAAAAAAAAAAAAAA' })));
  });

  it('refuses a genuine signature re-encoded with other padding bits (jose alone reads it as the same signature)', async () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const [h, p, sig] = token.split('.');
    const other = sig.slice(0, -1) + alphabet[alphabet.indexOf(sig.at(-1)!) ^ 1];
    expect(Buffer.from(other, 'base64url').equals(Buffer.from(sig, 'base64url'))).toBe(true);
    await expect401(`${h}.${p}.${other}`);
    await expect401(`${h}.${p}.${Buffer.from(sig, 'base64url').toString('base64')}`);
  });

  it('refuses an expired token', async () => {
    t.clock.advance(((claims.exp as number) - Math.floor(Date.now() / 1000) + 10) * 1000);
    try {
      await expect401(token);
    } finally {
      t.clock.reset();
    }
  });

  it('checks the time claims of a token it has verified before on every use (verified tokens are cached)', async () => {
    // Used in beforeAll, so each check below runs on the cached verification.
    await t.http.get('/v1/whoami').set(bearer(token)).expect(200);
    t.clock.advance(((claims.iat as number) - Math.floor(Date.now() / 1000) - 60) * 1000);
    try {
      await expect401(token); // a clock set back before iat (beyond the 5 s skew)
    } finally {
      t.clock.reset();
    }
    await t.http.get('/v1/whoami').set(bearer(token)).expect(200);
    t.clock.advance(((claims.exp as number) - Math.floor(Date.now() / 1000)) * 1000);
    try {
      await expect401(token); // exp is exclusive: at exp the token is over
    } finally {
      t.clock.reset();
    }
  });

  describe('signed by an attacker key', () => {
    let attacker: Awaited<ReturnType<typeof generateKeyPair>>;
    let kid: string;
    beforeAll(async () => {
      attacker = await generateKeyPair('ES256', { extractable: true });
      kid = decodeProtectedHeader(token).kid!;
    });
    const sign = (payload: JWTPayload, header: Record<string, unknown>) =>
      new SignJWT(payload).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid, ...header }).sign(attacker.privateKey);

    it('refuses an unknown kid', async () => {
      await expect401(await sign(claims, { kid: 'not-our-key' }));
    });

    it('refuses a key offered in the jwk header', async () => {
      await expect401(await sign(claims, { jwk: await exportJWK(attacker.publicKey) }));
      await expect401(await sign(claims, { jwk: await exportJWK(attacker.publicKey), kid: undefined }));
    });

    it('refuses a key offered by jku or x5u', async () => {
      await expect401(await sign(claims, { jku: 'https://attacker.example/jwks.json' }));
      await expect401(await sign(claims, { x5u: 'https://attacker.example/cert.pem' }));
    });

    it('refuses our kid with the attacker signature', async () => {
      await expect401(await sign(claims, {}));
    });
  });

  describe('claims we signed ourselves but which are wrong', () => {
    // Sign with the service's own key so only the claim under test is wrong.
    const ownSign = (payload: JWTPayload, typ = 'at+jwt') => t.app.get(KeysService).sign(payload, typ);
    const now = () => Math.floor(Date.now() / 1000);

    it('refuses a future nbf and a future iat', async () => {
      await expect401(await ownSign({ ...claims, nbf: now() + 600 }));
      await expect401(await ownSign({ ...claims, iat: now() + 600, exp: now() + 900 }));
    });

    it('refuses the wrong iss, aud and typ', async () => {
      await expect401(await ownSign({ ...claims, iss: 'https://evil.example' }));
      await expect401(await ownSign({ ...claims, aud: 'https://some-other-api.example' }));
      await expect401(await ownSign(claims, 'JWT'));
      await expect401(await ownSign(claims, 'mfa-proxy+jwt'));
    });

    it('accepts the same claims when nothing is wrong (control)', async () => {
      const res = await t.http.get('/v1/whoami').set(bearer(await ownSign({ ...claims, jti: 'control-1' }))).expect(200);
      expect(res.body.agentId).toBe(claims.client_id);
    });
  });

  it('refuses garbage, an empty token and the wrong scheme', async () => {
    await expect401('garbage');
    await expect401('a.b.c');
    await t.http.get('/v1/whoami').expect(401);
    await t.http.get('/v1/whoami').set('Authorization', `Basic ${token}`).expect(401);
  });
});

describe('suspension, revocation and user deletion take effect at once', () => {
  it('suspended agent: 401 with an unexpired token; resumed: works again', async () => {
    const w = await world(t);
    await t.http.get('/v1/whoami').set(bearer(w.token)).expect(200);
    await t.http.patch(`/v1/agents/${w.agent.id}`).set(bearer(w.tenant.apiKey)).send({ status: 'suspended' }).expect(200);
    await expect401(w.token);
    await t.http.patch(`/v1/agents/${w.agent.id}`).set(bearer(w.tenant.apiKey)).send({ status: 'active' }).expect(200);
    await t.http.get('/v1/whoami').set(bearer(w.token)).expect(200);
  });

  it('revoked agent: 401 at once, GET is 404, and it cannot be resumed', async () => {
    const w = await world(t);
    await t.http.get('/v1/whoami').set(bearer(w.token)).expect(200);
    await t.http.delete(`/v1/agents/${w.agent.id}`).set(bearer(w.tenant.apiKey)).expect(204);
    await expect401(w.token);
    await t.http.get(`/v1/agents/${w.agent.id}`).set(bearer(w.tenant.apiKey)).expect(404);
    await t.http.patch(`/v1/agents/${w.agent.id}`).set(bearer(w.tenant.apiKey)).send({ status: 'active' }).expect(404);
    await expect401(w.token);
  });

  it('deleted user: every agent of the user is 401 at once', async () => {
    const w = await world(t);
    const second = await createAgent(t, w.tenant, w.userId);
    const secondToken = await agentToken(t, second);
    const otherUser = await createUser(t, w.tenant);
    const bystander = await agentToken(t, await createAgent(t, w.tenant, otherUser));
    await t.http.delete(`/v1/users/${w.userId}`).set(bearer(w.tenant.apiKey)).expect(204);
    await expect401(w.token);
    await expect401(secondToken);
    await t.http.get('/v1/whoami').set(bearer(bystander)).expect(200);
  });

  it('narrowed boundaries narrow the scopes of live tokens', async () => {
    const w = await world(t);
    const token = await agentToken(t, w.agent, { scope: 'research:read files:delete' });
    expect((await t.http.get('/v1/whoami').set(bearer(token)).expect(200)).body.scopes).toEqual(['research:read', 'files:delete']);
    await t.http.patch(`/v1/agents/${w.agent.id}`).set(bearer(w.tenant.apiKey)).send({ permissionBoundaries: ['research:read'] }).expect(200);
    expect((await t.http.get('/v1/whoami').set(bearer(token)).expect(200)).body.scopes).toEqual(['research:read']);
  });
});

describe('whoami reports the principal', () => {
  it('carries user, agent, model and task id', async () => {
    const w = await world(t);
    const token = await agentToken(t, w.agent, { task_id: 'research-7' });
    const res = await t.http.get('/v1/whoami').set(bearer(token)).expect(200);
    expect(res.body).toMatchObject({ appId: w.tenant.appId, userId: w.userId, agentId: w.agent.id, model: 'claude-test-1', taskId: 'research-7' });
    expect(res.body.jti).toBeUndefined();
  });
});

/**
 * What the service never signs, signed with its own key (so only that is wrong): extension headers
 * (crit, b64: jose alone reads some of them as a normal JWS) and a payload segment that is not
 * ASCII. Refused at agent auth and at verify, and a refused MFA-proxy token is not consumed.
 */
describe('tokens signed with our own key that carry what we never sign', () => {
  const ownKey = async () => {
    const keys = t.app.get(KeysService);
    await keys.sign({ probe: 1 }, 'at+jwt'); // loads the active key
    return (keys as unknown as { active: { kid: string; privateKey: KeyObject } }).active;
  };
  /** The token's own claims re-signed by our key under its own header plus `extra`. */
  const resign = async (token: string, extra: Record<string, unknown>) => {
    const key = await ownKey();
    const header = { ...decodeProtectedHeader(token), ...extra };
    return signEs256Jws({ ...header, typ: String(header.typ), kid: key.kid }, decodeJwt(token), key.privateKey);
  };
  const EXTENSIONS = [{ crit: ['exp'] }, { b64: true, crit: ['b64'] }, { b64: false }, { crit: [] }];

  it('agent auth: 401 for each extension header; the same claims without one are accepted (control)', async () => {
    const { token } = await world(t);
    for (const extra of EXTENSIONS) await expect401(await resign(token, extra));
    await t.http.get('/v1/whoami').set(bearer(await resign(token, {}))).expect(200);
  });

  it('verify: malformed for each extension header and for a non-ASCII payload; the genuine token is then still valid once', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h).expect(201);
    await expectStatus(approveWithPasskey(t, h, created.body.approvalUrl), 200);
    const token = (await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(200)).body.mfaProxyToken as string;
    const verify = (tok: string) =>
      t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send({ token: tok, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 } }).expect(200);
    for (const extra of EXTENSIONS) expect((await verify(await resign(token, extra))).body, JSON.stringify(extra)).toEqual({ valid: false, reason: 'malformed' });
    // U+0141 hashed as latin1 is 'A': the signature would hold over the low bytes.
    const [hd, p, s] = token.split('.');
    const i = p.indexOf('A');
    expect(i).toBeGreaterThanOrEqual(0);
    expect((await verify(`${hd}.${p.slice(0, i)}\u0141${p.slice(i + 1)}.${s}`)).body).toEqual({ valid: false, reason: 'malformed' });
    expect((await verify(token)).body).toMatchObject({ valid: true, stepUpId: created.body.id });
    expect((await verify(token)).body).toEqual({ valid: false, reason: 'already_used' });
  });
});
