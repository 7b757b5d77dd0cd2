/**
 * API.md v1.1 "Standards for stock clients": the service driven over a real socket by unmodified
 * panva `openid-client` 6 and `oauth4webapi` 3, with their defaults apart from the issuer URL and
 * credentials. The one transport option used is `allowInsecureRequests`: both libraries refuse
 * plain `http:` URLs outright (oauth4webapi `checkProtocol`), and this test serves on
 * http://localhost. It changes only which URL schemes the client will fetch, nothing it checks.
 */
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import * as client from 'openid-client';
import * as oauth from 'oauth4webapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OAuthGrants } from '../src/modules/oauth/grants.js';
import { DPOP_ALGS } from '../src/modules/oauth/dpop.js';
import { startApp, type TestApp } from './support/app.js';
import { createAgent, createTenant, createUser, type Tenant } from './support/fixtures.js';

let t: TestApp;
let base: string;
let issuer: URL;

/** The in-process service on a real port in 47100–47199, with PUBLIC_URL (the issuer) equal to the URL clients use. */
async function listenOnFreePort(): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 47100 + Math.floor(Math.random() * 100);
    const candidate = await startApp({ PUBLIC_URL: `http://localhost:${port}` });
    try {
      await candidate.app.listen(port, 'localhost');
      t = candidate;
      base = `http://localhost:${port}`;
      issuer = new URL(base);
      return;
    } catch (err) {
      await candidate.close();
      if ((err as { code?: string }).code !== 'EADDRINUSE') throw err;
    }
  }
  throw new Error('no free port in 47100-47199');
}

beforeAll(async () => {
  await listenOnFreePort();
}, 60_000);
afterAll(async () => {
  await t?.close();
});

const insecure = { execute: [client.allowInsecureRequests] };
const discover = (clientId: string, auth: client.ClientAuth) => client.discovery(issuer, clientId, undefined, auth, insecure);

/** oauth4webapi's own discovery (default algorithm: OpenID Connect Discovery). */
async function as4(): Promise<oauth.AuthorizationServer> {
  const res = await oauth.discoveryRequest(issuer, { [oauth.allowInsecureRequests]: true });
  return oauth.processDiscoveryResponse(issuer, res);
}

async function failure(p: Promise<unknown>): Promise<{ error: string; status: number; challenge: string | null }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof client.ResponseBodyError || err instanceof oauth.ResponseBodyError) {
      return { error: err.error, status: err.status, challenge: err.response.headers.get('www-authenticate') };
    }
    // A 401 with a challenge: the libraries report the parsed challenge; the RFC 6749 body is still unread.
    if (err instanceof client.WWWAuthenticateChallengeError || err instanceof oauth.WWWAuthenticateChallengeError) {
      const body = (await err.response.json()) as { error: string };
      return { error: body.error, status: err.status, challenge: err.response.headers.get('www-authenticate') };
    }
    throw err;
  }
  throw new Error('expected the request to fail');
}

let tenant: Tenant;
let userId: string;
beforeAll(async () => {
  tenant = await createTenant(t);
  userId = await createUser(t, tenant);
});

async function jwtAgent(publicJwk: JWK, boundaries = ['research:read']): Promise<string> {
  const res = await t.http.post('/v1/agents').set('Authorization', `Bearer ${tenant.apiKey}`)
    .send({ userId, name: 'jwt-bot', model: 'm-1', permissionBoundaries: boundaries, jwks: { keys: [publicJwk] } });
  expect(res.status).toBe(201);
  return res.body.id;
}

/** A key pair; the public JWK as an app would register it: without `alg`. */
async function keyPair(alg: string): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const { alg: _omitted, key_ops: _ops, ext: _ext, ...jwk } = await exportJWK(publicKey);
  return { privateKey, jwk };
}

/** The same private key material under another algorithm (e.g. an RSA key as RSA-PSS for PS256). */
async function asAlgorithm(privateKey: CryptoKey, alg: string): Promise<CryptoKey> {
  const { alg: _a, key_ops: _o, ...jwk } = await exportJWK(privateKey);
  return (await importJWK(jwk, alg)) as CryptoKey;
}

describe('discovery', () => {
  it('openid-client discovery() with its defaults reads /.well-known/openid-configuration and accepts it', async () => {
    const config = await discover('agt_x', client.None());
    const md = config.serverMetadata();
    expect(md.issuer).toBe(base);
    expect(md.token_endpoint).toBe(`${base}/oauth/token`);
  });

  it('both well-known documents are the same, complete metadata (RFC 8414 §2 companions present)', async () => {
    const oidc = (await t.http.get('/.well-known/openid-configuration').expect(200)).body;
    const rfc8414 = (await t.http.get('/.well-known/oauth-authorization-server').expect(200)).body;
    expect(oidc).toEqual(rfc8414);
    const grants = ['client_credentials', ...t.app.get(OAuthGrants).types()];
    expect(oidc).toMatchObject({
      issuer: base,
      token_endpoint: `${base}/oauth/token`,
      jwks_uri: `${base}/.well-known/jwks.json`,
      introspection_endpoint: `${base}/oauth/introspect`,
      revocation_endpoint: `${base}/oauth/revoke`,
      grant_types_supported: grants,
      response_types_supported: [],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: ['ES256', 'EdDSA', 'Ed25519', 'RS256', 'PS256'],
      revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      revocation_endpoint_auth_signing_alg_values_supported: ['ES256', 'EdDSA', 'Ed25519', 'RS256', 'PS256'],
      introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      dpop_signing_alg_values_supported: DPOP_ALGS,
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['ES256'],
      acr_values_supported: ['mfa'],
      scopes_supported: expect.any(Array),
    });
    // CIBA and TAC (API.md v1.1): their endpoints and companions (metadata.ts advertises each only while it is mounted).
    expect(grants).toContain('urn:openid:params:grant-type:ciba');
    expect(oidc).toMatchObject({
      backchannel_authentication_endpoint: `${base}/oauth/bc-authorize`,
      backchannel_token_delivery_modes_supported: ['poll', 'ping'],
      backchannel_user_code_parameter_supported: false,
      transaction_authorization_endpoint: `${base}/oauth/txn-authorization`,
      authorization_details_types_supported: ['mfa_proxy_action'],
      scopes_supported: ['openid'],
    });
    // RFC 8414 §2: every method list naming private_key_jwt has its algorithm list.
    for (const [k, v] of Object.entries(oidc)) {
      if (k.endsWith('_auth_methods_supported') && (v as string[]).includes('private_key_jwt')) {
        expect(oidc[k.replace('_methods_', '_signing_alg_values_')], k).toEqual(expect.arrayContaining(['ES256']));
      }
    }
  });

  it('a grant registered after start-up is advertised at once', async () => {
    const grants = t.app.get(OAuthGrants);
    const type = `urn:example:test-grant:${randomUUID()}`;
    grants.register(type, async () => ({}));
    const config = await discover('agt_x', client.None());
    expect(config.serverMetadata().grant_types_supported).toContain(type);
  });

  it('RFC 9728 protected resource metadata describes the agent API', async () => {
    const res = await oauth.resourceDiscoveryRequest(issuer, { [oauth.allowInsecureRequests]: true });
    const md = await oauth.processResourceDiscoveryResponse(issuer, res);
    expect(md).toEqual({
      resource: base,
      authorization_servers: [base],
      bearer_methods_supported: ['header'],
      dpop_signing_alg_values_supported: DPOP_ALGS,
      dpop_bound_access_tokens_required: false,
      scopes_supported: [],
      resource_name: expect.any(String),
      resource_documentation: `${base}/docs`,
    });
  });
});

describe('client credentials with every advertised client authentication', () => {
  it('client_secret_basic and client_secret_post', async () => {
    const agent = await createAgent(t, tenant, userId);
    for (const auth of [client.ClientSecretBasic(agent.clientSecret), client.ClientSecretPost(agent.clientSecret)]) {
      const config = await discover(agent.id, auth);
      const tokens = await client.clientCredentialsGrant(config, { scope: 'research:read' });
      expect(tokens).toMatchObject({ token_type: 'bearer', scope: 'research:read' });
      await t.http.get('/v1/whoami').set('Authorization', `Bearer ${tokens.access_token}`).expect(200);
    }
  });

  it('private_key_jwt with ES256, RS256, PS256, EdDSA and Ed25519, each key registered without alg', async () => {
    const es = await keyPair('ES256');
    const rsa = await keyPair('RS256');
    const ed = await keyPair('Ed25519');
    const [esAgent, rsaAgent, edAgent] = [await jwtAgent(es.jwk), await jwtAgent(rsa.jwk), await jwtAgent(ed.jwk)];
    // oauth4webapi names an Ed25519 key's algorithm `Ed25519`; its stock `modifyAssertion` hook can send the polymorphic `EdDSA`.
    const asEdDSA = (header: Record<string, unknown>) => void (header.alg = 'EdDSA');
    const cases: Array<{ alg: string; agentId: string; key: CryptoKey; modify?: (h: Record<string, unknown>) => void }> = [
      { alg: 'ES256', agentId: esAgent, key: es.privateKey },
      { alg: 'RS256', agentId: rsaAgent, key: rsa.privateKey },
      // The same RSA key, as an RSA-PSS CryptoKey: one registered key, both algorithms of its type.
      { alg: 'PS256', agentId: rsaAgent, key: await asAlgorithm(rsa.privateKey, 'PS256') },
      { alg: 'Ed25519', agentId: edAgent, key: ed.privateKey },
      { alg: 'EdDSA', agentId: edAgent, key: ed.privateKey, modify: asEdDSA },
    ];
    for (const c of cases) {
      let sentAlg: unknown;
      const config = await discover(c.agentId, client.PrivateKeyJwt(c.key, {
        [client.modifyAssertion]: (header: Record<string, unknown>) => {
          c.modify?.(header);
          sentAlg = header.alg;
        },
      }));
      const tokens = await client.clientCredentialsGrant(config);
      expect(sentAlg, c.alg).toBe(c.alg);
      expect(tokens.token_type, c.alg).toBe('bearer');
      await t.http.get('/v1/whoami').set('Authorization', `Bearer ${tokens.access_token}`).expect(200);
    }
  });

  it('an agent with several keys and no kid: the key that signed the assertion is found', async () => {
    const first = await keyPair('ES256');
    const second = await keyPair('ES256');
    const res = await t.http.post('/v1/agents').set('Authorization', `Bearer ${tenant.apiKey}`)
      .send({ userId, name: 'two-keys', model: 'm-1', permissionBoundaries: ['research:read'], jwks: { keys: [first.jwk, second.jwk] } }).expect(201);
    for (const key of [first.privateKey, second.privateKey]) {
      const tokens = await client.clientCredentialsGrant(await discover(res.body.id, client.PrivateKeyJwt(key)));
      expect(tokens.token_type).toBe('bearer');
    }
  });

  it('DPoP-bound tokens through getDPoPHandle (ES256 and Ed25519 proofs), used at an agent endpoint', async () => {
    const agent = await createAgent(t, tenant, userId);
    const config = await discover(agent.id, client.ClientSecretBasic(agent.clientSecret));
    for (const alg of ['ES256', 'Ed25519']) {
      const keys = await client.randomDPoPKeyPair(alg);
      const dpop = client.getDPoPHandle(config, keys);
      const tokens = await client.clientCredentialsGrant(config, {}, { DPoP: dpop });
      expect(tokens.token_type, alg).toBe('dpop');
      const res = await client.fetchProtectedResource(config, tokens.access_token, new URL(`${base}/v1/whoami`), 'GET', undefined, undefined, { DPoP: dpop });
      expect(res.status, alg).toBe(200);
      expect(((await res.json()) as { jkt: string }).jkt, alg).toBe(await calculateJwkThumbprint(await exportJWK(keys.publicKey)));
    }
  });
});

describe('JWK registration for private_key_jwt', () => {
  it('refuses malformed key sets and keys unfit for client assertions with 400, never 5xx', async () => {
    const ec = (await keyPair('ES256')).jwk;
    const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
    const x25519 = { kty: 'OKP', crv: 'X25519', x: ec.x };
    const bad: unknown[] = [
      {}, { keys: 'x' }, { keys: [] }, { keys: [1] }, { keys: [null] }, { keys: [[]] },
      { keys: [{ ...ec, use: 'enc' }] },
      { keys: [{ ...ec, crv: 'P-384' }] },
      { keys: [{ ...ec, alg: 'RS256' }] },
      { keys: [{ ...ec, alg: 5 }] },
      { keys: [{ ...ec, kid: 7 }] },
      { keys: [{ kty: 'RSA', n: 123, e: 'AQAB' }] },
      { keys: [rsa1024] },
      { keys: [x25519] },
      { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] },
      { keys: Array.from({ length: 11 }, () => ec) },
    ];
    for (const jwks of bad) {
      const res = await t.http.post('/v1/agents').set('Authorization', `Bearer ${tenant.apiKey}`).send({ userId, name: 'bad-keys', model: 'm', permissionBoundaries: [], jwks });
      expect(res.status, JSON.stringify(jwks).slice(0, 80)).toBe(400);
      expect(res.body.code).toBe('validation_failed');
    }
  });

  it('stores a key registered without alg without one, and one with alg with it', async () => {
    const { jwk } = await keyPair('RS256');
    const loose = await jwtAgent(jwk);
    const pinned = await jwtAgent({ ...jwk, alg: 'PS256', kid: 'k1' });
    // The agent resource never returns keys; the behaviour shows at authentication (see private_key_jwt tests).
    expect(loose).toMatch(/^agt_/);
    expect(pinned).toMatch(/^agt_/);
  });
});

describe('client authentication failures', () => {
  it('a wrong secret is invalid_client with a Basic challenge', async () => {
    const agent = await createAgent(t, tenant, userId);
    const config = await discover(agent.id, client.ClientSecretBasic(`${agent.clientSecret}x`));
    expect(await failure(client.clientCredentialsGrant(config))).toEqual({ error: 'invalid_client', status: 401, challenge: 'Basic realm="mfa-proxy"' });
  });

  it('an assertion signed with a key that is not registered is invalid_client', async () => {
    const { jwk } = await keyPair('ES256');
    const agentId = await jwtAgent(jwk);
    const stranger = await keyPair('ES256');
    const config = await discover(agentId, client.PrivateKeyJwt(stranger.privateKey));
    expect(await failure(client.clientCredentialsGrant(config))).toMatchObject({ error: 'invalid_client', status: 401 });
  });

  it('an assertion with an algorithm its key cannot do is invalid_client', async () => {
    // A key registered with alg RS256 does RS256 only: a PS256 assertion by the same key is refused.
    const { privateKey, jwk } = await keyPair('RS256');
    const pinned = await jwtAgent({ ...jwk, alg: 'RS256' });
    const pss = await asAlgorithm(privateKey, 'PS256');
    expect(await failure(client.clientCredentialsGrant(await discover(pinned, client.PrivateKeyJwt(pss))))).toMatchObject({ error: 'invalid_client', status: 401 });
    // An Ed25519 key cannot do ES256: the header claims ES256 over an Ed25519 signature.
    const ed = await keyPair('Ed25519');
    const edAgent = await jwtAgent(ed.jwk);
    const relabelled = client.PrivateKeyJwt(ed.privateKey, { [client.modifyAssertion]: (header: Record<string, unknown>) => void (header.alg = 'ES256') });
    expect(await failure(client.clientCredentialsGrant(await discover(edAgent, relabelled)))).toMatchObject({ error: 'invalid_client', status: 401 });
    // A MAC (client_secret_jwt, HS256) is never accepted for a private_key_jwt client.
    const hs = client.ClientSecretJwt(randomBytes(32).toString('base64url'));
    expect(await failure(client.clientCredentialsGrant(await discover(edAgent, hs)))).toMatchObject({ error: 'invalid_client', status: 401 });
    // And the same keys still work with their own algorithms (so the refusals above are about the algorithm).
    await client.clientCredentialsGrant(await discover(pinned, client.PrivateKeyJwt(privateKey)));
    await client.clientCredentialsGrant(await discover(edAgent, client.PrivateKeyJwt(ed.privateKey)));
  });

  it('a replayed assertion is refused', async () => {
    const { privateKey, jwk } = await keyPair('ES256');
    const agentId = await jwtAgent(jwk);
    const assertion = await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'ES256' }).setIssuer(agentId).setSubject(agentId).setAudience(base).setIssuedAt().setExpirationTime('60s').sign(privateKey);
    const form = { grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion };
    await t.http.post('/oauth/token').type('form').send(form).expect(200);
    expect((await t.http.post('/oauth/token').type('form').send(form).expect(401)).body.error).toBe('invalid_client');
  });
});

describe('one client authentication for every /oauth endpoint', () => {
  it('failed authentications at /oauth/revoke spend the same per-source budget as at /oauth/token', async () => {
    const agent = await createAgent(t, tenant, userId);
    // oauthTokenFailures: 20 failures per (claimed client, source) in 5 minutes.
    for (let i = 0; i < 20; i++) {
      const res = await t.http.post('/oauth/revoke').auth(agent.id, `${agent.clientSecret}x`).type('form').send({ token: 'x' });
      expect(res.status).toBe(401);
    }
    const blocked = await t.http.post('/oauth/token').auth(agent.id, `${agent.clientSecret}x`).type('form').send({ grant_type: 'client_credentials' });
    expect(blocked.status).toBe(429);
    expect(blocked.body.error).toBe('invalid_request');
    expect(blocked.headers['retry-after']).toEqual(expect.any(String));
    // A right secret always passes.
    await t.http.post('/oauth/token').auth(agent.id, agent.clientSecret).type('form').send({ grant_type: 'client_credentials' }).expect(200);
  });
});

describe('introspection and revocation with oauth4webapi (ClientSecretBasic)', () => {
  it('an app introspects with its id and API key; the agent token reports act, model, task_id and cnf', async () => {
    const agent = await createAgent(t, tenant, userId, { model: 'gpt-intro' });
    const config = await discover(agent.id, client.ClientSecretBasic(agent.clientSecret));
    const dpop = client.getDPoPHandle(config, await client.randomDPoPKeyPair());
    const tokens = await client.clientCredentialsGrant(config, { task_id: 'task-7' }, { DPoP: dpop });

    const as = await as4();
    const app: oauth.Client = { client_id: tenant.appId };
    for (const auth of [oauth.ClientSecretBasic(tenant.apiKey), oauth.ClientSecretPost(tenant.apiKey)]) {
      const res = await oauth.introspectionRequest(as, app, auth, tokens.access_token, { [oauth.allowInsecureRequests]: true });
      const intro = await oauth.processIntrospectionResponse(as, app, res);
      expect(intro).toMatchObject({
        active: true,
        token_type: 'DPoP',
        client_id: agent.id,
        sub: userId,
        act: { sub: agent.id },
        model: 'gpt-intro',
        task_id: 'task-7',
        cnf: { jkt: expect.any(String) },
        iss: base,
      });
    }
    // Bearer <API key> still works.
    const bearer = await t.http.post('/oauth/introspect').set('Authorization', `Bearer ${tenant.apiKey}`).type('form').send({ token: tokens.access_token }).expect(200);
    expect(bearer.body.active).toBe(true);
  });

  it('introspection with a wrong API key, another app’s id, or no credential is 401 naming Basic and Bearer', async () => {
    const as = await as4();
    const other = await createTenant(t);
    const opts = { [oauth.allowInsecureRequests]: true };
    const basicBearer = 'Basic realm="mfa-proxy", Bearer realm="mfa-proxy"';
    const wrongKey = oauth.introspectionRequest(as, { client_id: tenant.appId }, oauth.ClientSecretBasic(`${tenant.apiKey}x`), 'x', opts).then((r) => oauth.processIntrospectionResponse(as, { client_id: tenant.appId }, r));
    expect(await failure(wrongKey)).toEqual({ error: 'invalid_client', status: 401, challenge: basicBearer });
    // A genuine key of another app under this app's id.
    const foreign = oauth.introspectionRequest(as, { client_id: tenant.appId }, oauth.ClientSecretBasic(other.apiKey), 'x', opts).then((r) => oauth.processIntrospectionResponse(as, { client_id: tenant.appId }, r));
    expect(await failure(foreign)).toEqual({ error: 'invalid_client', status: 401, challenge: basicBearer });
    const none = await t.http.post('/oauth/introspect').type('form').send({ token: 'x' }).expect(401);
    expect(none.headers['www-authenticate']).toBe(basicBearer);
    const badBearer = await t.http.post('/oauth/introspect').set('Authorization', `Bearer ${tenant.apiKey}x`).type('form').send({ token: 'x' }).expect(401);
    expect(badBearer.body.error).toBe('invalid_client');
    expect(badBearer.headers['www-authenticate']).toBe('Basic realm="mfa-proxy", Bearer realm="mfa-proxy", error="invalid_token"');
  });

  it('an agent revokes its own token; another client’s token is refused with unauthorized_client (RFC 7009 §2.1) and stays valid', async () => {
    const a = await createAgent(t, tenant, userId);
    const b = await createAgent(t, tenant, userId);
    const tokenOf = async (agent: { id: string; clientSecret: string }) => (await client.clientCredentialsGrant(await discover(agent.id, client.ClientSecretBasic(agent.clientSecret)))).access_token;
    const mine = await tokenOf(a);
    const theirs = await tokenOf(b);
    const as = await as4();
    const opts = { [oauth.allowInsecureRequests]: true };
    const revoke = (token: string) => oauth.revocationRequest(as, { client_id: a.id }, oauth.ClientSecretBasic(a.clientSecret), token, opts).then(oauth.processRevocationResponse);

    expect(await failure(revoke(theirs))).toMatchObject({ error: 'unauthorized_client', status: 400 });
    await t.http.get('/v1/whoami').set('Authorization', `Bearer ${theirs}`).expect(200);

    await revoke(mine);
    await t.http.get('/v1/whoami').set('Authorization', `Bearer ${mine}`).expect(401);
    // openid-client's tokenRevocation too, with client_secret_post.
    const again = await tokenOf(a);
    await client.tokenRevocation(await discover(a.id, client.ClientSecretPost(a.clientSecret)), again);
    await t.http.get('/v1/whoami').set('Authorization', `Bearer ${again}`).expect(401);
  });
});

describe('resource challenges (RFC 6750 §3, RFC 9449 §7.1)', () => {
  const algs = `algs="${DPOP_ALGS.join(' ')}"`;

  it('no credential: both schemes offered, no error attribute', async () => {
    const res = await t.http.get('/v1/whoami').expect(401);
    expect(res.headers['www-authenticate']).toBe(`Bearer realm="mfa-proxy", DPoP realm="mfa-proxy", ${algs}`);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ status: 401, code: 'unauthorized' });
  });

  it('a bad Bearer token: error="invalid_token" on the Bearer challenge', async () => {
    const res = await t.http.get('/v1/whoami').set('Authorization', 'Bearer not-a-token').expect(401);
    expect(res.headers['www-authenticate']).toBe(`Bearer realm="mfa-proxy", error="invalid_token", DPoP realm="mfa-proxy", ${algs}`);
    expect(res.body).toMatchObject({ status: 401, code: 'unauthorized' });
  });

  it('a DPoP-bound token with a bad proof: error="invalid_dpop_proof" on the DPoP challenge, with algs', async () => {
    const agent = await createAgent(t, tenant, userId);
    const config = await discover(agent.id, client.ClientSecretBasic(agent.clientSecret));
    const keys = await client.randomDPoPKeyPair();
    const tokens = await client.clientCredentialsGrant(config, {}, { DPoP: client.getDPoPHandle(config, keys) });
    // A proof for another URL (htu mismatch), by the right key.
    const proof = await new SignJWT({ jti: randomUUID(), htm: 'GET', htu: `${base}/v1/elsewhere`, iat: Math.floor(Date.now() / 1000) })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: await exportJWK(keys.publicKey) }).sign(keys.privateKey);
    const res = await t.http.get('/v1/whoami').set('Authorization', `DPoP ${tokens.access_token}`).set('DPoP', proof).expect(401);
    expect(res.headers['www-authenticate']).toBe(`Bearer realm="mfa-proxy", DPoP realm="mfa-proxy", error="invalid_dpop_proof", ${algs}`);
    expect(res.body).toMatchObject({ status: 401, code: 'invalid_dpop_proof' });
    // The same token under the Bearer scheme: a bad credential on Bearer.
    const asBearer = await t.http.get('/v1/whoami').set('Authorization', `Bearer ${tokens.access_token}`).expect(401);
    expect(asBearer.headers['www-authenticate']).toBe(`Bearer realm="mfa-proxy", error="invalid_token", DPoP realm="mfa-proxy", ${algs}`);
  });
});
