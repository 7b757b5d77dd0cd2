import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { randomUUID, createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PUBLIC_URL, startApp, type TestApp } from './support/app.js';
import { agentToken, bearer, createAgent, createTenant, createUser, type Tenant } from './support/fixtures.js';

let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

async function dpopProof(key: CryptoKey, jwk: object, htm: string, htu: string, extra: Record<string, unknown> = {}) {
  return new SignJWT({ jti: randomUUID(), htm, htu, iat: Math.floor(Date.now() / 1000), ...extra })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
    .sign(key);
}

describe('README walk-through', () => {
  it('creates an app, a user, an agent, gets a token and introspects it', async () => {
    const app = await t.http.post('/v1/apps').set(bearer(t.adminToken)).send({ name: 'Acme Research' }).expect(201);
    expect(app.body).toMatchObject({ id: expect.stringMatching(/^app_/), name: 'Acme Research', apiKey: expect.stringMatching(/^mpx_app_/), webhookSecret: expect.stringMatching(/^whsec_/) });
    const key = app.body.apiKey;

    const user = await t.http.post('/v1/users').set(bearer(key)).send({ externalId: 'ada-1', displayName: 'Ada', email: 'ada@example.com' }).expect(201);
    expect(user.body).toEqual({ id: expect.stringMatching(/^usr_/), externalId: 'ada-1', displayName: 'Ada', email: 'ada@example.com', createdAt: expect.any(String) });

    const agent = await t.http
      .post('/v1/agents')
      .set(bearer(key))
      .send({ userId: user.body.id, name: 'deep-research', model: 'gpt-test', permissionBoundaries: ['research:read', 'files:*'] })
      .expect(201);
    expect(agent.body).toMatchObject({ id: expect.stringMatching(/^agt_/), userId: user.body.id, status: 'active', permissionBoundaries: ['research:read', 'files:*'], clientSecret: expect.stringMatching(/^mpx_sec_/) });

    const token = await t.http
      .post('/oauth/token')
      .auth(agent.body.id, agent.body.clientSecret)
      .type('form')
      .send({ grant_type: 'client_credentials', scope: 'research:read files:delete', task_id: 'task-42' })
      .expect(200);
    expect(token.headers['cache-control']).toBe('no-store');
    expect(token.body).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: 300, scope: 'research:read files:delete' });

    const header = decodeProtectedHeader(token.body.access_token);
    expect(header).toMatchObject({ alg: 'ES256', typ: 'at+jwt', kid: expect.any(String) });
    const claims = decodeJwt(token.body.access_token);
    expect(claims).toMatchObject({
      iss: PUBLIC_URL,
      sub: user.body.id,
      client_id: agent.body.id,
      act: { sub: agent.body.id },
      scope: 'research:read files:delete',
      model: 'gpt-test',
      task_id: 'task-42',
      jti: expect.any(String),
    });
    expect(claims.aud).toContain(PUBLIC_URL);
    expect(claims.exp! - claims.iat!).toBe(300);
    expect(claims.cnf).toBeUndefined();

    const jwks = await t.http.get('/.well-known/jwks.json').expect(200);
    expect(jwks.body.keys.map((k: { kid: string }) => k.kid)).toContain(header.kid);
    expect(jwks.body.keys.every((k: Record<string, unknown>) => !('d' in k))).toBe(true);

    const intro = await t.http.post('/oauth/introspect').set(bearer(key)).type('form').send({ token: token.body.access_token }).expect(200);
    expect(intro.body).toMatchObject({ active: true, client_id: agent.body.id, sub: user.body.id, scope: 'research:read files:delete', model: 'gpt-test', task_id: 'task-42' });
  });

  it('publishes RFC 8414 metadata', async () => {
    const res = await t.http.get('/.well-known/oauth-authorization-server').expect(200);
    expect(res.body).toMatchObject({
      issuer: PUBLIC_URL,
      token_endpoint: `${PUBLIC_URL}/oauth/token`,
      jwks_uri: `${PUBLIC_URL}/.well-known/jwks.json`,
      // v1.1: extension grants (CIBA) registered at start-up are listed too (see stock-clients.e2e-spec.ts).
      grant_types_supported: expect.arrayContaining(['client_credentials']),
      token_endpoint_auth_methods_supported: expect.arrayContaining(['client_secret_basic', 'client_secret_post', 'private_key_jwt']),
      dpop_signing_alg_values_supported: expect.arrayContaining(['ES256']),
    });
  });
});

describe('POST /oauth/token', () => {
  let tenant: Tenant;
  let userId: string;
  beforeAll(async () => {
    tenant = await createTenant(t);
    userId = await createUser(t, tenant);
  });

  it('defaults the scope to all boundaries, wildcards included (API.md v1.1), and honours tokenTtl', async () => {
    const agent = await createAgent(t, tenant, userId, { permissionBoundaries: ['a:read', 'b:write', 'files:*'], tokenTtl: 120 });
    const res = await t.http.post('/oauth/token').type('form').send({ grant_type: 'client_credentials', client_id: agent.id, client_secret: agent.clientSecret }).expect(200);
    expect(res.body.scope).toBe('a:read b:write files:*');
    expect(res.body.expires_in).toBe(120);
  });

  it('accepts JSON bodies too', async () => {
    const agent = await createAgent(t, tenant, userId);
    const res = await t.http.post('/oauth/token').send({ grant_type: 'client_credentials', client_id: agent.id, client_secret: agent.clientSecret, scope: 'files:read' }).expect(200);
    expect(res.body.scope).toBe('files:read');
  });

  it('refuses a wrong secret, an unknown client and a missing credential with invalid_client', async () => {
    const agent = await createAgent(t, tenant, userId);
    for (const req of [
      t.http.post('/oauth/token').auth(agent.id, agent.clientSecret + 'x').type('form').send({ grant_type: 'client_credentials' }),
      t.http.post('/oauth/token').auth('agt_AAAAAAAAAAAAAAAAAAAAAA', agent.clientSecret).type('form').send({ grant_type: 'client_credentials' }),
      t.http.post('/oauth/token').type('form').send({ grant_type: 'client_credentials', client_id: agent.id }),
    ]) {
      const res = await req.expect(401);
      expect(res.body).toEqual({ error: 'invalid_client', error_description: expect.any(String) });
      expect(res.headers['www-authenticate']).toMatch(/^Basic/);
    }
  });

  it('refuses scopes outside the boundaries with invalid_scope', async () => {
    const agent = await createAgent(t, tenant, userId);
    for (const scope of ['research:write', 'research:read admin:all', 'filesystem:delete', 'FILES:READ']) {
      const res = await t.http.post('/oauth/token').auth(agent.id, agent.clientSecret).type('form').send({ grant_type: 'client_credentials', scope }).expect(400);
      expect(res.body.error).toBe('invalid_scope');
    }
  });

  it('refuses other grant types with unsupported_grant_type and a missing one with invalid_request', async () => {
    const agent = await createAgent(t, tenant, userId);
    const res = await t.http.post('/oauth/token').auth(agent.id, agent.clientSecret).type('form').send({ grant_type: 'password', username: 'a', password: 'b' }).expect(400);
    expect(res.body.error).toBe('unsupported_grant_type');
    const missing = await t.http.post('/oauth/token').auth(agent.id, agent.clientSecret).type('form').send({}).expect(400);
    expect(missing.body.error).toBe('invalid_request');
  });

  it('refuses a rotated-out secret and accepts the new one', async () => {
    const agent = await createAgent(t, tenant, userId);
    // The old secret has just worked (the agent is cached for client authentication).
    await t.http.post('/oauth/token').auth(agent.id, agent.clientSecret).type('form').send({ grant_type: 'client_credentials' }).expect(200);
    const rotated = await t.http.post(`/v1/agents/${agent.id}/secret`).set(bearer(tenant.apiKey)).expect(201);
    await t.http.post('/oauth/token').auth(agent.id, agent.clientSecret).type('form').send({ grant_type: 'client_credentials' }).expect(401);
    await t.http.post('/oauth/token').auth(agent.id, rotated.body.clientSecret).type('form').send({ grant_type: 'client_credentials' }).expect(200);
  });

  it('refuses suspended agents and agents of deleted users', async () => {
    const agent = await createAgent(t, tenant, userId);
    await t.http.post('/oauth/token').auth(agent.id, agent.clientSecret).type('form').send({ grant_type: 'client_credentials' }).expect(200);
    await t.http.patch(`/v1/agents/${agent.id}`).set(bearer(tenant.apiKey)).send({ status: 'suspended' }).expect(200);
    await t.http.post('/oauth/token').auth(agent.id, agent.clientSecret).type('form').send({ grant_type: 'client_credentials' }).expect(401);
    const otherUser = await createUser(t, tenant);
    const agent2 = await createAgent(t, tenant, otherUser);
    await t.http.delete(`/v1/users/${otherUser}`).set(bearer(tenant.apiKey)).expect(204);
    await t.http.post('/oauth/token').auth(agent2.id, agent2.clientSecret).type('form').send({ grant_type: 'client_credentials' }).expect(401);
  });

  describe('private_key_jwt (RFC 7523)', () => {
    async function keyAgent() {
      const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
      const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
      const res = await t.http.post('/v1/agents').set(bearer(tenant.apiKey)).send({ userId, name: 'jwt-bot', model: 'm', permissionBoundaries: ['research:read'], jwks: { keys: [jwk] } }).expect(201);
      expect(res.body.clientSecret).toBeUndefined();
      return { id: res.body.id as string, privateKey };
    }
    const assertion = (id: string, key: CryptoKey, claims: Record<string, unknown> = {}) =>
      new SignJWT({ jti: randomUUID(), ...claims })
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer(id)
        .setSubject(id)
        .setAudience(`${PUBLIC_URL}/oauth/token`)
        .setIssuedAt()
        .setExpirationTime('60s')
        .sign(key);
    const form = (a: string) => ({ grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: a });

    it('issues a token for a valid assertion and refuses its replay', async () => {
      const agent = await keyAgent();
      const a = await assertion(agent.id, agent.privateKey);
      const ok = await t.http.post('/oauth/token').type('form').send(form(a)).expect(200);
      expect(decodeJwt(ok.body.access_token).client_id).toBe(agent.id);
      const replay = await t.http.post('/oauth/token').type('form').send(form(a)).expect(401);
      expect(replay.body.error).toBe('invalid_client');
    });

    it('refuses an assertion signed by another key, for another audience, or without jti', async () => {
      const agent = await keyAgent();
      const other = await generateKeyPair('ES256');
      await t.http.post('/oauth/token').type('form').send(form(await assertion(agent.id, other.privateKey))).expect(401);
      const wrongAud = await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'ES256' }).setIssuer(agent.id).setSubject(agent.id).setAudience('https://elsewhere.example').setIssuedAt().setExpirationTime('60s').sign(agent.privateKey);
      await t.http.post('/oauth/token').type('form').send(form(wrongAud)).expect(401);
      const noJti = await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setIssuer(agent.id).setSubject(agent.id).setAudience(PUBLIC_URL).setIssuedAt().setExpirationTime('60s').sign(agent.privateKey);
      await t.http.post('/oauth/token').type('form').send(form(noJti)).expect(401);
      const longLived = await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'ES256' }).setIssuer(agent.id).setSubject(agent.id).setAudience(PUBLIC_URL).setIssuedAt().setExpirationTime('1h').sign(agent.privateKey);
      await t.http.post('/oauth/token').type('form').send(form(longLived)).expect(401);
      // draft-ietf-oauth-rfc7523bis: one audience; an array naming us among others is refused (audience injection).
      const severalAud = await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'ES256' }).setIssuer(agent.id).setSubject(agent.id).setAudience(['https://elsewhere.example', PUBLIC_URL]).setIssuedAt().setExpirationTime('60s').sign(agent.privateKey);
      expect((await t.http.post('/oauth/token').type('form').send(form(severalAud)).expect(401)).body.error).toBe('invalid_client');
      const issuerAud = await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'ES256' }).setIssuer(agent.id).setSubject(agent.id).setAudience(PUBLIC_URL).setIssuedAt().setExpirationTime('60s').sign(agent.privateKey);
      await t.http.post('/oauth/token').type('form').send(form(issuerAud)).expect(200);
    });

    it('refuses private keys and symmetric keys in jwks', async () => {
      const { privateKey } = await generateKeyPair('ES256', { extractable: true });
      const priv = await exportJWK(privateKey);
      const res = await t.http.post('/v1/agents').set(bearer(tenant.apiKey)).send({ userId, name: 'x', model: 'm', permissionBoundaries: [], jwks: { keys: [priv] } }).expect(400);
      expect(res.body.code).toBe('validation_failed');
      await t.http.post('/v1/agents').set(bearer(tenant.apiKey)).send({ userId, name: 'x', model: 'm', permissionBoundaries: [], jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } }).expect(400);
      // Any private member of an RSA key (RFC 7518 §6.3.2), not only `d`: the app leaked its private key, and is told.
      const rsa = await exportJWK((await generateKeyPair('RS256', { extractable: true })).privateKey);
      for (const member of ['q', 'dp', 'dq', 'qi']) {
        const { d: _d, p: _p, ...rest } = rsa;
        await t.http.post('/v1/agents').set(bearer(tenant.apiKey)).send({ userId, name: 'x', model: 'm', permissionBoundaries: [], jwks: { keys: [{ ...rest, [member]: rsa[member as keyof typeof rsa] }] } }).expect(400);
      }
    });
  });

  describe('DPoP (RFC 9449)', () => {
    it('binds the token to the proof key; Bearer is refused, a fresh proof is accepted', async () => {
      const agent = await createAgent(t, tenant, userId);
      const { publicKey, privateKey } = await generateKeyPair('ES256');
      const jwk = await exportJWK(publicKey);
      const proof = await dpopProof(privateKey, jwk, 'POST', `${PUBLIC_URL}/oauth/token`);
      const res = await t.http.post('/oauth/token').auth(agent.id, agent.clientSecret).set('DPoP', proof).type('form').send({ grant_type: 'client_credentials' }).expect(200);
      expect(res.body.token_type).toBe('DPoP');
      const token = res.body.access_token;
      expect(decodeJwt(token).cnf).toEqual({ jkt: await calculateJwkThumbprint(jwk) });

      const asBearer = await t.http.get('/v1/whoami').set(bearer(token)).expect(401);
      expect(asBearer.body.code).toBe('unauthorized');

      const ath = createHash('sha256').update(token).digest('base64url');
      const fresh = await dpopProof(privateKey, jwk, 'GET', `${PUBLIC_URL}/v1/whoami`, { ath });
      const ok = await t.http.get('/v1/whoami').set('Authorization', `DPoP ${token}`).set('DPoP', fresh).expect(200);
      expect(ok.body.agentId).toBe(agent.id);
      expect(ok.body.jkt).toBe(await calculateJwkThumbprint(jwk));

      // The same proof again is a replay.
      const replay = await t.http.get('/v1/whoami').set('Authorization', `DPoP ${token}`).set('DPoP', fresh).expect(401);
      expect(replay.body.code).toBe('invalid_dpop_proof');

      // A proof by another key is refused.
      const other = await generateKeyPair('ES256');
      const foreign = await dpopProof(other.privateKey, await exportJWK(other.publicKey), 'GET', `${PUBLIC_URL}/v1/whoami`, { ath });
      await t.http.get('/v1/whoami').set('Authorization', `DPoP ${token}`).set('DPoP', foreign).expect(401);
    });

    it('refuses bad proofs at the token endpoint with invalid_dpop_proof', async () => {
      const agent = await createAgent(t, tenant, userId);
      const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
      const jwk = await exportJWK(publicKey);
      const now = Math.floor(Date.now() / 1000);
      const bad = [
        await dpopProof(privateKey, jwk, 'GET', `${PUBLIC_URL}/oauth/token`),
        await dpopProof(privateKey, jwk, 'POST', `${PUBLIC_URL}/oauth/other`),
        await dpopProof(privateKey, jwk, 'POST', `${PUBLIC_URL}/oauth/token`, { iat: now - 600 }),
        await dpopProof(privateKey, await exportJWK(privateKey), 'POST', `${PUBLIC_URL}/oauth/token`),
        await new SignJWT({ jti: randomUUID(), htm: 'POST', htu: `${PUBLIC_URL}/oauth/token`, iat: now }).setProtectedHeader({ alg: 'ES256', typ: 'JWT', jwk }).sign(privateKey),
        'not-a-jwt',
      ];
      for (const proof of bad) {
        const res = await t.http.post('/oauth/token').auth(agent.id, agent.clientSecret).set('DPoP', proof).type('form').send({ grant_type: 'client_credentials' }).expect(400);
        expect(res.body.error).toBe('invalid_dpop_proof');
      }
    });
  });
});

describe('POST /oauth/revoke and /oauth/introspect', () => {
  it('a revoked token stops working at once and introspects inactive', async () => {
    const tenant = await createTenant(t);
    const userId = await createUser(t, tenant);
    const agent = await createAgent(t, tenant, userId);
    const token = await agentToken(t, agent);
    const keep = await agentToken(t, agent);
    await t.http.get('/v1/whoami').set(bearer(token)).expect(200);
    await t.http.post('/oauth/revoke').auth(agent.id, agent.clientSecret).type('form').send({ token }).expect(200);
    await t.http.get('/v1/whoami').set(bearer(token)).expect(401);
    const intro = await t.http.post('/oauth/introspect').set(bearer(tenant.apiKey)).type('form').send({ token }).expect(200);
    expect(intro.body).toEqual({ active: false });
    await t.http.get('/v1/whoami').set(bearer(keep)).expect(200);
  });

  it('introspection of another app’s token, garbage, or an expired token is inactive', async () => {
    const a = await createTenant(t);
    const b = await createTenant(t);
    const agent = await createAgent(t, a, await createUser(t, a));
    const token = await agentToken(t, agent);
    expect((await t.http.post('/oauth/introspect').set(bearer(b.apiKey)).type('form').send({ token }).expect(200)).body).toEqual({ active: false });
    expect((await t.http.post('/oauth/introspect').set(bearer(a.apiKey)).type('form').send({ token: 'garbage' }).expect(200)).body).toEqual({ active: false });
    t.clock.advance(310_000);
    try {
      expect((await t.http.post('/oauth/introspect').set(bearer(a.apiKey)).type('form').send({ token }).expect(200)).body).toEqual({ active: false });
    } finally {
      t.clock.reset();
    }
  });

  it('an agent may also revoke with one of its access tokens as Bearer; another agent’s token is left alone', async () => {
    const tenant = await createTenant(t);
    const userId = await createUser(t, tenant);
    const agent = await createAgent(t, tenant, userId);
    const other = await createAgent(t, tenant, userId);
    const caller = await agentToken(t, agent);
    const victim = await agentToken(t, agent);
    const foreign = await agentToken(t, other);
    await t.http.post('/oauth/revoke').set(bearer(caller)).type('form').send({ token: victim }).expect(200);
    await t.http.get('/v1/whoami').set(bearer(victim)).expect(401);
    const refused = await t.http.post('/oauth/revoke').set(bearer(caller)).type('form').send({ token: foreign }).expect(400);
    expect(refused.body).toEqual({ error: 'unauthorized_client', error_description: expect.any(String) });
    await t.http.get('/v1/whoami').set(bearer(foreign)).expect(200);
    const bad = await t.http.post('/oauth/revoke').set(bearer('garbage')).type('form').send({ token: foreign }).expect(401);
    expect(bad.body.error).toBe('invalid_client');
  });

  it('introspection requires an app key', async () => {
    const res = await t.http.post('/oauth/introspect').type('form').send({ token: 'x' }).expect(401);
    expect(res.body.error).toBe('invalid_client');
  });
});
