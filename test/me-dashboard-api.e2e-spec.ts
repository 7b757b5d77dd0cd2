import { DataSource } from 'typeorm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditService } from '../src/modules/audit/audit.service.js';
import { startApp, type TestApp } from './support/app.js';
import { refuseWrites } from './support/faults.js';
import { agentToken, bearer } from './support/fixtures.js';
import { CSRF, signInWithPasskey } from './support/me.js';
import { approvalToken, approveWithCode, approveWithPasskey, createStepUp, expectStatus, human, type Human } from './support/step-up.js';
import { totpCode } from './support/totp.js';
import { proof, worker } from './support/worker.js';

let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterEach(() => t.clock.reset());
afterAll(async () => {
  await t?.close();
});

/** A signed-in human (passkey sign-in, so the current TOTP step stays free for inline approvals). */
async function signedIn(agentBody: Record<string, unknown> = {}): Promise<Human & { cookie: string }> {
  const h = await human(t, agentBody);
  return { ...h, cookie: await signInWithPasskey(t, h) };
}

const as = (cookie: string) => ({
  get: (path: string) => t.http.get(path).set('Cookie', cookie),
  post: (path: string, body: Record<string, unknown> = {}) => t.http.post(path).set('Cookie', cookie).set(CSRF).send(body),
  del: (path: string) => t.http.delete(path).set('Cookie', cookie).set(CSRF),
});

/** The outbox events (type and data) about one step-up. */
async function outboxOf(stepUpId: string): Promise<{ type: string; data: Record<string, unknown> }[]> {
  const ds = t.app.get(DataSource);
  const rows: { type: string; payload: string }[] = await ds.query(`SELECT type, payload FROM outbox ORDER BY created_at`);
  return rows.map((r) => ({ type: r.type, data: (JSON.parse(r.payload).data ?? {}) as Record<string, unknown> })).filter((r) => r.data.stepUpId === stepUpId);
}

async function auditOf(h: Human, query: Record<string, string>) {
  return (await t.http.get('/v1/audit-events').query(query).set(bearer(h.tenant.apiKey)).expect(200)).body.events as Record<string, unknown>[];
}

describe('inline approvals', () => {
  it('lists pending step-ups with everything the approval page shows', async () => {
    const h = await signedIn();
    const created = await expectStatus(createStepUp(t, h, { bindingMessage: 'delete q3' }), 201);
    const list = await as(h.cookie).get('/v1/me/step-ups').expect(200);
    const page = await t.http.get(`/v1/approvals/${approvalToken(created.body.approvalUrl)}`).expect(200);
    expect(list.body.stepUps).toEqual([page.body]);
    expect(list.body.stepUps[0]).toMatchObject({ id: created.body.id, action: 'files:delete', bindingMessage: 'delete q3', bindingCode: created.body.bindingCode });
  });

  it('approve by TOTP: the agent gets its token; same audit and outbox events as the approval page (actor: the signed-in user)', async () => {
    const h = await signedIn();
    const inline = await expectStatus(createStepUp(t, h, { resource: 'drive://inline.pdf' }), 201);
    const viaPage = await expectStatus(createStepUp(t, h, { resource: 'drive://page.pdf' }), 201);
    const res = await as(h.cookie).post(`/v1/me/step-ups/${inline.body.id}/totp`, { code: await totpCode(h.totpSecret) }).expect(200);
    expect(res.body).toEqual({ status: 'approved' });
    const fetched = await t.http.get(`/v1/step-ups/${inline.body.id}`).set(bearer(h.token)).expect(200);
    expect(fetched.body).toMatchObject({ status: 'approved', method: 'totp' });
    expect(typeof fetched.body.mfaProxyToken).toBe('string');

    // The same decision through the approval page (next TOTP step: the current one is spent).
    t.clock.advance(30_000);
    await expectStatus(approveWithCode(t, h, viaPage.body.approvalUrl, await totpCode(h.totpSecret, t.clock.now())), 200);
    const inlineEvents = await outboxOf(inline.body.id);
    const pageEvents = await outboxOf(viaPage.body.id);
    expect(inlineEvents.map((e) => e.type)).toEqual(['step_up.created', 'step_up.approved']);
    expect(pageEvents.map((e) => e.type)).toEqual(inlineEvents.map((e) => e.type));
    const approvedData = (events: typeof inlineEvents) => ({ ...events[1].data, stepUpId: 'x', resource: 'x' });
    expect(approvedData(inlineEvents)).toEqual(approvedData(pageEvents));
    expect(inlineEvents[1].data).toMatchObject({ status: 'approved', method: 'totp', agentId: h.agent.id, userId: h.userId });

    const approved = await auditOf(h, { type: 'step_up.approved' });
    const byResource = (r: string) => approved.find((e) => e.resource === r)!;
    const fields = ['type', 'outcome', 'userId', 'agentId', 'model', 'taskId', 'action'];
    const pick = (e: Record<string, unknown>) => Object.fromEntries(fields.map((k) => [k, e[k]]));
    expect(pick(byResource('drive://inline.pdf'))).toEqual(pick(byResource('drive://page.pdf')));
    expect(byResource('drive://inline.pdf')).toMatchObject({ actorType: 'user', actorId: h.userId });
    expect(byResource('drive://page.pdf')).toMatchObject({ actorType: 'human' });
  });

  it('approve by passkey; a wrong code answers as the approval page does; deny; a decided step-up is 409 not_pending', async () => {
    const h = await signedIn();
    const a = await expectStatus(createStepUp(t, h, { resource: 'drive://a' }), 201);
    const options = (await as(h.cookie).post(`/v1/me/step-ups/${a.body.id}/webauthn/options`).expect(200)).body;
    expect(options.userVerification).toBe('required');
    await as(h.cookie).post(`/v1/me/step-ups/${a.body.id}/webauthn/verify`, { response: await h.authenticator.assert(options) }).expect(200, { status: 'approved' });
    expect((await t.http.get(`/v1/step-ups/${a.body.id}`).set(bearer(h.token)).expect(200)).body).toMatchObject({ status: 'approved', method: 'webauthn' });

    const b = await expectStatus(createStepUp(t, h, { resource: 'drive://b' }), 201);
    const code = await totpCode(h.totpSecret);
    const wrong = code === '000000' ? '111111' : '000000';
    const inlineWrong = await as(h.cookie).post(`/v1/me/step-ups/${b.body.id}/totp`, { code: wrong }).expect(400);
    const pageWrong = await approveWithCode(t, h, b.body.approvalUrl, wrong);
    expect(pageWrong.status).toBe(400);
    expect(inlineWrong.body).toMatchObject({ code: 'invalid_code', attemptsRemaining: 4 });
    expect(pageWrong.body).toMatchObject({ code: 'invalid_code', attemptsRemaining: 3 });

    await as(h.cookie).post(`/v1/me/step-ups/${b.body.id}/deny`, { reason: 'not now' }).expect(200, { status: 'denied' });
    expect((await t.http.get(`/v1/step-ups/${b.body.id}`).set(bearer(h.token)).expect(200)).body.status).toBe('denied');
    const again = await as(h.cookie).post(`/v1/me/step-ups/${b.body.id}/deny`).expect(409);
    expect(again.body.code).toBe('not_pending');
    expect((await as(h.cookie).get('/v1/me/step-ups').expect(200)).body.stepUps).toEqual([]);
    const all = (await as(h.cookie).get('/v1/me/step-ups?status=all').expect(200)).body.stepUps;
    expect(all.map((s: { id: string; status: string }) => [s.id, s.status])).toEqual([[b.body.id, 'denied'], [a.body.id, 'approved']]);
    await as(h.cookie).get('/v1/me/step-ups?status=bogus').expect(400);
  });

  it('CSRF: an inline approval without X-Requested-With is 403 csrf_required and decides nothing', async () => {
    const h = await signedIn();
    const s = await expectStatus(createStepUp(t, h), 201);
    const res = await t.http.post(`/v1/me/step-ups/${s.body.id}/deny`).set('Cookie', h.cookie).send({}).expect(403);
    expect(res.body).toMatchObject({ status: 403, code: 'csrf_required' });
    expect((await t.http.get(`/v1/step-ups/${s.body.id}`).set(bearer(h.token)).expect(200)).body.status).toBe('pending');
  });
});

describe('tenancy', () => {
  it('a user of another app, and another user of the same app, see nothing of this one and get 404 on its ids', async () => {
    const a = await signedIn();
    const step = await expectStatus(createStepUp(t, a), 201);
    const sudo = await expectStatus(createStepUp(t, a, { action: 'research:read', grant: { type: 'sudo', scopes: ['files:delete'] }, methods: ['totp'] }), 201);
    await expectStatus(approveWithCode(t, a, sudo.body.approvalUrl), 200);
    const w = await worker();
    const task = (await t.http.post('/v1/tasks').set(bearer(a.token)).send({ taskId: 'a-task', scopes: ['research:read'], workerJwk: w.jwk }).expect(201)).body;
    const factorId = (await as(a.cookie).get('/v1/me/factors').expect(200)).body.factors[0].id;

    const otherApp = await signedIn();
    const sameAppUser = await (async () => {
      const other = await human(t);
      // Another user of a's app: move its tenant to a's by creating the user there.
      const userId = (await t.http.post('/v1/users').set(bearer(a.tenant.apiKey)).send({ externalId: `same-app-${Date.now()}`, displayName: 'Bob' }).expect(201)).body.id;
      void other;
      const link = (await t.http.post(`/v1/users/${userId}/enrollment-links`).set(bearer(a.tenant.apiKey)).send({}).expect(201)).body.url.split('/enroll/')[1];
      const totp = (await t.http.post(`/v1/enrollment/${link}/totp`).send({}).expect(201)).body;
      await t.http.post(`/v1/enrollment/${link}/totp/verify`).send({ factorId: totp.factorId, code: await totpCode(totp.secret) }).expect(200);
      const signIn = (await t.http.post(`/v1/users/${userId}/sign-in-links`).set(bearer(a.tenant.apiKey)).send({}).expect(201)).body.url.split('/me/sign-in/')[1];
      t.clock.advance(30_000);
      const res = await t.http.post(`/v1/me/sign-in/${signIn}/totp`).set(CSRF).send({ code: await totpCode(totp.secret, t.clock.now()) }).expect(200);
      t.clock.reset();
      return (res.headers['set-cookie'] as unknown as string[])[0].split(';')[0];
    })();

    for (const cookie of [otherApp.cookie, sameAppUser]) {
      const me = as(cookie);
      expect((await me.get('/v1/me/step-ups?status=all').expect(200)).body.stepUps.map((s: { id: string }) => s.id)).not.toContain(step.body.id);
      const agents = (await me.get('/v1/me/agents').expect(200)).body.agents.map((x: { id: string }) => x.id);
      expect(agents).not.toContain(a.agent.id);
      const grants = (await me.get('/v1/me/grants').expect(200)).body;
      expect(grants.sudo.map((g: { stepUpId: string }) => g.stepUpId)).not.toContain(sudo.body.id);
      expect(grants.tasks.map((x: { id: string }) => x.id)).not.toContain(task.id);
      expect((await me.get('/v1/me/factors').expect(200)).body.factors.map((f: { id: string }) => f.id)).not.toContain(factorId);
      const activity = (await me.get('/v1/me/activity').expect(200)).body.events;
      expect(activity.every((e: { userId: string }) => e.userId !== a.userId)).toBe(true);
      const attempts = [
        me.post(`/v1/me/step-ups/${step.body.id}/webauthn/options`),
        me.post(`/v1/me/step-ups/${step.body.id}/totp`, { code: '123456' }),
        me.post(`/v1/me/step-ups/${step.body.id}/deny`),
        me.post(`/v1/me/agents/${a.agent.id}/suspend`),
        me.post(`/v1/me/agents/${a.agent.id}/resume`),
        me.del(`/v1/me/agents/${a.agent.id}`),
        me.del(`/v1/me/grants/${sudo.body.id}`),
        me.del(`/v1/me/tasks/${task.id}`),
        me.del(`/v1/me/factors/${factorId}`),
      ];
      for (const attempt of attempts) {
        const res = await attempt;
        expect(res.status, JSON.stringify(res.body)).toBe(404);
        expect(res.body).toMatchObject({ status: 404, code: 'not_found' });
      }
    }
    // Nothing changed for a.
    expect((await t.http.get(`/v1/step-ups/${step.body.id}`).set(bearer(a.token)).expect(200)).body.status).toBe('pending');
    expect((await t.http.get(`/v1/agents/${a.agent.id}`).set(bearer(a.tenant.apiKey)).expect(200)).body.status).toBe('active');
    expect((await as(a.cookie).get('/v1/me/grants').expect(200)).body).toMatchObject({ sudo: [{ stepUpId: sudo.body.id }], tasks: [{ id: task.id }] });
    expect((await as(a.cookie).get('/v1/me/factors').expect(200)).body.factors).toHaveLength(2);
  });
});

describe('agents', () => {
  it('suspend and resume an agent (its token refused, then accepted); lastUsedAt from its last request', async () => {
    const h = await signedIn();
    await t.http.get('/v1/whoami').set(bearer(h.token)).expect(200);
    await expect.poll(async () => (await as(h.cookie).get('/v1/me/agents').expect(200)).body.agents[0]?.lastUsedAt, { timeout: 10_000 }).toEqual(expect.any(String));
    const listed = (await as(h.cookie).get('/v1/me/agents').expect(200)).body.agents;
    expect(listed).toEqual([{ id: h.agent.id, name: 'research-bot', model: 'claude-test-1', status: 'active', permissionBoundaries: ['files:*', 'research:read', 'payments:send'], lastUsedAt: expect.any(String) }]);

    const refused = await t.http.post(`/v1/me/agents/${h.agent.id}/suspend`).set('Cookie', h.cookie).expect(403);
    expect(refused.body.code).toBe('csrf_required');
    await t.http.get('/v1/whoami').set(bearer(h.token)).expect(200);

    expect((await as(h.cookie).post(`/v1/me/agents/${h.agent.id}/suspend`).expect(200)).body.status).toBe('suspended');
    await t.http.get('/v1/whoami').set(bearer(h.token)).expect(401);
    expect((await as(h.cookie).post(`/v1/me/agents/${h.agent.id}/resume`).expect(200)).body.status).toBe('active');
    await t.http.get('/v1/whoami').set(bearer(h.token)).expect(200);
    expect((await auditOf(h, { agentId: h.agent.id })).map((e) => e.type)).toEqual(expect.arrayContaining(['agent.suspended', 'agent.resumed']));
  });

  it("lastUsedAt is the agent's last authenticated request: moved by its requests, not by its app's nor by another agent's", async () => {
    const h = await signedIn();
    const other = await signedIn();
    const lastUsed = async () => (await as(h.cookie).get('/v1/me/agents').expect(200)).body.agents[0].lastUsedAt as string | null;
    const audit = t.app.get(AuditService);

    // Its token request (the fixture's) counts; a minute later, a new request moves it.
    await audit.flushRequests();
    expect(Date.parse((await lastUsed())!)).toBeLessThanOrEqual(t.clock.now());
    t.clock.advance(60_000);
    const first = t.clock.now();
    await t.http.get('/v1/whoami').set(bearer(h.token)).expect(200);
    await audit.flushRequests();
    const seen = Date.parse((await lastUsed())!);
    expect(seen).toBeGreaterThanOrEqual(first);
    expect(seen).toBeLessThan(first + 5_000);

    // Its app's requests about it, another agent's requests, a refused token, its own refused
    // request, and its human's approval of its step-up (a request about it) do not move it.
    const stepUp = await expectStatus(createStepUp(t, h), 201);
    await audit.flushRequests();
    const asked = Date.parse((await lastUsed())!);
    expect(asked).toBeGreaterThanOrEqual(seen);
    t.clock.advance(60_000);
    await t.http.get(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).expect(200);
    await t.http.get('/v1/whoami').set(bearer(other.token)).expect(200);
    await t.http.get('/v1/whoami').set(bearer(`${h.token}x`)).expect(401);
    await t.http.post('/v1/step-ups').set(bearer(h.token)).send({ action: 42 }).expect(400);
    await approveWithPasskey(t, h, stepUp.body.approvalUrl);
    await audit.flushRequests();
    expect((await auditOf(h, { agentId: h.agent.id, type: 'http.request' })).filter((e) => e.actorType === 'human').length).toBeGreaterThan(0);
    expect(Date.parse((await lastUsed())!)).toBe(asked);

    // To the second: a request less than a second after the last one written does not move it
    // (a row per agent and flush under load); one a second or more after it does.
    await t.http.get('/v1/whoami').set(bearer(h.token)).expect(200);
    await audit.flushRequests();
    const written = Date.parse((await lastUsed())!);
    expect(written).toBeGreaterThanOrEqual(asked + 60_000);
    t.clock.advance(100);
    await t.http.get('/v1/whoami').set(bearer(h.token)).expect(200);
    await audit.flushRequests();
    expect(Date.parse((await lastUsed())!)).toBe(written);
    t.clock.advance(1_000);
    await t.http.get('/v1/whoami').set(bearer(h.token)).expect(200);
    await audit.flushRequests();
    expect(Date.parse((await lastUsed())!)).toBeGreaterThanOrEqual(written + 1_000);

    // Two of its requests in one flush: the later one counts.
    t.clock.advance(60_000);
    await t.http.get('/v1/whoami').set(bearer(h.token)).expect(200);
    t.clock.advance(1_000);
    const last = t.clock.now();
    await t.http.get('/v1/whoami').set(bearer(h.token)).expect(200);
    await audit.flushRequests();
    expect(Date.parse((await lastUsed())!)).toBeGreaterThanOrEqual(last);
  });

  it("a flush whose agent_activity write fails still writes every request event; lastUsedAt just does not move", async () => {
    const h = await signedIn();
    const audit = t.app.get(AuditService);
    await audit.flushRequests();
    const before = (await as(h.cookie).get('/v1/me/agents').expect(200)).body.agents[0].lastUsedAt;
    const refused = await refuseWrites(t, 'agent_activity', 'INSERT', h.tenant.appId);
    try {
      t.clock.advance(60_000);
      const res = await t.http.get('/v1/whoami').set(bearer(h.token)).expect(200);
      await audit.flushRequests();
      expect((await auditOf(h, { agentId: h.agent.id, type: 'http.request' })).map((e) => e.requestId)).toContain(res.headers['x-request-id']);
      expect((await as(h.cookie).get('/v1/me/agents').expect(200)).body.agents[0].lastUsedAt).toBe(before);
    } finally {
      await refused.restore();
    }
  });

  it('revoke an agent: its token is refused, its pending step-ups cancelled, it leaves the list', async () => {
    const h = await signedIn();
    const pending = await expectStatus(createStepUp(t, h), 201);
    await as(h.cookie).del(`/v1/me/agents/${h.agent.id}`).expect(204);
    await t.http.get('/v1/whoami').set(bearer(h.token)).expect(401);
    expect((await t.http.get(`/v1/step-ups/${pending.body.id}`).set(bearer(h.tenant.apiKey))).status).toBe(404);
    expect((await as(h.cookie).get('/v1/me/step-ups?status=all').expect(200)).body.stepUps[0]).toMatchObject({ id: pending.body.id, status: 'cancelled' });
    expect((await as(h.cookie).get('/v1/me/agents').expect(200)).body.agents).toEqual([]);
    await as(h.cookie).del(`/v1/me/agents/${h.agent.id}`).expect(404);
    expect((await auditOf(h, { type: 'agent.revoked' }))[0]).toMatchObject({ agentId: h.agent.id, actorType: 'user' });
  });
});

describe('grants and tasks', () => {
  it('end a sudo grant: the sudo token is refused at once (401 on /v1/whoami, active:false on introspection); sudo.revoked audited', async () => {
    const h = await signedIn();
    const s = await expectStatus(createStepUp(t, h, { action: 'research:read', grant: { type: 'sudo', scopes: ['files:delete'], duration: 600 }, methods: ['totp'] }), 201);
    await as(h.cookie).post(`/v1/me/step-ups/${s.body.id}/totp`, { code: await totpCode(h.totpSecret) }).expect(200);
    const fetched = (await t.http.get(`/v1/step-ups/${s.body.id}`).set(bearer(h.token)).expect(200)).body;
    const sudo = fetched.sudoToken as string;
    await t.http.get('/v1/whoami').set(bearer(sudo)).expect(200);
    const grants = (await as(h.cookie).get('/v1/me/grants').expect(200)).body;
    expect(grants).toEqual({ sudo: [{ stepUpId: s.body.id, agentId: h.agent.id, scopes: ['files:delete'], expiresAt: fetched.sudoExpiresAt }], tasks: [] });

    await as(h.cookie).del(`/v1/me/grants/${s.body.id}`).expect(204);
    await t.http.get('/v1/whoami').set(bearer(sudo)).expect(401);
    const intro = await t.http.post('/oauth/introspect').set(bearer(h.tenant.apiKey)).type('form').send({ token: sudo }).expect(200);
    expect(intro.body).toEqual({ active: false });
    expect((await as(h.cookie).get('/v1/me/grants').expect(200)).body.sudo).toEqual([]);
    await as(h.cookie).del(`/v1/me/grants/${s.body.id}`).expect(404);
    expect((await auditOf(h, { type: 'sudo.revoked' }))[0]).toMatchObject({ actorType: 'user', userId: h.userId, agentId: h.agent.id, resource: s.body.id });
    // The agent's ordinary token is untouched.
    await t.http.get('/v1/whoami').set(bearer(h.token)).expect(200);
  });

  it('a sudo grant ended before the agent fetched it is never handed out', async () => {
    const h = await signedIn();
    const s = await expectStatus(createStepUp(t, h, { action: 'research:read', grant: { type: 'sudo', scopes: ['files:delete'] }, methods: ['totp'] }), 201);
    await as(h.cookie).post(`/v1/me/step-ups/${s.body.id}/totp`, { code: await totpCode(h.totpSecret) }).expect(200);
    await as(h.cookie).del(`/v1/me/grants/${s.body.id}`).expect(204);
    const fetched = (await t.http.get(`/v1/step-ups/${s.body.id}`).set(bearer(h.token)).expect(200)).body;
    expect(fetched.sudoToken).toBeUndefined();
  });

  it('end a task: listed with its end, then no more tokens (410 task_ended)', async () => {
    const h = await signedIn();
    const w = await worker();
    const task = (await t.http.post('/v1/tasks').set(bearer(h.token)).send({ taskId: 'nightly', scopes: ['research:read'], workerJwk: w.jwk }).expect(201)).body;
    const path = `/v1/tasks/${task.id}/token`;
    await t.http.post(path).set('DPoP', await proof(w, 'POST', path)).expect(200);
    expect((await as(h.cookie).get('/v1/me/grants').expect(200)).body.tasks).toEqual([{ id: task.id, taskId: 'nightly', agentId: h.agent.id, scopes: ['research:read'], expiresAt: task.expiresAt }]);
    await as(h.cookie).del(`/v1/me/tasks/${task.id}`).expect(204);
    const res = await t.http.post(path).set('DPoP', await proof(w, 'POST', path)).expect(410);
    expect(res.body.code).toBe('task_ended');
    expect((await as(h.cookie).get('/v1/me/grants').expect(200)).body.tasks).toEqual([]);
    await as(h.cookie).del(`/v1/me/tasks/${task.id}`).expect(410);
    await as(h.cookie).del('/v1/me/tasks/tsk_nope').expect(404);
  });
});

describe('factors', () => {
  it('add TOTP and a passkey within 5 min of the sign-in; after that 403 reauth_required until a factor is proved again (an inline approval counts)', async () => {
    const h = await signedIn();
    const me = as(h.cookie);
    const created = (await me.post('/v1/me/factors/totp', { name: 'Phone 2' }).expect(201)).body;
    await me.post('/v1/me/factors/totp/verify', { factorId: created.factorId, code: await totpCode(created.secret) }).expect(200, { factorId: created.factorId, status: 'active' });
    const options = (await me.post('/v1/me/factors/webauthn/options').expect(200)).body;
    expect(options.excludeCredentials).toHaveLength(1);
    const added = await me.post('/v1/me/factors/webauthn/verify', { response: await h.authenticator.register(options), name: 'Laptop' }).expect(201);
    expect((await me.get('/v1/me/factors').expect(200)).body.factors.map((f: { name: string }) => f.name)).toContain('Laptop');
    expect(added.body.factorId).toMatch(/^fac_/);

    t.clock.advance(5 * 60_000 + 1000);
    for (const res of [await me.post('/v1/me/factors/totp'), await me.post('/v1/me/factors/webauthn/options')]) {
      expect(res.status).toBe(403);
      expect(res.body).toMatchObject({ status: 403, code: 'reauth_required' });
    }
    expect((await me.get('/v1/me/factors').expect(200)).body.factors).toHaveLength(4);

    // A factor proof in an inline approval re-opens the window.
    const s = await expectStatus(createStepUp(t, { ...h, token: await agentToken(t, h.agent) }), 201);
    const approveOptions = (await me.post(`/v1/me/step-ups/${s.body.id}/webauthn/options`).expect(200)).body;
    await me.post(`/v1/me/step-ups/${s.body.id}/webauthn/verify`, { response: await h.authenticator.assert(approveOptions) }).expect(200);
    await me.post('/v1/me/factors/totp').expect(201);
  });

  it('a registration challenge from another session is refused', async () => {
    const h = await signedIn();
    const other = await signInWithPasskey(t, h);
    const options = (await as(other).post('/v1/me/factors/webauthn/options').expect(200)).body;
    const res = await as(h.cookie).post('/v1/me/factors/webauthn/verify', { response: await h.authenticator.register(options) }).expect(400);
    expect(res.body.code).toBe('webauthn_verification_failed');
  });

  it('removing the last active factor is 409 last_factor; the others go (204)', async () => {
    const h = await signedIn();
    const factors = (await as(h.cookie).get('/v1/me/factors').expect(200)).body.factors as { id: string; type: string }[];
    expect(factors.map((f) => f.type).sort()).toEqual(['totp', 'webauthn']);
    await as(h.cookie).del(`/v1/me/factors/${factors.find((f) => f.type === 'totp')!.id}`).expect(204);
    const last = factors.find((f) => f.type === 'webauthn')!.id;
    const res = await as(h.cookie).del(`/v1/me/factors/${last}`).expect(409);
    expect(res.body).toMatchObject({ status: 409, code: 'last_factor' });
    expect((await as(h.cookie).get('/v1/me/factors').expect(200)).body.factors.map((f: { id: string }) => f.id)).toEqual([last]);
  });
});

describe('activity', () => {
  it("the user's audit events, newest first, paged by cursor, without request events", async () => {
    const h = await signedIn();
    const s = await expectStatus(createStepUp(t, h), 201);
    await as(h.cookie).post(`/v1/me/step-ups/${s.body.id}/deny`).expect(200);
    const first = (await as(h.cookie).get('/v1/me/activity?limit=2').expect(200)).body;
    expect(first.events).toHaveLength(2);
    expect(first.events[0].type).toBe('step_up.denied');
    expect(first.events[0].seq).toBeGreaterThan(first.events[1].seq);
    expect(first.nextCursor).toBe(String(first.events[1].seq));
    const rest = (await as(h.cookie).get(`/v1/me/activity?after=${first.nextCursor}&limit=200`).expect(200)).body;
    expect(rest.events.every((e: { seq: number }) => e.seq < first.events[1].seq)).toBe(true);
    const all = [...first.events, ...rest.events];
    expect(all.map((e: { type: string }) => e.type)).toEqual(expect.arrayContaining(['step_up.denied', 'step_up.created', 'session.started', 'user.created']));
    expect(all.some((e: { type: string }) => e.type === 'http.request')).toBe(false);
    expect(all.every((e: { userId: string }) => e.userId === h.userId)).toBe(true);
    await as(h.cookie).get('/v1/me/activity?after=abc').expect(400);
  });
});

