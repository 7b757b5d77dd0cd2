import * as oidc from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { KeysService } from '../src/modules/keys/keys.service.js';
import { startApp, usingPostgres, type TestApp } from './support/app.js';
import { freePort } from './support/browser.js';
import { bearer, createAgent } from './support/fixtures.js';
import { approvalToken, approveWithCode, createStepUp, expectStatus, human, type Human } from './support/step-up.js';
import { webhookReceiver } from './support/webhook-receiver.js';
import { proof, worker } from './support/worker.js';
import { calculateJwkThumbprint, decodeJwt } from 'jose';
import { createHash } from 'node:crypto';

const CIBA = 'urn:openid:params:grant-type:ciba';
const detail = (over: Record<string, unknown> = {}) => JSON.stringify([{ type: 'mfa_proxy_action', action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 }, ...over }]);

let t: TestApp;
let base: string;
beforeAll(async () => {
  // openid-client talks to a real port, and the issuer (PUBLIC_URL) must be where it is served.
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  t = await startApp({ PUBLIC_URL: base, WEBHOOK_RETRY_BASE_MS: '50', WEBHOOK_TIMEOUT_MS: '2000' });
  await t.app.listen({ port, host: '127.0.0.1' });
});
afterAll(async () => {
  await t?.close();
});

type Rx = Awaited<ReturnType<typeof webhookReceiver>>;

/** A human (TOTP + passkey), an agent, and the app's webhook receiver: the approval URL reaches the test as it reaches the app. */
async function humanWithHook(agentBody: Record<string, unknown> = {}): Promise<Human & { rx: Rx }> {
  const rx = await webhookReceiver();
  const h = await human(t, agentBody, base, { approvalUrlToAgent: false });
  await t.http.patch(`/v1/apps/${h.tenant.appId}`).set(bearer(t.adminToken)).send({ webhookUrl: rx.url }).expect(200);
  return { ...h, rx };
}

/** The approval URL of the n-th step_up.created the app received (1-based). */
async function approvalUrlFromApp(rx: Rx, n = 1): Promise<string> {
  await expect.poll(() => rx.received.filter((r) => r.json.type === 'step_up.created').length, { timeout: 10_000 }).toBeGreaterThanOrEqual(n);
  return String(rx.received.filter((r) => r.json.type === 'step_up.created')[n - 1].json.data.approvalUrl);
}

function bcAuthorize(h: Human, form: Record<string, string>, secret = h.agent.clientSecret) {
  return t.http.post('/oauth/bc-authorize').auth(h.agent.id, secret).type('form').send(form);
}

function poll(h: Human, authReqId: string, agent = h.agent) {
  return t.http.post('/oauth/token').auth(agent.id, agent.clientSecret).type('form').send({ grant_type: CIBA, auth_req_id: authReqId });
}

async function stepUpCount(agentId: string): Promise<number> {
  return t.app.get(DataSource).query(`SELECT COUNT(*) AS n FROM step_ups WHERE agent_id = ${usingPostgres() ? '$1' : '?'}`, [agentId]).then((r: { n: string | number }[]) => Number(r[0].n));
}

describe('CIBA with the stock openid-client', () => {
  it('discovery, initiateBackchannelAuthentication, a human approves with TOTP, pollBackchannelAuthenticationGrant: an MFA-proxy token once and a verifiable id_token', async () => {
    const h = await humanWithHook();
    try {
      const config = await oidc.discovery(new URL(base), h.agent.id, h.agent.clientSecret, undefined, { execute: [oidc.allowInsecureRequests] });
      expect(config.serverMetadata().backchannel_authentication_endpoint).toBe(`${base}/oauth/bc-authorize`);
      const started = await oidc.initiateBackchannelAuthentication(config, { scope: 'openid', authorization_details: detail(), binding_message: 'Delete Q3 report', login_hint: h.userId });
      expect(started.auth_req_id.length).toBeGreaterThanOrEqual(27); // ≥ 160 bits in base64url
      expect(started).toMatchObject({ expires_in: expect.any(Number), interval: 5 });

      // The same approval page as POST /v1/step-ups: its data shows the action and the binding message.
      const url = await approvalUrlFromApp(h.rx);
      const page = (await t.http.get(`/v1/approvals/${approvalToken(url)}`).expect(200)).body;
      expect(page).toMatchObject({ action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 }, bindingMessage: 'Delete Q3 report', agent: { id: h.agent.id } });
      await expectStatus(approveWithCode(t, h, url), 200);

      const tokens = await oidc.pollBackchannelAuthenticationGrant(config, started);
      expect(tokens.token_type.toLowerCase()).toBe('bearer');
      expect(tokens.authorization_details).toEqual(JSON.parse(detail()));
      // The ID token, checked against the published keys.
      const { payload, protectedHeader } = await jwtVerify(tokens.id_token!, createRemoteJWKSet(new URL(`${base}/.well-known/jwks.json`)), { issuer: base, audience: h.agent.id });
      expect(protectedHeader.alg).toBe('ES256');
      expect(payload).toMatchObject({ sub: h.userId, acr: 'mfa', amr: expect.arrayContaining(['otp']) });
      expect(typeof payload.auth_time).toBe('number');
      expect(tokens.claims()?.sub).toBe(h.userId);

      // The MFA-proxy token: valid once at the app, then already_used.
      const verify = () => t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send({ token: tokens.access_token, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 } });
      expect((await verify().expect(200)).body).toMatchObject({ valid: true, userId: h.userId, agentId: h.agent.id, action: 'files:delete' });
      expect((await verify().expect(200)).body).toEqual({ valid: false, reason: 'already_used' });
      // Redeemed: the auth_req_id is spent.
      expect((await poll(h, started.auth_req_id).expect(400)).body.error).toBe('invalid_grant');
    } finally {
      await h.rx.close();
    }
  }, 40_000);
});

describe('CIBA polling outcomes', () => {
  it('authorization_pending, then slow_down when polled faster than interval; the step-up is not visible at /v1/step-ups', async () => {
    const h = await humanWithHook();
    try {
      const { auth_req_id, interval } = (await bcAuthorize(h, { authorization_details: detail() }).expect(200)).body;
      expect(interval).toBe(5);
      expect((await poll(h, auth_req_id).expect(400)).body).toEqual({ error: 'authorization_pending', error_description: expect.any(String) });
      expect((await poll(h, auth_req_id).expect(400)).body.error).toBe('slow_down');
      // Neither the agent (with an access token) nor the app reads a CIBA step-up through /v1/step-ups.
      const created = h.rx.received.find((r) => r.json.type === 'step_up.created') ?? (await approvalUrlFromApp(h.rx), h.rx.received.find((r) => r.json.type === 'step_up.created'))!;
      const stepUpId = String(created.json.data.stepUpId);
      expect(created.json.data).toMatchObject({ actorType: 'agent', channel: 'ciba', agentId: h.agent.id });
      await t.http.get(`/v1/step-ups/${stepUpId}`).set(bearer(h.token)).expect(404);
      await t.http.get(`/v1/step-ups/${stepUpId}`).set(bearer(h.tenant.apiKey)).expect(404);
    } finally {
      await h.rx.close();
    }
  });

  it('access_denied after the human denies, on every poll', async () => {
    const h = await humanWithHook();
    try {
      const { auth_req_id } = (await bcAuthorize(h, { authorization_details: detail() }).expect(200)).body;
      const url = await approvalUrlFromApp(h.rx);
      await t.http.post(`/v1/approvals/${approvalToken(url)}/deny`).send({}).expect(200);
      expect((await poll(h, auth_req_id).expect(400)).body.error).toBe('access_denied');
      expect((await poll(h, auth_req_id).expect(400)).body.error).toBe('access_denied');
    } finally {
      await h.rx.close();
    }
  });

  it('expired_token once requested_expiry has passed undecided', async () => {
    const h = await humanWithHook();
    try {
      const { auth_req_id, expires_in } = (await bcAuthorize(h, { authorization_details: detail(), requested_expiry: '60' }).expect(200)).body;
      expect(expires_in).toBe(60);
      t.clock.advance(61_000);
      try {
        expect((await poll(h, auth_req_id).expect(400)).body.error).toBe('expired_token');
      } finally {
        t.clock.reset();
      }
    } finally {
      await h.rx.close();
    }
  });

  it("invalid_grant for another client's auth_req_id (which stays good for its own client) and for an unknown one", async () => {
    const h = await humanWithHook();
    try {
      const other = await createAgent(t, h.tenant, h.userId, { permissionBoundaries: ['files:*'] });
      const { auth_req_id } = (await bcAuthorize(h, { authorization_details: detail() }).expect(200)).body;
      const url = await approvalUrlFromApp(h.rx);
      await expectStatus(approveWithCode(t, h, url), 200);
      expect((await poll(h, auth_req_id, other).expect(400)).body.error).toBe('invalid_grant');
      expect((await poll(h, `${auth_req_id}x`).expect(400)).body.error).toBe('invalid_grant');
      const ok = (await poll(h, auth_req_id).expect(200)).body;
      expect(ok).toMatchObject({ token_type: 'Bearer', expires_in: expect.any(Number), access_token: expect.any(String) });
      expect(ok.id_token).toBeUndefined();
      expect((await poll(h, auth_req_id).expect(400)).body.error).toBe('invalid_grant');
    } finally {
      await h.rx.close();
    }
  });

  it('a scope-only request is a sudo grant: the token holds exactly those scopes for 300 s', async () => {
    const h = await humanWithHook();
    try {
      const { auth_req_id } = (await bcAuthorize(h, { scope: 'files:delete payments:send' }).expect(200)).body;
      const url = await approvalUrlFromApp(h.rx);
      expect((await t.http.get(`/v1/approvals/${approvalToken(url)}`).expect(200)).body).toMatchObject({ action: 'files:delete' });
      await expectStatus(approveWithCode(t, h, url), 200);
      const body = (await poll(h, auth_req_id).expect(200)).body;
      expect(body).toMatchObject({ token_type: 'Bearer', scope: 'files:delete payments:send' });
      expect(body.expires_in).toBeGreaterThan(290);
      const who = (await t.http.get('/v1/whoami').set(bearer(body.access_token)).expect(200)).body;
      expect([...who.scopes].sort()).toEqual(['files:delete', 'payments:send']);
    } finally {
      await h.rx.close();
    }
  });

  it('a DPoP proof on the CIBA grant binds the sudo token to its key (RFC 9449 §5); a bad proof is refused before anything is redeemed', async () => {
    const h = await humanWithHook();
    try {
      const { auth_req_id } = (await bcAuthorize(h, { scope: 'files:delete' }).expect(200)).body;
      await expectStatus(approveWithCode(t, h, await approvalUrlFromApp(h.rx)), 200);
      const key = await worker();
      const grant = (headers: Record<string, string>) =>
        t.http.post('/oauth/token').auth(h.agent.id, h.agent.clientSecret).set(headers).type('form').send({ grant_type: CIBA, auth_req_id });
      // A proof for another URL, then garbage: invalid_dpop_proof, and the approval is still there to redeem.
      expect((await grant({ DPoP: await proof(key, 'POST', '/oauth/bc-authorize', { htu: `${base}/oauth/bc-authorize` }) }).expect(400)).body.error).toBe('invalid_dpop_proof');
      expect((await grant({ DPoP: 'garbage' }).expect(400)).body.error).toBe('invalid_dpop_proof');
      const body = (await grant({ DPoP: await proof(key, 'POST', '/oauth/token', { htu: `${base}/oauth/token` }) }).expect(200)).body;
      expect(body.token_type).toBe('DPoP');
      expect(decodeJwt(body.access_token).cnf).toEqual({ jkt: await calculateJwkThumbprint(key.jwk) });
      // Bound: useless as a Bearer token, good with a proof of the key.
      expect((await t.http.get('/v1/whoami').set(bearer(body.access_token))).status).toBe(401);
      const ath = createHash('sha256').update(body.access_token).digest('base64url');
      const headers = { Authorization: `DPoP ${body.access_token}`, DPoP: await proof(key, 'GET', '/v1/whoami', { htu: `${base}/v1/whoami`, ath }) };
      expect((await t.http.get('/v1/whoami').set(headers).expect(200)).body.scopes).toEqual(['files:delete']);
    } finally {
      await h.rx.close();
    }
  });

  it('N parallel redemptions of one approved auth_req_id: exactly one token', async () => {
    const h = await humanWithHook();
    try {
      const { auth_req_id } = (await bcAuthorize(h, { authorization_details: detail() }).expect(200)).body;
      await expectStatus(approveWithCode(t, h, await approvalUrlFromApp(h.rx)), 200);
      const results = await Promise.all(Array.from({ length: 12 }, () => poll(h, auth_req_id)));
      expect(results.filter((r) => r.status === 200)).toHaveLength(1);
      expect(results.filter((r) => r.status === 400).map((r) => r.body.error)).toEqual(Array(11).fill('invalid_grant'));
    } finally {
      await h.rx.close();
    }
  });

  it('an ID token that cannot be signed spends nothing: that poll fails, the next one gets the token and the ID token', async () => {
    const h = await humanWithHook();
    const keys = t.app.get(KeysService);
    const sign = keys.sign.bind(keys);
    // Only the ID token's signature fails (typ JWT), once: the MFA-proxy token is signed as usual.
    let failed = 0;
    const spy = vi.spyOn(keys, 'sign').mockImplementation((payload, typ) => (typ === 'JWT' && failed++ === 0 ? Promise.reject(new Error('signing unavailable')) : sign(payload, typ)));
    try {
      const { auth_req_id } = (await bcAuthorize(h, { scope: 'openid', authorization_details: detail() }).expect(200)).body;
      await expectStatus(approveWithCode(t, h, await approvalUrlFromApp(h.rx)), 200);
      expect((await poll(h, auth_req_id)).status).toBe(500);
      expect(failed).toBe(1);
      const ok = (await poll(h, auth_req_id).expect(200)).body;
      expect(decodeJwt(ok.id_token)).toMatchObject({ sub: h.userId, aud: h.agent.id, acr: 'mfa' });
      const verify = (await t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send({ token: ok.access_token, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 } }).expect(200)).body;
      expect(verify).toMatchObject({ valid: true, userId: h.userId });
      expect((await poll(h, auth_req_id).expect(400)).body.error).toBe('invalid_grant');
    } finally {
      spy.mockRestore();
      await h.rx.close();
    }
  });
});

describe('bc-authorize refusals (nothing is created)', () => {
  it('unknown_user_id, access_denied, invalid_binding_message, invalid_request, invalid_scope, invalid_client', async () => {
    const h = await humanWithHook();
    try {
      const error = async (form: Record<string, string>, status: number, code: string, secret?: string) => {
        const res = await bcAuthorize(h, form, secret);
        expect(res.status, JSON.stringify(res.body)).toBe(status);
        expect(res.body).toEqual({ error: code, error_description: expect.any(String) });
      };
      await error({ authorization_details: detail(), login_hint: 'someone-else' }, 400, 'unknown_user_id');
      await error({ authorization_details: detail(), login_hint: 'usr_0000000000000000000000' }, 400, 'unknown_user_id');
      await error({ authorization_details: detail({ action: 'admin:delete' }) }, 403, 'access_denied');
      await error({ authorization_details: detail(), binding_message: 'x'.repeat(65) }, 400, 'invalid_binding_message');
      await error({ authorization_details: detail(), binding_message: 'line\nbreak' }, 400, 'invalid_binding_message');
      for (const bad of ['not json', '[]', '{}', JSON.stringify([{ type: 'other', action: 'files:delete' }]), JSON.stringify([{ type: 'mfa_proxy_action', action: 'FILES' }]), JSON.stringify([{ type: 'mfa_proxy_action', action: 'files:delete', extra: 1 }]), '[{"type":"mfa_proxy_action","action":"files:delete","action":"files:read"}]', JSON.stringify([{ type: 'mfa_proxy_action', action: 'files:delete', details: [] }]), JSON.stringify([JSON.parse(detail())[0], JSON.parse(detail())[0]])]) {
        await error({ authorization_details: bad }, 400, 'invalid_request');
      }
      await error({ scope: 'openid' }, 400, 'invalid_request');
      await error({ authorization_details: detail(), scope: 'files:read' }, 400, 'invalid_request');
      await error({ authorization_details: detail(), requested_expiry: '30' }, 400, 'invalid_request');
      await error({ scope: 'admin:all' }, 400, 'invalid_scope');
      await error({ authorization_details: detail() }, 401, 'invalid_client', 'wrong-secret');
      expect(await stepUpCount(h.agent.id)).toBe(0);
      // The user's own id and externalId are accepted as login_hint.
      await bcAuthorize(h, { authorization_details: detail(), login_hint: h.userId }).expect(200);
      expect(await stepUpCount(h.agent.id)).toBe(1);
    } finally {
      await h.rx.close();
    }
  });

  it('the pending cap (5 per user) counts CIBA step-ups with /v1/step-ups ones', async () => {
    const h = await humanWithHook();
    try {
      for (let i = 0; i < 3; i++) await createStepUp(t, h, { action: `files:op${i}` }).expect(201);
      for (let i = 3; i < 5; i++) await bcAuthorize(h, { authorization_details: detail({ action: `files:op${i}` }) }).expect(200);
      const ciba = await bcAuthorize(h, { authorization_details: detail({ action: 'files:op5' }) });
      expect(ciba.status).toBe(429);
      expect(ciba.body.error).toBeDefined();
      expect(ciba.headers['retry-after']).toBeDefined();
      expect((await createStepUp(t, h, { action: 'files:op6' }).expect(429)).body.code).toBe('too_many_pending');
      // An identical request still pending is the same step-up (dedupe): the same auth_req_id, no new push.
      const first = (await bcAuthorize(h, { authorization_details: detail({ action: 'files:op3' }) }).expect(200)).body;
      const again = (await bcAuthorize(h, { authorization_details: detail({ action: 'files:op3' }) }).expect(200)).body;
      expect(again.auth_req_id).toBe(first.auth_req_id);
      expect(await stepUpCount(h.agent.id)).toBe(5);
    } finally {
      await h.rx.close();
    }
  });
});

describe('CIBA ping mode', () => {
  it('the agent’s endpoint gets { auth_req_id } with the Bearer client_notification_token once the step-up is decided, from the outbox', async () => {
    const ping = await webhookReceiver({ failFirst: 1 });
    const h = await humanWithHook({ cibaNotificationEndpoint: ping.url });
    try {
      expect((await t.http.get(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).expect(200)).body.cibaNotificationEndpoint).toBe(ping.url);
      const { auth_req_id } = (await bcAuthorize(h, { authorization_details: detail(), client_notification_token: 'client-chosen-token-123' }).expect(200)).body;
      await new Promise((r) => setTimeout(r, 300));
      expect(ping.received).toHaveLength(0); // nothing before the decision
      await expectStatus(approveWithCode(t, h, await approvalUrlFromApp(h.rx)), 200);
      // The first attempt is answered 500: the ping is retried.
      await expect.poll(() => ping.received.length, { timeout: 10_000 }).toBe(1);
      expect(ping.attempts.length).toBeGreaterThanOrEqual(2);
      expect(JSON.parse(ping.received[0].body)).toEqual({ auth_req_id });
      expect(ping.received[0].headers.authorization).toBe('Bearer client-chosen-token-123');
      // The app's webhook never carries the ping (nor its token).
      expect(h.rx.received.some((r) => r.json.type === 'ciba.ping' || r.body.includes('client-chosen-token-123'))).toBe(false);
      expect((await poll(h, auth_req_id).expect(200)).body.access_token).toEqual(expect.any(String));
    } finally {
      await ping.close();
      await h.rx.close();
    }
  });

  it('an endpoint the SSRF rules refuse is refused at registration with 400', async () => {
    const strict = await startApp({ WEBHOOK_ALLOW_PRIVATE: 'false' });
    try {
      const h = await human(strict);
      for (const url of ['https://10.0.0.5/ping', 'https://127.0.0.1/ping', 'https://localhost/ping', 'http://example.com/ping', 'https://[::1]/ping', 'not a url']) {
        const res = await strict.http.post('/v1/agents').set(bearer(h.tenant.apiKey)).send({ userId: h.userId, name: 'x', model: 'm', permissionBoundaries: ['files:*'], cibaNotificationEndpoint: url });
        expect(res.status, url).toBe(400);
        expect(res.body.code).toBe('validation_failed');
        await strict.http.patch(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).send({ cibaNotificationEndpoint: url }).expect(400);
      }
      await strict.http.patch(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).send({ cibaNotificationEndpoint: 'https://agent.example.com/ciba' }).expect(200);
      // Even where private addresses are allowed, plain http only to loopback.
      const h2 = await human(t, {}, base);
      await t.http.patch(`/v1/agents/${h2.agent.id}`).set(bearer(h2.tenant.apiKey)).send({ cibaNotificationEndpoint: 'http://192.168.1.10/ping' }).expect(400);
    } finally {
      await strict.close();
    }
  });
});
