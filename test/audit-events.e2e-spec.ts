import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from './support/app.js';
import { agentToken, bearer, createAgent } from './support/fixtures.js';
import { approveWithCode, createStepUp, expectStatus, human, type Human } from './support/step-up.js';
import { upstreamProvider } from './support/upstream.js';
import { proof, worker } from './support/worker.js';

/** Issue 11 item 6: every state change has its own typed audit event naming its target (API.md v1.1 Audit). */
let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

type Event = Record<string, unknown>;
const events = async (h: { tenant: { apiKey: string } }, query: Record<string, string | number> = {}): Promise<Event[]> =>
  (await t.http.get('/v1/audit-events').query({ limit: 200, ...query }).set(bearer(h.tenant.apiKey)).expect(200)).body.events;
const ofType = async (h: Human, type: string, query: Record<string, string> = {}) => events(h, { type, ...query });

describe('typed audit events', () => {
  it('users, agents, API keys: created, updated (boundaries before and after), suspended, secret rotated, revoked, deleted', async () => {
    const h = await human(t);
    expect(await ofType(h, 'user.created')).toEqual([expect.objectContaining({ actorType: 'app', userId: h.userId, outcome: 'success' })]);
    expect(await ofType(h, 'agent.created')).toEqual([expect.objectContaining({ actorType: 'app', agentId: h.agent.id, userId: h.userId, model: 'claude-test-1' })]);

    await t.http.patch(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).send({ permissionBoundaries: ['files:read'] }).expect(200);
    expect(await ofType(h, 'agent.updated')).toEqual([
      expect.objectContaining({ agentId: h.agent.id, details: { before: { permissionBoundaries: ['files:*', 'research:read', 'payments:send'] }, after: { permissionBoundaries: ['files:read'] } } }),
    ]);
    await t.http.patch(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).send({ status: 'suspended' }).expect(200);
    expect(await ofType(h, 'agent.suspended')).toEqual([expect.objectContaining({ agentId: h.agent.id, actorType: 'app' })]);
    await t.http.post(`/v1/agents/${h.agent.id}/secret`).set(bearer(h.tenant.apiKey)).expect(201);
    expect(await ofType(h, 'agent.secret_rotated')).toEqual([expect.objectContaining({ agentId: h.agent.id })]);

    const key = await t.http.post(`/v1/apps/${h.tenant.appId}/api-keys`).set(bearer(t.adminToken)).expect(201);
    await t.http.delete(`/v1/apps/${h.tenant.appId}/api-keys/${key.body.id}`).set(bearer(t.adminToken)).expect(204);
    expect(await ofType(h, 'api_key.created')).toEqual([expect.objectContaining({ actorType: 'operator', resource: key.body.id })]);
    expect(await ofType(h, 'api_key.deleted')).toEqual([expect.objectContaining({ actorType: 'operator', resource: key.body.id })]);

    await t.http.delete(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).expect(204);
    expect(await ofType(h, 'agent.revoked')).toEqual([expect.objectContaining({ agentId: h.agent.id, userId: h.userId })]);
  });

  it('factors: enrolled (passkey and TOTP) and removed', async () => {
    const h = await human(t);
    const enrolled = await ofType(h, 'factor.enrolled');
    expect(enrolled).toHaveLength(2);
    expect(enrolled.every((e) => e.userId === h.userId && e.actorType === 'human')).toBe(true);
    expect(enrolled.map((e) => e.action).sort()).toEqual(['totp', 'webauthn']);
    const user = (await t.http.get(`/v1/users/${h.userId}`).set(bearer(h.tenant.apiKey)).expect(200)).body;
    const totp = user.factors.find((f: { type: string }) => f.type === 'totp');
    await t.http.delete(`/v1/users/${h.userId}/factors/${totp.id}`).set(bearer(h.tenant.apiKey)).expect(204);
    expect(await ofType(h, 'factor.removed')).toEqual([expect.objectContaining({ userId: h.userId, resource: totp.id, action: 'totp', actorType: 'app' })]);
  });

  it('tokens, tasks and connections: token.revoked, task.created, task.ended, connection.created, connection.deposited', async () => {
    const h = await human(t, { permissionBoundaries: ['research:read', 'connection:drive'] });
    const token = await agentToken(t, h.agent, { scope: 'research:read' });
    await t.http.post('/oauth/revoke').set(bearer(h.token)).type('form').send({ token }).expect(200);
    expect(await ofType(h, 'token.revoked')).toEqual([expect.objectContaining({ agentId: h.agent.id, actorType: 'agent' })]);

    const w = await worker();
    const task = await expectStatus(t.http.post('/v1/tasks').set(bearer(h.token)).send({ taskId: 'audited', scopes: ['research:read'], workerJwk: w.jwk }), 201);
    expect(await ofType(h, 'task.created')).toEqual([expect.objectContaining({ agentId: h.agent.id, userId: h.userId, taskId: 'audited', resource: task.body.id })]);
    await t.http.delete(`/v1/tasks/${task.body.id}`).set(bearer(h.tenant.apiKey)).expect(204);
    expect(await ofType(h, 'task.ended')).toEqual([expect.objectContaining({ agentId: h.agent.id, taskId: 'audited', resource: task.body.id, actorType: 'app' })]);

    const upstream = await upstreamProvider('rt-1');
    try {
      const con = await t.http.post('/v1/connections').set(bearer(h.tenant.apiKey)).send({ name: 'drive', tokenEndpoint: upstream.url, clientId: upstream.clientId, clientSecret: upstream.clientSecret }).expect(201);
      await t.http.put(`/v1/users/${h.userId}/connections/${con.body.id}`).set(bearer(h.tenant.apiKey)).send({ refreshToken: 'rt-1' }).expect(204);
      expect(await ofType(h, 'connection.created')).toEqual([expect.objectContaining({ resource: con.body.id, action: 'drive' })]);
      expect(await ofType(h, 'connection.deposited')).toEqual([expect.objectContaining({ resource: con.body.id, userId: h.userId })]);
      const all = JSON.stringify(await events(h));
      expect(all).not.toContain('rt-1');
      expect(all).not.toContain(upstream.clientSecret);
    } finally {
      await upstream.close();
    }
  });

  it('a refused verification names the user and agent when the token’s signature was valid', async () => {
    const h = await human(t);
    const created = await expectStatus(createStepUp(t, h, { methods: ['totp'] }), 201);
    await expectStatus(approveWithCode(t, h, created.body.approvalUrl), 200);
    const mfa = (await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(200)).body.mfaProxyToken;
    const res = await t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send({ token: mfa, action: 'files:read' }).expect(200);
    expect(res.body).toEqual({ valid: false, reason: 'action_mismatch' });
    expect(await ofType(h, 'mfa_proxy_token.verify_failed.action_mismatch')).toEqual([expect.objectContaining({ agentId: h.agent.id, userId: h.userId, model: 'claude-test-1', outcome: 'failure' })]);
    // A token whose signature is not ours names nobody.
    const forged = `${mfa.split('.').slice(0, 2).join('.')}.${'A'.repeat(86)}`;
    await t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send({ token: forged, action: 'files:delete' }).expect(200);
    expect(await ofType(h, 'mfa_proxy_token.verify_failed.invalid_signature')).toEqual([expect.objectContaining({ agentId: null, userId: null })]);
  });

  it('cascades: deleting the user emits user.deleted, agent.revoked for each agent and task.ended for each task', async () => {
    const h = await human(t);
    const second = await createAgent(t, h.tenant, h.userId, { permissionBoundaries: ['research:read'] });
    const w = await worker();
    const task = await expectStatus(t.http.post('/v1/tasks').set(bearer(h.token)).send({ taskId: 'doomed', scopes: ['research:read'], workerJwk: w.jwk }), 201);
    await t.http.delete(`/v1/users/${h.userId}`).set(bearer(h.tenant.apiKey)).expect(204);
    expect(await ofType(h, 'user.deleted')).toEqual([expect.objectContaining({ userId: h.userId, actorType: 'app' })]);
    const revoked = await ofType(h, 'agent.revoked');
    expect(revoked.map((e) => e.agentId).sort()).toEqual([h.agent.id, second.id].sort());
    expect(await ofType(h, 'task.ended')).toEqual([expect.objectContaining({ resource: task.body.id, agentId: h.agent.id, taskId: 'doomed' })]);
    // And the task is ended for its worker.
    const path = `/v1/tasks/${task.body.id}/token`;
    expect((await t.http.post(path).set('DPoP', await proof(w, 'POST', path))).status).toBe(410);
    const deliveries = (await t.http.get('/v1/webhook-deliveries').set(bearer(h.tenant.apiKey)).expect(200)).body.deliveries.map((d: { type: string }) => d.type);
    expect(deliveries).toEqual(expect.arrayContaining(['agent.revoked', 'task.ended']));
    expect(deliveries.filter((d: string) => d === 'agent.revoked')).toHaveLength(2);
  });

  it('cascades: revoking an agent emits task.ended for its tasks and cancels its step-ups', async () => {
    const h = await human(t);
    const w = await worker();
    const task = await expectStatus(t.http.post('/v1/tasks').set(bearer(h.token)).send({ taskId: 'doomed-2', scopes: ['research:read'], workerJwk: w.jwk }), 201);
    const pending = await expectStatus(createStepUp(t, h), 201);
    await t.http.delete(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).expect(204);
    expect(await ofType(h, 'task.ended')).toEqual([expect.objectContaining({ resource: task.body.id, agentId: h.agent.id })]);
    expect(await ofType(h, 'step_up.cancelled')).toEqual([expect.objectContaining({ agentId: h.agent.id, action: 'files:delete' })]);
    expect((await t.http.get(`/v1/approvals/${pending.body.approvalUrl.split('/approve/')[1]}`).expect(200)).body.status).toBe('cancelled');
  });
});
