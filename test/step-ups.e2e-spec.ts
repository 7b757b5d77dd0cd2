import { decodeJwt, decodeProtectedHeader } from 'jose';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AuditService } from '../src/modules/audit/audit.service.js';
import { OutboxService } from '../src/modules/events/outbox.service.js';
import { StepUpDecisions } from '../src/modules/step-ups/step-up-decisions.js';
import { PUBLIC_URL, startApp, type TestApp } from './support/app.js';
import { bearer, createAgent, createUser, agentToken } from './support/fixtures.js';
import { approvalToken, approveWithCode, approveWithPasskey, createStepUp, expectStatus, human, type Human } from './support/step-up.js';
import { totpCode } from './support/totp.js';

let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

const get = (h: Human, id: string, query = '') => t.http.get(`/v1/step-ups/${id}${query}`).set(bearer(h.token));
const verify = (h: Human, body: Record<string, unknown>) => t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send(body).expect(200);

/** The app's event types in stream order, once all of them are published. */
async function streamedTypes(ds: DataSource, appId: string): Promise<string[]> {
  let rows: { type: string; seq: string | number | null }[] = [];
  await vi.waitFor(async () => {
    rows = await ds.createQueryBuilder().select(['o.type AS type', 'o.stream_seq AS seq']).from('outbox', 'o').where('o.app_id = :a', { a: appId }).getRawMany();
    expect(rows.every((r) => r.seq !== null)).toBe(true);
  });
  return rows.sort((x, y) => Number(x.seq) - Number(y.seq)).map((r) => r.type);
}

describe('the full flow', () => {
  it('create → approve with passkey → fetch token once → verify valid → verify again already_used', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h, { bindingMessage: 'Delete the Q3 report' }).expect(201);
    expect(created.body).toEqual({
      id: expect.stringMatching(/^stp_/),
      status: 'pending',
      action: 'files:delete',
      resource: 'drive://q3.pdf',
      detailsHash: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      bindingCode: expect.stringMatching(/^[A-Z2-9]{6}$/),
      approvalUrl: expect.stringMatching(new RegExp(`^${PUBLIC_URL}/approve/mpx_apr_`)),
      expiresAt: expect.any(String),
      interval: 5,
    });

    const lookup = await t.http.get(`/v1/approvals/${approvalToken(created.body.approvalUrl)}`).expect(200);
    expect(lookup.body).toMatchObject({
      id: created.body.id, status: 'pending', app: { name: expect.any(String) }, agent: { id: h.agent.id, name: 'research-bot', model: 'claude-test-1' },
      action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 }, bindingMessage: 'Delete the Q3 report', bindingCode: created.body.bindingCode, methods: ['webauthn', 'totp'],
    });

    expect((await approveWithPasskey(t, h, created.body.approvalUrl)).body).toEqual({ status: 'approved' });

    const first = await get(h, created.body.id).expect(200);
    expect(first.body).toMatchObject({ status: 'approved', method: 'webauthn', decidedAt: expect.any(String), mfaProxyToken: expect.any(String) });
    const second = await get(h, created.body.id).expect(200);
    expect(second.body.mfaProxyToken).toBeUndefined();
    expect(second.body.tokenIssued).toBe(true);

    const token = first.body.mfaProxyToken;
    expect(decodeProtectedHeader(token)).toMatchObject({ typ: 'mfa-proxy+jwt', alg: 'ES256', kid: expect.any(String) });
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({
      iss: PUBLIC_URL, aud: h.tenant.appId, sub: h.userId, client_id: h.agent.id, act: { sub: h.agent.id },
      amr: ['hwk', 'user'], step_up_id: created.body.id, action: 'files:delete', resource: 'drive://q3.pdf',
      details_hash: created.body.detailsHash, model: 'claude-test-1', auth_time: expect.any(Number),
    });
    expect(claims.exp! - claims.iat!).toBe(120);

    const body = { token, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 }, agentId: h.agent.id };
    const ok = await verify(h, body);
    expect(ok.body).toEqual({
      valid: true, stepUpId: created.body.id, userId: h.userId, agentId: h.agent.id, model: 'claude-test-1', taskId: null,
      action: 'files:delete', resource: 'drive://q3.pdf', detailsHash: created.body.detailsHash, method: 'webauthn', approvedAt: expect.any(String),
    });
    expect((await verify(h, body)).body).toEqual({ valid: false, reason: 'already_used' });
  });

  it('the same with TOTP', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h, { methods: ['totp'] }).expect(201);
    expect((await expectStatus(approveWithCode(t, h, created.body.approvalUrl), 200)).body).toEqual({ status: 'approved' });
    const fetched = await get(h, created.body.id).expect(200);
    expect(fetched.body.method).toBe('totp');
    expect(decodeJwt(fetched.body.mfaProxyToken).amr).toEqual(['otp']);
    const body = { token: fetched.body.mfaProxyToken, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 } };
    expect((await verify(h, body)).body.valid).toBe(true);
    expect((await verify(h, body)).body).toEqual({ valid: false, reason: 'already_used' });
  });

  it('deny', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h).expect(201);
    const token = approvalToken(created.body.approvalUrl);
    expect((await t.http.post(`/v1/approvals/${token}/deny`).send({}).expect(200)).body).toEqual({ status: 'denied' });
    const res = await get(h, created.body.id).expect(200);
    expect(res.body).toMatchObject({ status: 'denied', reason: 'denied_by_user' });
    expect(res.body.mfaProxyToken).toBeUndefined();
    const again = await expectStatus(approveWithCode(t, h, created.body.approvalUrl), 409);
    expect(again.body.code).toBe('not_pending');
  });

  it('cancel', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h).expect(201);
    expect((await t.http.delete(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(200)).body).toEqual({ status: 'cancelled' });
    expect((await get(h, created.body.id).expect(200)).body.status).toBe('cancelled');
    expect((await t.http.delete(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(409)).body.code).toBe('not_pending');
    expect((await expectStatus(approveWithCode(t, h, created.body.approvalUrl), 409)).body.code).toBe('not_pending');
  });

  it('expiry: expiresIn 60, then 410 expired and status expired', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h, { expiresIn: 60 }).expect(201);
    t.clock.advance(61_000);
    try {
      const res = await expectStatus(approveWithCode(t, h, created.body.approvalUrl, await totpCode(h.totpSecret, t.clock.now())), 410);
      expect(res.body).toMatchObject({ status: 410, code: 'expired' });
      expect((await get(h, created.body.id).expect(200)).body.status).toBe('expired');
    } finally {
      t.clock.reset();
    }
  });

  it('the background sweeper expires step-ups nobody reads', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h, { expiresIn: 60 }).expect(201);
    t.clock.advance(61_000);
    try {
      const { StepUpsService } = await import('../src/modules/step-ups/step-ups.service.js');
      // A sweep decides 100 at a time: on a database reused across runs, older expired step-ups may come first.
      let swept = 0;
      for (let n = await t.app.get(StepUpsService).sweep(); n > 0; n = await t.app.get(StepUpsService).sweep()) swept += n;
      expect(swept).toBeGreaterThanOrEqual(1);
      const { StepUpsRepository } = await import('../src/modules/step-ups/step-ups.repository.js');
      expect((await t.app.get(StepUpsRepository).find(h.tenant.appId, created.body.id))?.status).toBe('expired');
    } finally {
      t.clock.reset();
    }
  });

  it('a sudo grant used on an agent endpoint', async () => {
    const h = await human(t, { permissionBoundaries: ['research:read', 'payments:send'] });
    const token = await agentToken(t, h.agent, { scope: 'research:read' });
    // The action is within the calling token's scope (API.md v1.1); the grant adds payments:send within the boundaries.
    const created = await t.http.post('/v1/step-ups').set(bearer(token)).send({ action: 'research:read', grant: { type: 'sudo', scopes: ['payments:send'], duration: 120 } }).expect(201);
    await expectStatus(approveWithPasskey(t, h, created.body.approvalUrl), 200);
    const res = await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(token)).expect(200);
    expect(res.body).toMatchObject({ status: 'approved', sudoToken: expect.any(String), sudoExpiresAt: expect.any(String) });
    const claims = decodeJwt(res.body.sudoToken);
    expect(claims).toMatchObject({ acr: 'mfa', step_up_id: created.body.id, auth_time: expect.any(Number), scope: 'research:read payments:send' });
    expect(claims.exp! - claims.iat!).toBeLessThanOrEqual(120);
    const who = await t.http.get('/v1/whoami').set(bearer(res.body.sudoToken)).expect(200);
    expect(who.body).toMatchObject({ scopes: ['research:read', 'payments:send'], acr: 'mfa', stepUpId: created.body.id });
    // Handed out once.
    expect((await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(token)).expect(200)).body).toMatchObject({ tokenIssued: true });
    // A sudo scope outside the boundaries is refused.
    const outside = await t.http.post('/v1/step-ups').set(bearer(token)).send({ action: 'research:read', grant: { type: 'sudo', scopes: ['admin:all'] } }).expect(403);
    expect(outside.body.code).toBe('action_not_permitted');
  });
});

describe('WebAuthn approvals bind the exact request', () => {
  it('challenges of two step-ups differ, and an assertion for one is refused on the other', async () => {
    const h = await human(t);
    const a = await createStepUp(t, h, { action: 'files:delete' }).expect(201);
    const b = await createStepUp(t, h, { action: 'files:share' }).expect(201);
    const optsA = (await t.http.post(`/v1/approvals/${approvalToken(a.body.approvalUrl)}/webauthn/options`).send({}).expect(200)).body;
    const optsB = (await t.http.post(`/v1/approvals/${approvalToken(b.body.approvalUrl)}/webauthn/options`).send({}).expect(200)).body;
    expect(optsA.challenge).not.toBe(optsB.challenge);
    expect(optsA).toMatchObject({ userVerification: 'required', allowCredentials: [expect.objectContaining({ id: [...h.authenticator.credentials.keys()][0] })] });
    const assertionA = await h.authenticator.assert(optsA);
    const res = await t.http.post(`/v1/approvals/${approvalToken(b.body.approvalUrl)}/webauthn/verify`).send({ response: assertionA }).expect(400);
    expect(res.body.code).toBe('webauthn_verification_failed');
    expect((await get(h, b.body.id).expect(200)).body.status).toBe('pending');
  });

  it('refuses assertion replay, another user’s credential, counter regression and UV off', async () => {
    const h = await human(t);
    const other = await human(t);
    const tokenOf = (url: string) => approvalToken(url);

    // Replay: a good assertion approves once; the same assertion on fresh options is refused.
    const s1 = await createStepUp(t, h, { resource: 'r1' }).expect(201);
    const opts1 = (await t.http.post(`/v1/approvals/${tokenOf(s1.body.approvalUrl)}/webauthn/options`).send({}).expect(200)).body;
    const good = await h.authenticator.assert(opts1);
    await t.http.post(`/v1/approvals/${tokenOf(s1.body.approvalUrl)}/webauthn/verify`).send({ response: good }).expect(200);
    const s2 = await createStepUp(t, h, { resource: 'r2' }).expect(201);
    await t.http.post(`/v1/approvals/${tokenOf(s2.body.approvalUrl)}/webauthn/options`).send({}).expect(200);
    expect((await t.http.post(`/v1/approvals/${tokenOf(s2.body.approvalUrl)}/webauthn/verify`).send({ response: good }).expect(400)).body.code).toBe('webauthn_verification_failed');

    // Another user's credential, even with the right challenge.
    const opts2 = (await t.http.post(`/v1/approvals/${tokenOf(s2.body.approvalUrl)}/webauthn/options`).send({}).expect(200)).body;
    const foreign = await other.authenticator.assert(opts2, { credential: [...other.authenticator.credentials.keys()][0] });
    expect((await t.http.post(`/v1/approvals/${tokenOf(s2.body.approvalUrl)}/webauthn/verify`).send({ response: foreign }).expect(400)).body.code).toBe('webauthn_verification_failed');

    // Counter gone backwards (the last accepted counter was 1).
    const opts3 = (await t.http.post(`/v1/approvals/${tokenOf(s2.body.approvalUrl)}/webauthn/options`).send({}).expect(200)).body;
    const regressed = await h.authenticator.assert(opts3, { counter: 1 });
    expect((await t.http.post(`/v1/approvals/${tokenOf(s2.body.approvalUrl)}/webauthn/verify`).send({ response: regressed }).expect(400)).body.code).toBe('webauthn_verification_failed');

    // UV off.
    const opts4 = (await t.http.post(`/v1/approvals/${tokenOf(s2.body.approvalUrl)}/webauthn/options`).send({}).expect(200)).body;
    const noUv = await h.authenticator.assert(opts4, { userVerified: false, counter: 50 });
    expect((await t.http.post(`/v1/approvals/${tokenOf(s2.body.approvalUrl)}/webauthn/verify`).send({ response: noUv }).expect(400)).body.code).toBe('webauthn_verification_failed');

    expect((await get(h, s2.body.id).expect(200)).body.status).toBe('pending');
    // And the genuine next assertion still works (control).
    const opts5 = (await t.http.post(`/v1/approvals/${tokenOf(s2.body.approvalUrl)}/webauthn/options`).send({}).expect(200)).body;
    await t.http.post(`/v1/approvals/${tokenOf(s2.body.approvalUrl)}/webauthn/verify`).send({ response: await h.authenticator.assert(opts5, { counter: 51 }) }).expect(200);
  });
});

describe('TOTP approvals', () => {
  it('refuses the same code twice', async () => {
    const h = await human(t);
    const a = await createStepUp(t, h, { resource: 'a' }).expect(201);
    const b = await createStepUp(t, h, { resource: 'b' }).expect(201);
    const code = await totpCode(h.totpSecret);
    await expectStatus(approveWithCode(t, h, a.body.approvalUrl, code), 200);
    const res = await expectStatus(approveWithCode(t, h, b.body.approvalUrl, code), 400);
    expect(res.body).toMatchObject({ code: 'invalid_code', attemptsRemaining: 4 });
  });

  it('20 parallel submissions of one valid code → exactly one approval', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h).expect(201);
    const code = await totpCode(h.totpSecret);
    const results = await Promise.all(Array.from({ length: 20 }, () => approveWithCode(t, h, created.body.approvalUrl, code)));
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.every((s) => s === 200 || s === 409 || s === 400)).toBe(true);
    expect((await get(h, created.body.id).expect(200)).body.status).toBe('approved');
  });

  it('5 wrong codes → denied, too_many_attempts', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h).expect(201);
    const right = await totpCode(h.totpSecret);
    const wrong = String((Number(right) + 500_000) % 1_000_000).padStart(6, '0');
    for (let i = 4; i >= 0; i--) {
      const res = await expectStatus(approveWithCode(t, h, created.body.approvalUrl, wrong), 400);
      expect(res.body).toMatchObject({ code: 'invalid_code', attemptsRemaining: i });
    }
    const res = await get(h, created.body.id).expect(200);
    expect(res.body).toMatchObject({ status: 'denied', reason: 'too_many_attempts' });
    expect((await expectStatus(approveWithCode(t, h, created.body.approvalUrl, right), 409)).body.code).toBe('not_pending');
  });
});

describe('verify', () => {
  async function approvedToken(h: Human, body: Record<string, unknown> = {}) {
    const created = await createStepUp(t, h, body).expect(201);
    await expectStatus(approveWithPasskey(t, h, created.body.approvalUrl), 200);
    return (await get(h, created.body.id).expect(200)).body.mfaProxyToken as string;
  }

  it('50 concurrent verifications of one token → exactly one valid (several rounds)', async () => {
    const h = await human(t);
    for (let round = 0; round < 3; round++) {
      const token = await approvedToken(h, { resource: `round-${round}` });
      const results = await Promise.all(
        Array.from({ length: 50 }, () => t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send({ token, action: 'files:delete', resource: `round-${round}`, details: { size: 42 } })),
      );
      expect(results.every((r) => r.status === 200)).toBe(true);
      expect(results.filter((r) => r.body.valid === true)).toHaveLength(1);
      expect(results.filter((r) => r.body.reason === 'already_used')).toHaveLength(49);
    }
  });

  it('concurrent verifications of different tokens (several apps) are each decided once, each audited under its own request', async () => {
    const humans = await Promise.all(Array.from({ length: 4 }, () => human(t)));
    const tokens = await Promise.all(humans.map((h) => approvedToken(h)));
    // Every token twice, all at once: they are consumed together (group commit) and must not mix.
    const asks = humans.flatMap((h, i) => [0, 1].map((n) => ({ h, i, requestId: `verify-${i}-${n}-${Date.now()}` })));
    const results = await Promise.all(
      asks.map((a) =>
        t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(a.h.tenant.apiKey)).set('X-Request-Id', a.requestId).send({ token: tokens[a.i], action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 } }),
      ),
    );
    for (const [i, h] of humans.entries()) {
      const mine = results.filter((_, k) => asks[k].i === i);
      const valid = mine.filter((r) => r.body.valid === true);
      expect(valid).toHaveLength(1);
      expect(valid[0].body).toMatchObject({ agentId: h.agent.id, userId: h.userId, action: 'files:delete' });
      expect(mine.filter((r) => r.body.reason === 'already_used')).toHaveLength(1);
      const winner = asks[results.indexOf(valid[0])].requestId;
      const events = (await t.http.get('/v1/audit-events?type=mfa_proxy_token.consumed').set(bearer(h.tenant.apiKey)).expect(200)).body.events;
      expect(events).toEqual([expect.objectContaining({ requestId: winner, agentId: h.agent.id, userId: h.userId, outcome: 'success' })]);
    }
  });

  it('each mismatch reason, and a mismatch does not consume', async () => {
    const h = await human(t);
    const token = await approvedToken(h, { details: { size: 42, path: '/q3.pdf' } });
    const base = { token, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42, path: '/q3.pdf' } };
    expect((await verify(h, { ...base, action: 'files:share' })).body).toEqual({ valid: false, reason: 'action_mismatch' });
    expect((await verify(h, { ...base, resource: 'drive://other.pdf' })).body).toEqual({ valid: false, reason: 'resource_mismatch' });
    expect((await verify(h, { ...base, details: { size: 43, path: '/q3.pdf' } })).body).toEqual({ valid: false, reason: 'details_mismatch' });
    expect((await verify(h, { ...base, details: undefined })).body).toEqual({ valid: false, reason: 'details_mismatch' });
    expect((await verify(h, { ...base, agentId: 'agt_AAAAAAAAAAAAAAAAAAAAAA' })).body).toEqual({ valid: false, reason: 'agent_mismatch' });
    // RFC 8785 canonical JSON: the same details in another key order match, and consume the token.
    expect((await verify(h, { ...base, details: { path: '/q3.pdf', size: 42 } })).body.valid).toBe(true);
  });

  it('app B verifying app A’s token → wrong_audience; an agent token → not valid; expired → expired', async () => {
    const h = await human(t);
    const other = await human(t);
    const token = await approvedToken(h);
    const base = { token, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 } };
    expect((await verify(other, base)).body).toEqual({ valid: false, reason: 'wrong_audience' });
    // An agent token is not an MFA-proxy token: refused at its `typ`, before any signature check.
    expect((await verify(h, { ...base, token: h.token })).body).toEqual({ valid: false, reason: 'malformed' });
    expect((await verify(h, { ...base, token: 'a.b.c' })).body).toEqual({ valid: false, reason: 'malformed' });
    t.clock.advance(121_000);
    try {
      expect((await verify(h, base)).body).toEqual({ valid: false, reason: 'expired' });
    } finally {
      t.clock.reset();
    }
    // Still not consumed by any of the above.
    expect((await verify(h, base)).body.valid).toBe(true);
  });

  it('a token of a since-revoked agent → revoked', async () => {
    const h = await human(t);
    const token = await approvedToken(h);
    await t.http.patch(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).send({ status: 'suspended' }).expect(200);
    expect((await verify(h, { token, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 } })).body).toEqual({ valid: false, reason: 'revoked' });
  });
});

describe('boundaries, factors, caps, idempotency, dedupe', () => {
  it('an action outside the boundaries → 403, nothing pushed', async () => {
    const h = await human(t);
    const res = await createStepUp(t, h, { action: 'admin:delete_everything' }).expect(403);
    expect(res.body.code).toBe('action_not_permitted');
    const { DataSource } = await import('typeorm');
    const rows = await t.app.get(DataSource).createQueryBuilder().select('COUNT(*)', 'n').from('outbox', 'o').where('o.app_id = :a', { a: h.tenant.appId }).getRawOne();
    expect(Number(rows.n)).toBe(0);
  });

  it('no factor → 409 no_enrolled_factor', async () => {
    const h = await human(t);
    const bare = await createUser(t, h.tenant);
    const agent = await createAgent(t, h.tenant, bare);
    const res = await t.http.post('/v1/step-ups').set(bearer(await agentToken(t, agent))).send({ action: 'files:delete' }).expect(409);
    expect(res.body.code).toBe('no_enrolled_factor');
  });

  it('pending cap → 429 too_many_pending with Retry-After', async () => {
    const h = await human(t);
    for (let i = 0; i < 5; i++) await createStepUp(t, h, { resource: `r${i}` }).expect(201);
    const res = await createStepUp(t, h, { resource: 'r5' }).expect(429);
    expect(res.body.code).toBe('too_many_pending');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('idempotency: replay returns the same step-up; another body → 422', async () => {
    const h = await human(t);
    const first = await createStepUp(t, h).set('Idempotency-Key', 'k-1').expect(201);
    const replay = await createStepUp(t, h).set('Idempotency-Key', 'k-1').expect(200);
    expect(replay.body).toEqual(first.body);
    const reuse = await createStepUp(t, h, { resource: 'other' }).set('Idempotency-Key', 'k-1').expect(422);
    expect(reuse.body.code).toBe('idempotency_key_reuse');
  });

  it('identical pending request → 200 with the same step-up, nothing new pushed', async () => {
    const h = await human(t);
    const first = await createStepUp(t, h).expect(201);
    const again = await createStepUp(t, h).expect(200);
    expect(again.body.id).toBe(first.body.id);
    const different = await createStepUp(t, h, { details: { size: 43 } }).expect(201);
    expect(different.body.id).not.toBe(first.body.id);
  });

  it('only the requesting agent sees its step-up; wait long-polls until the decision', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h).expect(201);
    const stranger = await createAgent(t, h.tenant, h.userId);
    await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(await agentToken(t, stranger))).expect(404);
    const started = Date.now();
    const poll = get(h, created.body.id, '?wait=10');
    await new Promise((r) => setTimeout(r, 300));
    await expectStatus(approveWithCode(t, h, created.body.approvalUrl), 200);
    const res = await poll.expect(200);
    expect(res.body.status).toBe('approved');
    expect(res.body.mfaProxyToken).toEqual(expect.any(String));
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('a decision that lands between the long-poll\'s read and its wait still ends the wait at once', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h).expect(201);
    const decisions = t.app.get(StepUpDecisions);
    const expireIfDue = decisions.expireIfDue.bind(decisions);
    // The decision commits (and its wake-up is sent) right after the long-poll has read the step-up as pending.
    decisions.expireIfDue = async (s) => {
      decisions.expireIfDue = expireIfDue;
      await decisions.decide(s, 'denied', { reason: 'denied' });
      return s;
    };
    const started = Date.now();
    try {
      const res = await get(h, created.body.id, '?wait=10').expect(200);
      expect(res.body.status).toBe('denied');
    } finally {
      decisions.expireIfDue = expireIfDue;
    }
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('polling faster than interval without wait → 429 slow_down', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h).expect(201);
    await get(h, created.body.id).expect(200);
    const res = await get(h, created.body.id).expect(429);
    expect(res.body.code).toBe('slow_down');
    expect(res.headers['retry-after']).toBe('5');
  });

  it('bad input → 400 and nothing created', async () => {
    const h = await human(t);
    for (const body of [
      { action: 'files:delete', expiresIn: 30 },
      { action: 'files:delete', expiresIn: 901 },
      { action: 'files:delete', methods: ['sms'] },
      { action: 'files:delete', bindingMessage: 'x'.repeat(65) },
      { action: 'files:delete', details: 'not-an-object' },
      { action: 'files:delete', details: { big: 'x'.repeat(9000) } },
      { action: 'files:delete', grant: { type: 'sudo' } },
      { action: 'files:delete', grant: { type: 'sudo', scopes: ['files:read'], duration: 5000 } },
      { action: 'FILES' },
      {},
    ]) {
      const res = await t.http.post('/v1/step-ups').set(bearer(h.token)).send(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.code).toBe('validation_failed');
    }
  });
});

describe('approval tokens and the records of a decision', () => {
  it('an unknown approval token is 404 on every approval endpoint', async () => {
    for (const token of ['mpx_apr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'nope']) {
      for (const res of [
        await t.http.get(`/v1/approvals/${token}`),
        await t.http.post(`/v1/approvals/${token}/webauthn/options`).send({}),
        await t.http.post(`/v1/approvals/${token}/webauthn/verify`).send({ response: {} }),
        await t.http.post(`/v1/approvals/${token}/totp`).send({ code: '123456' }),
        await t.http.post(`/v1/approvals/${token}/deny`).send({}),
      ]) {
        expect(res.status).toBe(404);
        expect(res.body.code).toBe('not_found');
      }
      expect((await t.http.get(`/approve/${token}`)).status).toBe(404);
    }
  });

  it('another app’s agent cannot read, cancel or verify anything of this step-up', async () => {
    const h = await human(t);
    const other = await human(t);
    const created = await createStepUp(t, h).expect(201);
    await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(other.token)).expect(404);
    await t.http.delete(`/v1/step-ups/${created.body.id}`).set(bearer(other.token)).expect(404);
    expect((await get(h, created.body.id).expect(200)).body.status).toBe('pending');
  });

  it('the decision, its audit event and its outbox event are written together, once', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h).expect(201);
    await expectStatus(approveWithCode(t, h, created.body.approvalUrl), 200);
    const { DataSource } = await import('typeorm');
    const ds = t.app.get(DataSource);
    const outbox = await ds.createQueryBuilder().select(['o.type AS type', 'o.payload AS payload']).from('outbox', 'o').where('o.app_id = :a', { a: h.tenant.appId }).orderBy('o.created_at').getRawMany();
    expect(outbox.map((o) => o.type)).toEqual(['step_up.created', 'step_up.approved']);
    // The approval URL (the human's capability) is sealed at rest; only delivery opens it.
    expect(outbox[0].payload).not.toContain(approvalToken(created.body.approvalUrl));
    const { OutboxService } = await import('../src/modules/events/outbox.service.js');
    expect(t.app.get(OutboxService).deliverable({ payload: JSON.parse(outbox[0].payload) } as never).data.approvalUrl).toBe(created.body.approvalUrl);
    const audit = await ds.createQueryBuilder().select(['e.type AS type', 'e.model AS model', 'e.agent_id AS agent_id']).from('audit_events', 'e').where('e.app_id = :a', { a: h.tenant.appId }).getRawMany();
    expect(audit.filter((e) => e.type === 'step_up.approved')).toEqual([{ type: 'step_up.approved', model: 'claude-test-1', agent_id: h.agent.id }]);
    // A second approval attempt changes nothing.
    await t.http.post(`/v1/approvals/${approvalToken(created.body.approvalUrl)}/deny`).send({}).expect(409);
    const after = await ds.createQueryBuilder().select('COUNT(*)', 'n').from('outbox', 'o').where('o.app_id = :a', { a: h.tenant.appId }).getRawOne();
    expect(Number(after.n)).toBe(2);
  });

  it('revoking the agent or deleting the user cancels pending step-ups, with their events', async () => {
    const { DataSource } = await import('typeorm');
    const types = async (appId: string) =>
      (await t.app.get(DataSource).createQueryBuilder().select('o.type', 'type').from('outbox', 'o').where('o.app_id = :a', { a: appId }).orderBy('o.created_at').getRawMany()).map((o) => o.type);
    const h = await human(t);
    const created = await createStepUp(t, h).expect(201);
    await t.http.delete(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).expect(204);
    const res = await t.http.post(`/v1/approvals/${approvalToken(created.body.approvalUrl)}/deny`).send({}).expect(409);
    expect(res.body.code).toBe('not_pending');
    // The revocation and the cancellation are written in one transaction, often in one
    // millisecond: the event stream carries them in the order they were written.
    expect(await streamedTypes(t.app.get(DataSource), h.tenant.appId)).toEqual(['step_up.created', 'agent.revoked', 'step_up.cancelled']);

    const u = await human(t);
    const pending = await createStepUp(t, u).expect(201);
    await t.http.delete(`/v1/users/${u.userId}`).set(bearer(u.tenant.apiKey)).expect(204);
    // The deleted user's link is gone with them.
    expect((await t.http.post(`/v1/approvals/${approvalToken(pending.body.approvalUrl)}/deny`).send({})).status).toBe(404);
    expect(await types(u.tenant.appId)).toContain('step_up.cancelled');
  });

  it('an event id carries the time written beside it (at, created_at), by every writer, also on a clock moved off the system clock', async () => {
    const { DataSource } = await import('typeorm');
    const ds = t.app.get(DataSource);
    const h = await human(t);
    // Ids and times from two readings would differ by two minutes here (the agent's token still lives).
    t.clock.advance(120_000);
    try {
      await createStepUp(t, h).expect(201);
      await t.http.delete(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).expect(204);
      await t.app.get(AuditService).flushRequests();
      const digits = '-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz';
      const msOf = (id: string) => [...id.slice(4, 12)].reduce((n, c) => n * 64 + digits.indexOf(c), 0);
      const audit = await ds.createQueryBuilder().select(['e.id AS id', 'e.at AS at', 'e.type AS type']).from('audit_events', 'e').where('e.app_id = :a', { a: h.tenant.appId }).getRawMany();
      const outbox = await ds.createQueryBuilder().select(['o.id AS id', 'o.created_at AS at', 'o.type AS type']).from('outbox', 'o').where('o.app_id = :a', { a: h.tenant.appId }).getRawMany();
      expect(audit.map((e) => e.type)).toEqual(expect.arrayContaining(['http.request', 'agent.revoked', 'step_up.cancelled']));
      expect(outbox.map((e) => e.type)).toEqual(expect.arrayContaining(['step_up.created', 'agent.revoked', 'step_up.cancelled']));
      for (const e of [...audit, ...outbox]) expect(msOf(e.id), `${e.type} ${e.id}`).toBe(Number(e.at));
      // The consume's own statement (PostgreSQL) takes its events' ids from carried(…, at), with its at.
      const at = t.clock.now() - 5;
      expect(msOf(t.app.get(AuditService).carried({}, at)[0]!)).toBe(at);
      expect(msOf(t.app.get(OutboxService).carried(at)[0])).toBe(at);
    } finally {
      t.clock.reset();
    }
  });

  it('the events one transaction writes in one millisecond keep their write order, in the audit chain and in the event stream', async () => {
    const { DataSource } = await import('typeorm');
    const ds = t.app.get(DataSource);
    const h = await human(t);
    for (const file of ['a', 'b', 'c']) await createStepUp(t, h, { resource: `drive://${file}.pdf` }).expect(201);
    // The revocation and its three cancellations, all at one instant.
    const instant = Date.now();
    const frozen = vi.spyOn(Date, 'now').mockReturnValue(instant);
    try {
      await t.http.delete(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).expect(204);
    } finally {
      frozen.mockRestore();
    }
    const written = ['agent.revoked', 'step_up.cancelled', 'step_up.cancelled', 'step_up.cancelled'];
    let sealed: { type: string; seq: string | number | null; at: string | number }[] = [];
    await vi.waitFor(async () => {
      sealed = await ds.createQueryBuilder().select(['e.type AS type', 'e.seq AS seq', 'e.at AS at']).from('audit_events', 'e')
        .where('e.app_id = :a', { a: h.tenant.appId }).andWhere('e.type IN (:...types)', { types: ['agent.revoked', 'step_up.cancelled'] }).getRawMany();
      expect(sealed.length === written.length && sealed.every((e) => e.seq !== null)).toBe(true);
    });
    expect(new Set(sealed.map((e) => Number(e.at)))).toEqual(new Set([instant]));
    expect(sealed.sort((x, y) => Number(x.seq) - Number(y.seq)).map((e) => e.type)).toEqual(written);
    // SQLite publishes in insert order (rowid); PostgreSQL in (created_at, id) order, which this checks there.
    expect(await streamedTypes(ds, h.tenant.appId)).toEqual(['step_up.created', 'step_up.created', 'step_up.created', ...written]);
  });
});
