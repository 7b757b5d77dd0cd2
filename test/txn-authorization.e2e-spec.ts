import { randomBytes, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT, UnsecuredJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StepUpEntity } from '../src/modules/step-ups/step-up.entity.js';
import { StepUpsService } from '../src/modules/step-ups/step-ups.service.js';
import { PUBLIC_URL, startApp, usingPostgres, type TestApp } from './support/app.js';
import { bearer, createAgent, createTenant } from './support/fixtures.js';
import { approvalToken, approveWithCode, expectStatus, human, type Human } from './support/step-up.js';
import { webhookReceiver } from './support/webhook-receiver.js';
import { proof, worker } from './support/worker.js';

/**
 * Issue 13, Transaction Authorization Challenge (draft-rosomakho-oauth-txn-challenge-00; API.md
 * "Transaction Authorization Challenge"): apps register a resource and challenge keys; an agent
 * presents the app-signed challenge, a human approves through the real approval endpoint, the agent
 * polls for a single-use access token, and the app consumes it once with `{ token, txn }`.
 */
let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

const admin = () => bearer(t.adminToken);
const problem = (status: number, code: string) => expect.objectContaining({ status, code, detail: expect.any(String) });
const uniqueResource = () => `https://api-${randomBytes(6).toString('hex')}.acme.example`;

/** An app's challenge-signing key pair (the public JWK is what it registers). */
interface SigningKey {
  alg: 'ES256' | 'EdDSA' | 'RS256';
  privateKey: CryptoKey;
  jwk: JWK;
}

async function signingKey(alg: SigningKey['alg'] = 'ES256'): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return { alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid: `k-${randomUUID()}` } };
}

describe('registration of resource and challengeJwks (POST/PATCH /v1/apps)', () => {
  it('stores the resource and the public keys, returns them in the app, and removes them with null', async () => {
    const key = await signingKey();
    const ed = await signingKey('EdDSA');
    const resource = uniqueResource();
    const created = await t.http.post('/v1/apps').set(admin()).send({ name: 'acme', resource, challengeJwks: { keys: [key.jwk, ed.jwk] } }).expect(201);
    expect(created.body).toMatchObject({ resource, challengeJwks: { keys: [key.jwk, ed.jwk] } });
    const got = await t.http.get(`/v1/apps/${created.body.id}`).set(admin()).expect(200);
    expect(got.body).toMatchObject({ resource, challengeJwks: { keys: [key.jwk, ed.jwk] } });

    const patched = await t.http.patch(`/v1/apps/${created.body.id}`).set(admin()).send({ resource: null, challengeJwks: null }).expect(200);
    expect(patched.body).toMatchObject({ resource: null, challengeJwks: null });
    // The resource is free again: another app may take it.
    await t.http.post('/v1/apps').set(admin()).send({ name: 'other', resource }).expect(201);
  });

  it('an app without them shows null for both', async () => {
    const tenant = await createTenant(t);
    expect((await t.http.get(`/v1/apps/${tenant.appId}`).set(admin()).expect(200)).body).toMatchObject({ resource: null, challengeJwks: null });
  });

  it('refuses bad input with 400 and changes nothing: private keys, symmetric keys, other curves, bad resources, oversized sets', async () => {
    const key = await signingKey();
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const privateJwk = await exportJWK(privateKey);
    const { publicKey: p384 } = await generateKeyPair('ES384', { extractable: true });
    const resource = uniqueResource();
    const app = (await t.http.post('/v1/apps').set(admin()).send({ name: 'acme', resource, challengeJwks: { keys: [key.jwk] } }).expect(201)).body;
    const bad: [string, Record<string, unknown>][] = [
      ['a private EC key', { challengeJwks: { keys: [privateJwk] } }],
      ['a public key with a private member', { challengeJwks: { keys: [{ ...key.jwk, d: privateJwk.d }] } }],
      ['a symmetric key', { challengeJwks: { keys: [{ kty: 'oct', k: randomBytes(32).toString('base64url') }] } }],
      ['a P-384 key', { challengeJwks: { keys: [await exportJWK(p384)] } }],
      ['an HMAC alg on an EC key', { challengeJwks: { keys: [{ ...key.jwk, alg: 'HS256' }] } }],
      ['no keys', { challengeJwks: { keys: [] } }],
      ['eleven keys', { challengeJwks: { keys: Array.from({ length: 11 }, (_, i) => ({ ...key.jwk, kid: `k${i}` })) } }],
      ['an oversized key set', { challengeJwks: { keys: [{ ...key.jwk, kid: 'x'.repeat(17_000) }] } }],
      ['not a key set', { challengeJwks: 'keys' }],
      ['a broken key', { challengeJwks: { keys: [{ ...key.jwk, x: 'AAAA' }] } }],
      ['a resource that is no URL', { resource: 'not a url' }],
      ['a relative resource', { resource: '/api' }],
      ['an http resource off loopback', { resource: 'http://api.acme.example' }],
      ['a resource with a fragment', { resource: 'https://api.acme.example/#x' }],
      ['a resource with a query', { resource: 'https://api.acme.example/?a=1' }],
      ['a resource with credentials', { resource: 'https://u:p@api.acme.example' }],
      ["a resource on this service's origin", { resource: `${t.config.publicUrl}/v1` }],
      ['a resource that is not a string', { resource: 42 }],
    ];
    for (const [name, body] of bad) {
      const res = await t.http.post('/v1/apps').set(admin()).send({ name: 'bad', resource: uniqueResource(), ...body });
      expect(res.status, `${name} (POST): ${JSON.stringify(res.body)}`).toBe(400);
      expect(res.body, name).toEqual(problem(400, 'validation_failed'));
      const patch = await t.http.patch(`/v1/apps/${app.id}`).set(admin()).send(body);
      expect(patch.status, `${name} (PATCH)`).toBe(400);
    }
    // Nothing changed on the app.
    expect((await t.http.get(`/v1/apps/${app.id}`).set(admin()).expect(200)).body).toMatchObject({ resource, challengeJwks: { keys: [key.jwk] } });
  });

  it('a resource is unique across apps: 409 conflict on POST and PATCH, nothing changed', async () => {
    const resource = uniqueResource();
    await t.http.post('/v1/apps').set(admin()).send({ name: 'first', resource }).expect(201);
    const dup = await t.http.post('/v1/apps').set(admin()).send({ name: 'second', resource }).expect(409);
    expect(dup.body).toEqual(problem(409, 'conflict'));
    const other = await createTenant(t, undefined, { resource: uniqueResource() });
    const before = (await t.http.get(`/v1/apps/${other.appId}`).set(admin()).expect(200)).body;
    expect((await t.http.patch(`/v1/apps/${other.appId}`).set(admin()).send({ resource, name: 'renamed' }).expect(409)).body).toEqual(problem(409, 'conflict'));
    expect((await t.http.get(`/v1/apps/${other.appId}`).set(admin()).expect(200)).body).toEqual(before);
    // Its own resource again is no conflict.
    await t.http.patch(`/v1/apps/${other.appId}`).set(admin()).send({ resource: before.resource }).expect(200);
  });

  it('one spelling per resource: another spelling of a registered one is 409, a non-normal spelling 400', async () => {
    const host = `api-${randomBytes(6).toString('hex')}.acme.example`;
    await t.http.post('/v1/apps').set(admin()).send({ name: 'first', resource: `https://${host}` }).expect(201);
    expect((await t.http.post('/v1/apps').set(admin()).send({ name: 'second', resource: `https://${host}/` }).expect(409)).body).toEqual(problem(409, 'conflict'));
    for (const spelling of [`HTTPS://${host}/api`, `https://${host.toUpperCase()}/api`, ` https://${host}/api`, `https://${host}/./api`, `https://${host}/%61pi`, `https://${host}/x/../api`]) {
      const res = await t.http.post('/v1/apps').set(admin()).send({ name: 'third', resource: spelling });
      expect(res.status, spelling).toBe(400);
    }
    await t.http.post('/v1/apps').set(admin()).send({ name: 'fourth', resource: `https://${host}/api` }).expect(201);
  });

  it('http on loopback is accepted when private targets are allowed (the test default)', async () => {
    const res = await t.http.post('/v1/apps').set(admin()).send({ name: 'dev', resource: `http://127.0.0.1:47301/${randomBytes(4).toString('hex')}` }).expect(201);
    expect(res.body.resource).toMatch(/^http:\/\/127\.0\.0\.1:47301\//);
  });
});

// ---------------------------------------------------------------------------------------------
// The flow: challenge, approval, poll, verify.

const TXN_PATH = '/oauth/txn-authorization';

/** A human's tenant that is a TAC resource: its resource, its signing key, and the human's agent. */
interface TacWorld extends Human {
  resource: string;
  key: SigningKey;
}

async function tacWorld(appBody: Record<string, unknown> = {}): Promise<TacWorld> {
  const key = await signingKey();
  const resource = uniqueResource();
  const h = await human(t, {}, PUBLIC_URL, { approvalUrlToAgent: false, resource, challengeJwks: { keys: [key.jwk] }, ...appBody });
  return { ...h, resource, key };
}

const ACTION = { type: 'mfa_proxy_action', action: 'payments:send', resource: 'acct://123', details: { amount: '5000.00', currency: 'GBP', creditor: 'Example Ltd' } };
const REASON = 'Payments over £1,000 need the account holder’s approval.';

/** The claims an app puts in a challenge for the world's agent; `extra` overrides (undefined removes). */
function claims(w: TacWorld, extra: Record<string, unknown> = {}): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  const base: Record<string, unknown> = {
    iss: w.resource, aud: t.config.issuer, iat: now, exp: now + 300, jti: randomUUID(), txn: randomUUID(),
    authorization_details: [ACTION], reason: REASON, act: { sub: w.agent.id },
  };
  return Object.fromEntries(Object.entries({ ...base, ...extra }).filter(([, v]) => v !== undefined)) as JWTPayload;
}

/** A challenge signed with `key` (the world's registered one by default). */
function sign(payload: JWTPayload, key: SigningKey, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: key.alg, typ: 'txn-authz-challenge+jwt', kid: key.jwk.kid, ...header }).sign(key.privateKey);
}

const challenge = (w: TacWorld, extra: Record<string, unknown> = {}) => sign(claims(w, extra), w.key);

/** `POST /oauth/txn-authorization` as the world's agent (client_secret_basic), form-encoded. */
function txnPost(w: Pick<Human, 'agent'>, form: Record<string, string>, headers: Record<string, string> = {}) {
  return t.http.post(TXN_PATH).auth(w.agent.id, w.agent.clientSecret).type('form').set(headers).send(form);
}

const stepUpsOf = (userId: string) => t.app.get(DataSource).getRepository(StepUpEntity).findBy({ userId });
const countStepUps = async (userId: string) => (await stepUpsOf(userId)).length;
const approvalUrlOf = async (userId: string) => {
  const [s] = await stepUpsOf(userId);
  return t.app.get(StepUpsService).approvalUrl(s);
};
const verify = (apiKey: string, body: Record<string, unknown>) => t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(apiKey)).send(body).expect(200);
const oauthError = (error: string) => ({ error, error_description: expect.any(String) });

describe('the flow: challenge → human approval → token once → consumed once', () => {
  it('an app-signed challenge becomes a step-up the human approves (TOTP, real endpoint); the agent gets the token once; the app consumes it once', async () => {
    const receiver = await webhookReceiver();
    try {
      const w = await tacWorld({ webhookUrl: receiver.url });
      const jws = await challenge(w);
      const { txn } = decodeJwt(jws) as { txn: string };
      const started = await expectStatus(txnPost(w, { transaction_challenge: jws }), 200);
      expect(started.body).toEqual({ transaction_authorization_id: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), expires_in: expect.any(Number), interval: 5 });
      expect(started.body.expires_in).toBeGreaterThan(0);
      expect(started.headers['cache-control']).toBe('no-store');
      const id = started.body.transaction_authorization_id as string;

      // Pending: authorization_pending, then slow_down when polled faster than the interval.
      expect((await expectStatus(txnPost(w, { transaction_authorization_id: id }), 400)).body).toEqual(oauthError('authorization_pending'));
      expect((await expectStatus(txnPost(w, { transaction_authorization_id: id }), 400)).body).toEqual(oauthError('slow_down'));

      // The human gets the approval URL through the app (step_up.created), and approves with a code.
      const deadline = Date.now() + 10_000;
      while (!receiver.received.some((r) => r.json.type === 'step_up.created') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const event = receiver.received.find((r) => r.json.type === 'step_up.created');
      expect(event?.json.data).toMatchObject({ action: 'payments:send', resource: 'acct://123', channel: 'txn' });
      await expectStatus(approveWithCode(t, w, String(event!.json.data.approvalUrl)), 200);

      const granted = await expectStatus(txnPost(w, { transaction_authorization_id: id }), 200);
      expect(granted.body).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: 120, authorization_details: [ACTION] });
      expect(granted.headers['cache-control']).toBe('no-store');
      // Exactly once.
      expect((await expectStatus(txnPost(w, { transaction_authorization_id: id }), 400)).body).toEqual(oauthError('invalid_grant'));

      const token = granted.body.access_token as string;
      const header = decodeProtectedHeader(token);
      expect(header).toEqual({ alg: 'ES256', typ: 'at+jwt', kid: expect.any(String) });
      const c = decodeJwt(token);
      expect(c).toEqual({
        iss: t.config.issuer, sub: w.userId, aud: w.resource, client_id: w.agent.id, act: { sub: w.agent.id },
        jti: expect.any(String), iat: expect.any(Number), exp: expect.any(Number), txn, authorization_details: [ACTION],
      });
      expect(c.exp! - c.iat!).toBe(120);
      // The service's own JWKS verifies it.
      const jwks = (await t.http.get('/.well-known/jwks.json').expect(200)).body as { keys: JWK[] };
      expect(jwks.keys.some((k) => k.kid === header.kid)).toBe(true);

      // The app consumes it once with { token, txn }: valid, then already_used.
      const valid = await verify(w.tenant.apiKey, { token, txn });
      expect(valid.body).toMatchObject({ valid: true, userId: w.userId, agentId: w.agent.id, action: 'payments:send', resource: 'acct://123', method: 'totp', txn });
      expect((await verify(w.tenant.apiKey, { token, txn })).body).toEqual({ valid: false, reason: 'already_used' });
    } finally {
      await receiver.close();
    }
  });

  it('a poll with a DPoP proof gets a DPoP-bound token (cnf.jkt = the proof key thumbprint, token_type DPoP)', async () => {
    const w = await tacWorld();
    const jws = await challenge(w);
    const id = (await expectStatus(txnPost(w, { transaction_challenge: jws }), 200)).body.transaction_authorization_id as string;
    await expectStatus(approveWithCode(t, w, await approvalUrlOf(w.userId)), 200);
    const key = await worker();
    // A proof for another URL is refused and hands nothing out.
    expect((await expectStatus(txnPost(w, { transaction_authorization_id: id }, { DPoP: await proof(key, 'POST', '/oauth/token') }), 400)).body).toEqual(oauthError('invalid_dpop_proof'));
    const granted = await expectStatus(txnPost(w, { transaction_authorization_id: id }, { DPoP: await proof(key, 'POST', TXN_PATH) }), 200);
    expect(granted.body.token_type).toBe('DPoP');
    const { calculateJwkThumbprint } = await import('jose');
    expect(decodeJwt(granted.body.access_token).cnf).toEqual({ jkt: await calculateJwkThumbprint(key.jwk, 'sha256') });
    const { txn } = decodeJwt(jws) as { txn: string };
    expect((await verify(w.tenant.apiKey, { token: granted.body.access_token, txn })).body).toMatchObject({ valid: true, txn });
  });

  it('a denial is access_denied at the poll; another agent cannot poll the id (invalid_grant)', async () => {
    const w = await tacWorld();
    const id = (await expectStatus(txnPost(w, { transaction_challenge: await challenge(w) }), 200)).body.transaction_authorization_id as string;
    const other = await createAgent(t, w.tenant, w.userId, { permissionBoundaries: ['payments:send'] });
    expect((await expectStatus(txnPost({ agent: other }, { transaction_authorization_id: id }), 400)).body).toEqual(oauthError('invalid_grant'));
    await t.http.post(`/v1/approvals/${approvalToken(await approvalUrlOf(w.userId))}/deny`).send({}).expect(200);
    expect((await expectStatus(txnPost(w, { transaction_authorization_id: id }), 400)).body).toEqual(oauthError('access_denied'));
  });

  it('client authentication is required (401 invalid_client), and exactly one of the two parameters', async () => {
    const w = await tacWorld();
    const jws = await challenge(w);
    const res = await t.http.post(TXN_PATH).auth(w.agent.id, 'mpx_sec_wrong').type('form').send({ transaction_challenge: jws });
    expect(res.status).toBe(401);
    expect(res.body).toEqual(oauthError('invalid_client'));
    expect((await expectStatus(txnPost(w, {}), 400)).body).toEqual(oauthError('invalid_request'));
    expect((await expectStatus(txnPost(w, { transaction_challenge: jws, transaction_authorization_id: 'x' }), 400)).body).toEqual(oauthError('invalid_request'));
    expect(await countStepUps(w.userId)).toBe(0);
  });
});

describe('the human sees what the app signed, and its reason', () => {
  it('approval JSON and page: action, resource and details from the challenge, the reason labelled as the app’s, no agent-written text', async () => {
    const w = await tacWorld();
    const jws = await challenge(w);
    const { txn } = decodeJwt(jws) as { txn: string };
    await expectStatus(txnPost(w, { transaction_challenge: jws }), 200);
    const token = approvalToken(await approvalUrlOf(w.userId));
    const json = (await t.http.get(`/v1/approvals/${token}`).expect(200)).body;
    expect(json).toMatchObject({
      status: 'pending', agent: { id: w.agent.id }, action: ACTION.action, resource: ACTION.resource, details: ACTION.details, bindingMessage: null,
      transactionChallenge: { describedBy: 'app', issuer: w.resource, txn, reason: REASON },
    });
    const page = (await t.http.get(`/approve/${token}`).expect(200)).text;
    expect(page).toContain('as described and signed by');
    expect(page).toMatch(/<h3>Reason given by [^<]+<\/h3>\s*<p class="app-text" id="app-reason">Payments over £1,000 need the account holder’s approval\.<\/p>/);
    expect(page).toContain('<code id="action">payments:send</code>');
    expect(page).toContain('<code id="resource">acct://123</code>');
    expect(page).toContain('&quot;creditor&quot;: &quot;Example Ltd&quot;');
    expect(page).not.toContain('written by the agent');
  });
});

describe('single use at the app, and nowhere else', () => {
  /** An approved TAC token of a fresh world. */
  async function grantedToken(dpop = false) {
    const w = await tacWorld();
    const jws = await challenge(w);
    const { txn } = decodeJwt(jws) as { txn: string };
    const id = (await expectStatus(txnPost(w, { transaction_challenge: jws }), 200)).body.transaction_authorization_id as string;
    await expectStatus(approveWithCode(t, w, await approvalUrlOf(w.userId)), 200);
    const key = await worker();
    const headers: Record<string, string> = dpop ? { DPoP: await proof(key, 'POST', TXN_PATH) } : {};
    const token = (await expectStatus(txnPost(w, { transaction_authorization_id: id }, headers), 200)).body.access_token as string;
    return { w, txn, token, jkt: await calculateJwkThumbprint(key.jwk) };
  }

  it('a DPoP-bound token: the answer names its key (cnf.jkt), and a jkt the app names that is not its key is refused unconsumed', async () => {
    const { w, txn, token, jkt } = await grantedToken(true);
    const other = await calculateJwkThumbprint((await worker()).jwk);
    expect((await verify(w.tenant.apiKey, { token, txn, jkt: other })).body).toEqual({ valid: false, reason: 'agent_mismatch' });
    expect((await verify(w.tenant.apiKey, { token, txn, jkt })).body).toMatchObject({ valid: true, txn, cnf: { jkt } });
    expect((await verify(w.tenant.apiKey, { token, txn, jkt })).body).toEqual({ valid: false, reason: 'already_used' });
    // Unbound: no cnf in the answer.
    const unbound = await grantedToken();
    expect((await verify(unbound.w.tenant.apiKey, { token: unbound.token, txn: unbound.txn })).body).not.toHaveProperty('cnf');
  });

  it('another app cannot consume it (wrong_audience), even one that knows the txn; the owner still can', async () => {
    const { w, txn, token } = await grantedToken();
    const stranger = await createTenant(t, undefined, { resource: uniqueResource() });
    expect((await verify(stranger.apiKey, { token, txn })).body).toEqual({ valid: false, reason: 'wrong_audience' });
    const noResource = await createTenant(t);
    expect((await verify(noResource.apiKey, { token, txn })).body).toEqual({ valid: false, reason: 'wrong_audience' });
    expect((await verify(w.tenant.apiKey, { token, txn })).body).toMatchObject({ valid: true });
  });

  it('a missing or different txn, or another action, is refused and does not consume it', async () => {
    const { w, txn, token } = await grantedToken();
    expect((await verify(w.tenant.apiKey, { token, txn: 'another-txn' })).body).toEqual({ valid: false, reason: 'details_mismatch' });
    expect((await verify(w.tenant.apiKey, { token, action: ACTION.action })).body).toEqual({ valid: false, reason: 'details_mismatch' });
    expect((await verify(w.tenant.apiKey, { token, txn, action: 'files:delete' })).body).toEqual({ valid: false, reason: 'action_mismatch' });
    expect((await verify(w.tenant.apiKey, { token, txn, resource: 'acct://999' })).body).toEqual({ valid: false, reason: 'resource_mismatch' });
    expect((await verify(w.tenant.apiKey, { token, txn, details: { amount: '1.00' } })).body).toEqual({ valid: false, reason: 'details_mismatch' });
    expect((await verify(w.tenant.apiKey, { token, txn, action: ACTION.action, resource: ACTION.resource, details: ACTION.details, agentId: w.agent.id })).body).toMatchObject({ valid: true, txn });
  });

  it('the TAC token is not an agent access token: 401 at GET /v1/whoami (Bearer and DPoP)', async () => {
    const { w, token } = await grantedToken();
    const res = await t.http.get('/v1/whoami').set(bearer(token));
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('unauthorized');
    expect((await t.http.get('/v1/whoami').set(bearer(w.token)).expect(200)).body.agentId).toBe(w.agent.id);
    const bound = await grantedToken(true);
    expect((await t.http.get('/v1/whoami').set({ Authorization: `DPoP ${bound.token}` })).status).toBe(401);
  });

  it('an MFA-proxy token verified with a txn is details_mismatch (it is bound to no transaction)', async () => {
    const w = await tacWorld();
    const created = await expectStatus(t.http.post('/v1/step-ups').set(bearer(w.token)).send({ action: 'files:delete', resource: 'drive://q3.pdf' }), 201);
    await expectStatus(approveWithCode(t, w, await approvalUrlOf(w.userId)), 200);
    const token = (await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(w.token)).expect(200)).body.mfaProxyToken as string;
    expect((await verify(w.tenant.apiKey, { token, txn: 'x' })).body).toEqual({ valid: false, reason: 'details_mismatch' });
    // Something that is not a token of ours stays what it is, txn or not (API.md: malformed or invalid_signature).
    expect((await verify(w.tenant.apiKey, { token: 'a.b.c', txn: 'x' })).body).toEqual({ valid: false, reason: 'malformed' });
    expect((await verify(w.tenant.apiKey, { token, action: 'files:delete', resource: 'drive://q3.pdf' })).body).toMatchObject({ valid: true });
  });
});

describe('a bad challenge: 400, no step-up, nothing changed', () => {
  /** Posts a challenge and checks: the status and error, and that no step-up of the user exists. */
  async function refused(w: TacWorld, jws: string, error = 'invalid_request') {
    const res = await expectStatus(txnPost(w, { transaction_challenge: jws }), 400);
    expect(res.body).toEqual(oauthError(error));
    expect(await countStepUps(w.userId)).toBe(0);
  }

  it('tampered signature', async () => {
    const w = await tacWorld();
    const [h, p, sig] = (await challenge(w)).split('.');
    const flipped = sig.slice(0, 10) + (sig[10] === 'A' ? 'B' : 'A') + sig.slice(11);
    await refused(w, [h, p, flipped].join('.'));
    // A payload changed under a valid signature.
    const other = Buffer.from(JSON.stringify(claims(w, { authorization_details: [{ ...ACTION, details: { amount: '1.00' } }] }))).toString('base64url');
    await refused(w, [h, other, sig].join('.'));
  });

  it('signed by a key the app did not register, or by another app', async () => {
    const w = await tacWorld();
    await refused(w, await sign(claims(w), await signingKey()));
    await refused(w, await sign(claims(w), await signingKey(), { kid: undefined }));
    const v = await tacWorld();
    await refused(w, await sign(claims(w), v.key));
  });

  it('wrong aud', async () => {
    const w = await tacWorld();
    await refused(w, await challenge(w, { aud: 'https://as.other.example' }));
    await refused(w, await challenge(w, { aud: undefined }));
  });

  it('expired, no exp, or living longer than 600 s', async () => {
    const w = await tacWorld();
    const now = Math.floor(Date.now() / 1000);
    await refused(w, await challenge(w, { iat: now - 400, exp: now - 100 }));
    await refused(w, await challenge(w, { exp: undefined }));
    await refused(w, await challenge(w, { iat: now, exp: now + 601 }));
    await refused(w, await challenge(w, { iat: now + 300, exp: now + 400 }));
  });

  it('foreign act.sub, or none', async () => {
    const w = await tacWorld();
    const other = await createAgent(t, w.tenant, w.userId, { permissionBoundaries: ['payments:send'] });
    await refused(w, await challenge(w, { act: { sub: other.id } }));
    await refused(w, await challenge(w, { act: undefined }));
  });

  it('replayed jti: a challenge starts one step-up, once', async () => {
    const w = await tacWorld();
    const jws = await challenge(w);
    await expectStatus(txnPost(w, { transaction_challenge: jws }), 200);
    const again = await expectStatus(txnPost(w, { transaction_challenge: jws }), 400);
    expect(again.body).toEqual(oauthError('invalid_request'));
    // Another challenge that reuses the jti is refused as well.
    const { jti } = decodeJwt(jws);
    expect((await expectStatus(txnPost(w, { transaction_challenge: await challenge(w, { jti }) }), 400)).body).toEqual(oauthError('invalid_request'));
    expect(await countStepUps(w.userId)).toBe(1);
  });

  it(`two concurrent posts of one challenge start exactly one step-up (${usingPostgres() ? 'PostgreSQL' : 'SQLite'})`, async () => {
    for (let round = 0; round < 3; round++) {
      const w = await tacWorld();
      const jws = await challenge(w);
      const results = await Promise.all(Array.from({ length: 4 }, () => txnPost(w, { transaction_challenge: jws })));
      expect(results.map((r) => r.status).sort()).toEqual([200, 400, 400, 400]);
      expect(await countStepUps(w.userId)).toBe(1);
    }
  });

  it('unregistered iss, or the resource of another tenant', async () => {
    const w = await tacWorld();
    await refused(w, await challenge(w, { iss: uniqueResource() }));
    await refused(w, await challenge(w, { iss: undefined }));
    // Another app's resource, signed with that app's own registered key: still not this agent's app.
    const v = await tacWorld();
    await refused(w, await sign(claims(w, { iss: v.resource }), v.key));
  });

  it('wrong typ', async () => {
    const w = await tacWorld();
    await refused(w, await sign(claims(w), w.key, { typ: 'JWT' }));
    await refused(w, await sign(claims(w), w.key, { typ: undefined }));
    await refused(w, await sign(claims(w), w.key, { typ: 'at+jwt' }));
  });

  it('alg none, HS256, and key-bearing headers (jwk, jku, x5u)', async () => {
    const w = await tacWorld();
    const unsecured = new UnsecuredJWT(claims(w)).encode();
    const [, payload] = unsecured.split('.');
    const noneHeader = Buffer.from(JSON.stringify({ alg: 'none', typ: 'txn-authz-challenge+jwt' })).toString('base64url');
    await refused(w, `${noneHeader}.${payload}.`);
    const secret = new TextEncoder().encode('a shared secret the app never registered, 32+ bytes');
    await refused(w, await new SignJWT(claims(w)).setProtectedHeader({ alg: 'HS256', typ: 'txn-authz-challenge+jwt' }).sign(secret));
    // Even a registered public key embedded as jwk does not make a foreign signature acceptable.
    const attacker = await signingKey();
    await refused(w, await sign(claims(w), attacker, { jwk: attacker.jwk }));
    await refused(w, await sign(claims(w), w.key, { jwk: w.key.jwk }));
    await refused(w, await sign(claims(w), w.key, { jku: 'https://evil.example/jwks' }));
    await refused(w, await sign(claims(w), w.key, { x5u: 'https://evil.example/cert' }));
  });

  it('missing txn, reason or jti; not exactly one mfa_proxy_action', async () => {
    const w = await tacWorld();
    await refused(w, await challenge(w, { txn: undefined }));
    await refused(w, await challenge(w, { reason: undefined }));
    await refused(w, await challenge(w, { reason: 'r'.repeat(1025) }));
    await refused(w, await challenge(w, { jti: undefined }));
    await refused(w, await challenge(w, { authorization_details: [ACTION, ACTION] }));
    await refused(w, await challenge(w, { authorization_details: [{ ...ACTION, type: 'payment' }] }));
    await refused(w, await challenge(w, { authorization_details: [{ ...ACTION, locations: ['https://x.example'] }] }));
    await refused(w, await challenge(w, { authorization_details: [{ ...ACTION, action: 'Payments Send' }] }));
  });

  it('not a compact JWS at all, or oversized: 400, never 5xx', async () => {
    const w = await tacWorld();
    const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
    const header = b64({ alg: 'ES256', typ: 'txn-authz-challenge+jwt', kid: w.key.jwk.kid });
    for (const jws of ['x', 'a.b.c', `${header}.${b64('not json')}.AAAA`, `${header}.${b64([1, 2])}.AAAA`, `${header}.${b64(claims(w))}`, `${b64('{')}.${b64(claims(w))}.AAAA`, `${header}.${b64(claims(w))}.${'A'.repeat(17_000)}`]) {
      await refused(w, jws);
    }
    expect((await expectStatus(t.http.post(TXN_PATH).auth(w.agent.id, w.agent.clientSecret).send({ transaction_challenge: 42 }), 400)).body).toEqual(oauthError('invalid_request'));
    expect((await expectStatus(txnPost(w, { transaction_authorization_id: 'x'.repeat(5000) }), 400)).body).toEqual(oauthError('invalid_grant'));
  });

  it('an action outside the agent’s permission boundaries is access_denied', async () => {
    const w = await tacWorld();
    await refused(w, await challenge(w, { authorization_details: [{ ...ACTION, action: 'admin:delete' }] }), 'access_denied');
    // After it, a good challenge still works (nothing was spent).
    await expectStatus(txnPost(w, { transaction_challenge: await challenge(w) }), 200);
    expect(await countStepUps(w.userId)).toBe(1);
  });

  it('a refused challenge (too many pending) is not burnt: the same challenge works once the user can take it', async () => {
    const w = await tacWorld();
    const pending = [];
    for (let i = 0; i < 5; i++) pending.push((await expectStatus(t.http.post('/v1/step-ups').set(bearer(w.token)).send({ action: 'files:delete', resource: `drive://${i}` }), 201)).body.id);
    const jws = await challenge(w);
    const full = await txnPost(w, { transaction_challenge: jws });
    expect(full.status).toBe(429);
    expect(full.body.error).toBe('invalid_request');
    expect(await countStepUps(w.userId)).toBe(5);
    await t.http.delete(`/v1/step-ups/${pending[0]}`).set(bearer(w.token)).expect(200);
    await expectStatus(txnPost(w, { transaction_challenge: jws }), 200);
    expect(await countStepUps(w.userId)).toBe(6);
  });
});
