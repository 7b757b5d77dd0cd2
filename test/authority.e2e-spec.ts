import { decodeJwt } from 'jose';
import { DataSource } from 'typeorm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PUBLIC_URL, startApp, usingPostgres, type TestApp } from './support/app.js';
import { agentToken, bearer, createAgent } from './support/fixtures.js';
import { approvalToken, approveWithCode, createStepUp, expectStatus, human, type Human } from './support/step-up.js';
import { totpCode } from './support/totp.js';
import { upstreamProvider } from './support/upstream.js';
import { webhookReceiver } from './support/webhook-receiver.js';
import { dpopAuth, proof, worker, type Worker } from './support/worker.js';

/**
 * Issue 10: a token's scope is the authority, the vault is reachable through scopes only, time
 * boxes hold, the approval URL stays the human's, caps are exact under concurrency, and apps may
 * ask on an agent's behalf.
 */
let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});
afterEach(() => t.clock.reset());

const ROUNDS = usingPostgres() ? 5 : 2;
const get = (token: string, id: string, query = '') => t.http.get(`/v1/step-ups/${id}${query}`).set(bearer(token));
const verify = (h: Human, body: Record<string, unknown>) => t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send(body).expect(200);
const problem = (status: number, code: string) => expect.objectContaining({ status, code, type: expect.any(String), title: expect.any(String), detail: expect.any(String) });

/** A task of the human's agent, bound to a fresh worker key; the worker's DPoP-bound token. */
async function workerOf(h: Human, scopes: string[], creatorScope?: string) {
  const w = await worker();
  const creator = creatorScope ? await agentToken(t, h.agent, { scope: creatorScope }) : h.token;
  const task = (await expectStatus(t.http.post('/v1/tasks').set(bearer(creator)).send({ taskId: 'research-1', scopes, workerJwk: w.jwk }), 201)).body;
  const path = `/v1/tasks/${task.id}/token`;
  const drawn = await expectStatus(t.http.post(path).set('DPoP', await proof(w, 'POST', path)), 200);
  return { w, task, token: drawn.body.access_token as string, creator };
}

/** A request by the worker with its DPoP-bound token (and a fresh proof). */
async function asWorker(w: Worker, token: string, method: 'get' | 'post' | 'delete', path: string, body?: Record<string, unknown>) {
  const req = t.http[method](path).set(await dpopAuth(w, token, method.toUpperCase(), path));
  return body === undefined ? req : req.send(body);
}

describe('1. the calling token’s scope is the authority', () => {
  it('a token scoped to research:read cannot ask to approve files:delete, though the boundaries (files:*) allow it', async () => {
    const h = await human(t);
    const narrow = await agentToken(t, h.agent, { scope: 'research:read' });
    const res = await expectStatus(t.http.post('/v1/step-ups').set(bearer(narrow)).send({ action: 'files:delete', resource: 'drive://q3.pdf' }), 403);
    expect(res.body).toEqual(problem(403, 'action_not_permitted'));
    // Sudo is elevation: for a token that is not a worker's, within the boundaries it may be asked for.
    await expectStatus(t.http.post('/v1/step-ups').set(bearer(narrow)).send({ action: 'research:read', grant: { type: 'sudo', scopes: ['files:delete'] } }), 201);
    // The same agent with a token that covers the action may ask.
    await expectStatus(t.http.post('/v1/step-ups').set(bearer(await agentToken(t, h.agent, { scope: 'files:delete' }))).send({ action: 'files:delete', resource: 'drive://q3.pdf' }), 201);
  });

  it('a token scoped to research:read cannot create a task for files:delete', async () => {
    const h = await human(t);
    const narrow = await agentToken(t, h.agent, { scope: 'research:read' });
    const res = await expectStatus(t.http.post('/v1/tasks').set(bearer(narrow)).send({ taskId: 'x', scopes: ['files:delete'], workerJwk: (await worker()).jwk }), 403);
    expect(res.body).toEqual(problem(403, 'action_not_permitted'));
    await expectStatus(t.http.post('/v1/tasks').set(bearer(narrow)).send({ taskId: 'x', scopes: ['research:read'], workerJwk: (await worker()).jwk }), 201);
  });

  it('the default token (no scope parameter) carries wildcard boundaries and so covers files:delete under files:*', async () => {
    const h = await human(t);
    expect(decodeJwt(h.token).scope).toBe('files:* research:read payments:send');
    await expectStatus(createStepUp(t, h), 201);
  });

  it('a worker token is held to its task’s scopes: no step-up, no sudo, no task beyond them', async () => {
    const h = await human(t);
    const { w, token } = await workerOf(h, ['research:read'], 'research:read');
    const refused = await asWorker(w, token, 'post', '/v1/step-ups', { action: 'files:delete' });
    expect(refused.status, JSON.stringify(refused.body)).toBe(403);
    expect(refused.body.code).toBe('action_not_permitted');
    const sudo = await asWorker(w, token, 'post', '/v1/step-ups', { action: 'research:read', grant: { type: 'sudo', scopes: ['files:delete'] } });
    expect(sudo.status, JSON.stringify(sudo.body)).toBe(403);
    expect(sudo.body.code).toBe('action_not_permitted');
    const task = await asWorker(w, token, 'post', '/v1/tasks', { taskId: 'escape', scopes: ['research:read'], workerJwk: (await worker()).jwk });
    expect(task.status, JSON.stringify(task.body)).toBe(403);
    expect(task.body.code).toBe('action_not_permitted');
    // Within its task's scopes it may ask.
    const ok = await asWorker(w, token, 'post', '/v1/step-ups', { action: 'research:read' });
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
  });

  it('a worker or a narrower token can neither join nor collect a broader token’s step-up (review F1)', async () => {
    const h = await human(t, { permissionBoundaries: ['files:*', 'research:read'] });
    const { w, token: workerToken } = await workerOf(h, ['research:read']);
    const narrow = await agentToken(t, h.agent, { scope: 'research:read' });
    const body = { action: 'research:read', grant: { type: 'sudo', scopes: ['research:read'], duration: 120 }, methods: ['totp'] };
    const parent = await expectStatus(t.http.post('/v1/step-ups').set(bearer(h.token)).send(body), 201);
    // The identical body from the worker and from the narrower token makes their own step-ups.
    const fromWorker = await asWorker(w, workerToken, 'post', '/v1/step-ups', body);
    expect(fromWorker.status).toBe(201);
    expect(fromWorker.body.id).not.toBe(parent.body.id);
    const fromNarrow = await expectStatus(t.http.post('/v1/step-ups').set(bearer(narrow)).send(body), 201);
    expect(fromNarrow.body.id).not.toBe(parent.body.id);
    // Nor can they read or cancel the parent's.
    expect((await asWorker(w, workerToken, 'get', `/v1/step-ups/${parent.body.id}`)).status).toBe(404);
    expect((await asWorker(w, workerToken, 'delete', `/v1/step-ups/${parent.body.id}`)).status).toBe(404);
    await t.http.get(`/v1/step-ups/${parent.body.id}`).set(bearer(narrow)).expect(404);
    await expectStatus(approveWithCode(t, h, parent.body.approvalUrl), 200);
    await t.http.get(`/v1/step-ups/${parent.body.id}`).set(bearer(narrow)).expect(404);
    // The parent's own token (a renewal with the same scopes, too) collects it.
    const sudo = (await t.http.get(`/v1/step-ups/${parent.body.id}`).set(bearer(await agentToken(t, h.agent))).expect(200)).body.sudoToken;
    expect(decodeJwt(sudo).scope).toBe('files:* research:read');
    // The worker's own sudo grant stays within its task and bound to its key and task.
    await expectStatus(approveWithCode(t, h, fromWorker.body.approvalUrl, await totpCode(h.totpSecret, Date.now() + 30_000)), 200);
    const workerSudo = (await asWorker(w, workerToken, 'get', `/v1/step-ups/${fromWorker.body.id}`)).body.sudoToken;
    expect(decodeJwt(workerSudo)).toMatchObject({ scope: 'research:read', cnf: { jkt: expect.any(String) }, tsk: expect.stringMatching(/^tsk_/) });
  });

  it('a worker token sees only its own task, not its siblings', async () => {
    const h = await human(t);
    const a = await workerOf(h, ['research:read']);
    const b = await workerOf(h, ['research:read']);
    expect((await asWorker(a.w, a.token, 'get', `/v1/tasks/${b.task.id}`)).status).toBe(404);
    expect((await asWorker(a.w, a.token, 'delete', `/v1/tasks/${b.task.id}`)).status).toBe(404);
    expect((await asWorker(a.w, a.token, 'get', `/v1/tasks/${a.task.id}`)).status).toBe(200);
    await t.http.get(`/v1/tasks/${b.task.id}`).set(bearer(h.token)).expect(200);
  });

  it('revoking the token that created a task ends the task (and only that task)', async () => {
    const h = await human(t);
    const doomed = await workerOf(h, ['research:read'], 'research:read');
    const sibling = await workerOf(h, ['research:read'], 'research:read');
    await t.http.post('/oauth/revoke').set(bearer(h.token)).type('form').send({ token: doomed.creator }).expect(200);
    const draw = async (x: { w: Worker; task: { id: string } }) => {
      const path = `/v1/tasks/${x.task.id}/token`;
      return t.http.post(path).set('DPoP', await proof(x.w, 'POST', path));
    };
    expect((await draw(doomed)).body.code).toBe('task_ended');
    expect((await asWorker(doomed.w, doomed.token, 'get', '/v1/whoami')).status).toBe(401);
    expect((await t.http.get(`/v1/tasks/${doomed.task.id}`).set(bearer(h.tenant.apiKey)).expect(200)).body).toMatchObject({ status: 'ended', endReason: 'creator_token_revoked' });
    expect((await draw(sibling)).status).toBe(200);
  });

  it('a task started with a sudo token ends when the grant does', async () => {
    const h = await human(t);
    const created = await expectStatus(createStepUp(t, h, { action: 'files:read', grant: { type: 'sudo', scopes: ['payments:send'], duration: 120 }, methods: ['totp'] }), 201);
    await expectStatus(approveWithCode(t, h, created.body.approvalUrl), 200);
    const fetched = (await get(h.token, created.body.id).expect(200)).body;
    const task = await expectStatus(t.http.post('/v1/tasks').set(bearer(fetched.sudoToken)).send({ taskId: 'elevated', scopes: ['payments:send'], workerJwk: (await worker()).jwk }), 201);
    expect(task.body.expiresAt).toBe(fetched.sudoExpiresAt);
  });

  it('a sudo token drawn by a worker dies with its task', async () => {
    const h = await human(t);
    const { w, task, token } = await workerOf(h, ['research:read', 'files:read'], 'research:read files:read');
    const created = await asWorker(w, token, 'post', '/v1/step-ups', { action: 'files:read', grant: { type: 'sudo', scopes: ['files:read'], duration: 300 }, methods: ['totp'] });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await expectStatus(approveWithCode(t, h, created.body.approvalUrl), 200);
    const fetched = await asWorker(w, token, 'get', `/v1/step-ups/${created.body.id}`);
    expect(fetched.body.sudoToken).toEqual(expect.any(String));
    const sudo = fetched.body.sudoToken as string;
    expect((await asWorker(w, sudo, 'get', '/v1/whoami')).status).toBe(200);
    await t.http.delete(`/v1/tasks/${task.id}`).set(bearer(h.tenant.apiKey)).expect(204);
    expect((await asWorker(w, sudo, 'get', '/v1/whoami')).status).toBe(401);
    expect((await asWorker(w, token, 'get', '/v1/whoami')).status).toBe(401);
  });
});

describe('2. the vault is reached through the scope connection:<name> only', () => {
  async function vault(boundaries: string[], taskScopes: string[]) {
    const upstream = await upstreamProvider('rt-original');
    const h = await human(t, { permissionBoundaries: boundaries });
    const con = await expectStatus(t.http.post('/v1/connections').set(bearer(h.tenant.apiKey)).send({ name: 'google-drive', tokenEndpoint: upstream.url, clientId: upstream.clientId, clientSecret: upstream.clientSecret }), 201);
    await t.http.put(`/v1/users/${h.userId}/connections/${con.body.id}`).set(bearer(h.tenant.apiKey)).send({ refreshToken: 'rt-original' }).expect(204);
    const { w, task } = await workerOf(h, taskScopes);
    const path = `/v1/tasks/${task.id}/connections/${con.body.id}/token`;
    const draw = async () => t.http.post(path).set('DPoP', await proof(w, 'POST', path));
    return { h, upstream, draw, connectionId: con.body.id };
  }

  it('an agent with only weather:read cannot draw the Google Drive token; nothing is called upstream', async () => {
    const v = await vault(['weather:read'], ['weather:read']);
    try {
      const res = await v.draw();
      expect(res.status).toBe(403);
      expect(res.body).toEqual(problem(403, 'action_not_permitted'));
      expect(res.body.access_token).toBeUndefined();
      expect(v.upstream.state.calls).toBe(0);
    } finally {
      await v.upstream.close();
    }
  });

  it('connection:google-drive in the boundaries but not in the task’s scopes: refused', async () => {
    const v = await vault(['weather:read', 'connection:google-drive'], ['weather:read']);
    try {
      expect((await v.draw()).status).toBe(403);
      expect(v.upstream.state.calls).toBe(0);
    } finally {
      await v.upstream.close();
    }
  });

  it('with connection:google-drive in the task’s scopes the worker gets the access token, until the boundary is removed', async () => {
    const v = await vault(['weather:read', 'connection:*'], ['connection:google-drive']);
    try {
      const ok = await v.draw();
      expect(ok.status, JSON.stringify(ok.body)).toBe(200);
      expect(ok.body.access_token).toBe(v.upstream.state.issued[0]);
      await t.http.patch(`/v1/agents/${v.h.agent.id}`).set(bearer(v.h.tenant.apiKey)).send({ permissionBoundaries: ['weather:read'] }).expect(200);
      expect((await v.draw()).status).toBe(403);
    } finally {
      await v.upstream.close();
    }
  });

  it('connection names are [a-z0-9_.-]{1,48} and unique per app', async () => {
    const h = await human(t);
    const body = { tokenEndpoint: 'http://127.0.0.1:9/token', clientId: 'c', clientSecret: 's' };
    for (const name of ['Google Drive', 'drive:x', '', 'a'.repeat(49)]) {
      const res = await t.http.post('/v1/connections').set(bearer(h.tenant.apiKey)).send({ ...body, name });
      expect(res.status, name).toBe(400);
      expect(res.body.code).toBe('validation_failed');
    }
    await t.http.post('/v1/connections').set(bearer(h.tenant.apiKey)).send({ ...body, name: 'drive' }).expect(201);
    expect((await t.http.post('/v1/connections').set(bearer(h.tenant.apiKey)).send({ ...body, name: 'drive' }).expect(409)).body.code).toBe('conflict');
    const other = await human(t);
    await t.http.post('/v1/connections').set(bearer(other.tenant.apiKey)).send({ ...body, name: 'drive' }).expect(201);
  });
});

describe('4. approvals and sudo grants end with their time box', () => {
  it('an approval fetched after the step-up’s expiresAt hands out no token', async () => {
    const h = await human(t);
    const created = await expectStatus(createStepUp(t, h, { expiresIn: 60, methods: ['totp'] }), 201);
    await expectStatus(approveWithCode(t, h, created.body.approvalUrl), 200);
    t.clock.advance(7 * 24 * 3600_000);
    const late = await agentToken(t, h.agent);
    const res = await get(late, created.body.id).expect(200);
    expect(res.body).toMatchObject({ status: 'approved', tokenIssued: false, reason: 'expired' });
    expect(res.body.mfaProxyToken).toBeUndefined();
    // Still nothing on the next fetch.
    expect((await get(late, created.body.id).expect(200)).body.mfaProxyToken).toBeUndefined();
  });

  it('the sudo token’s exp is sudoExpiresAt = approval + duration; after it the token is refused and inactive', async () => {
    const h = await human(t);
    const created = await expectStatus(createStepUp(t, h, { action: 'payments:send', grant: { type: 'sudo', scopes: ['payments:send'], duration: 60 }, methods: ['totp'] }), 201);
    await expectStatus(approveWithCode(t, h, created.body.approvalUrl), 200);
    const fetched = (await get(h.token, created.body.id).expect(200)).body;
    const sudo = fetched.sudoToken as string;
    const exp = decodeJwt(sudo).exp!;
    expect(exp * 1000).toBe(Date.parse(fetched.sudoExpiresAt));
    const granted = Date.parse(fetched.sudoExpiresAt) - Date.parse(fetched.decidedAt);
    expect(granted).toBeGreaterThan(59_000);
    expect(granted).toBeLessThanOrEqual(60_000);
    await t.http.get('/v1/whoami').set(bearer(sudo)).expect(200);
    t.clock.advance(exp * 1000 - Date.now() + 1);
    await t.http.get('/v1/whoami').set(bearer(sudo)).expect(401);
    const intro = await t.http.post('/oauth/introspect').set(bearer(h.tenant.apiKey)).type('form').send({ token: sudo }).expect(200);
    expect(intro.body).toEqual({ active: false });
  });
});

describe('5. the approval URL is the human’s capability', () => {
  it('by default the agent never receives it (created, identical pending, idempotent replay, status); the app’s step_up.created carries it', async () => {
    const receiver = await webhookReceiver();
    try {
      const h = await human(t, {}, PUBLIC_URL, { webhookUrl: receiver.url });
      const seen: unknown[] = [];
      const created = await expectStatus(createStepUp(t, h).set('Idempotency-Key', 'k-1'), 201);
      seen.push(created.body);
      expect(created.body).toEqual({ id: expect.any(String), status: 'pending', action: 'files:delete', resource: 'drive://q3.pdf', detailsHash: expect.any(String), bindingCode: expect.any(String), expiresAt: expect.any(String), interval: 5 });
      seen.push((await expectStatus(createStepUp(t, h).set('Idempotency-Key', 'k-1'), 200)).body);
      seen.push((await expectStatus(createStepUp(t, h), 200)).body);
      seen.push((await get(h.token, created.body.id).expect(200)).body);
      expect(JSON.stringify(seen)).not.toMatch(/approve\/|mpx_apr_/);

      const deadline = Date.now() + 10_000;
      while (!receiver.received.some((r) => r.json.type === 'step_up.created') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const event = receiver.received.find((r) => r.json.type === 'step_up.created');
      expect(event?.json.data).toMatchObject({ stepUpId: created.body.id, approvalUrl: expect.stringMatching(new RegExp(`^${PUBLIC_URL}/approve/mpx_apr_`)), actorType: 'agent' });
      // The human, holding the URL, decides.
      await expectStatus(approveWithCode(t, h, String(event!.json.data.approvalUrl)), 200);
    } finally {
      await receiver.close();
    }
  });

  it('with approvalUrlToAgent: true (set at creation or by PATCH) the agent gets it', async () => {
    const h = await human(t, {}, PUBLIC_URL, {});
    expect((await expectStatus(createStepUp(t, h), 201)).body.approvalUrl).toBeUndefined();
    const patched = await t.http.patch(`/v1/apps/${h.tenant.appId}`).set(bearer(t.adminToken)).send({ approvalUrlToAgent: true }).expect(200);
    expect(patched.body.approvalUrlToAgent).toBe(true);
    const res = await expectStatus(createStepUp(t, h, { resource: 'drive://other.pdf' }), 201);
    expect(res.body.approvalUrl).toMatch(new RegExp(`^${PUBLIC_URL}/approve/mpx_apr_`));
    await t.http.patch(`/v1/apps/${h.tenant.appId}`).set(bearer(t.adminToken)).send({ approvalUrlToAgent: 'yes' }).expect(400);
  });
});

describe('6. caps are exact under concurrency', () => {
  it(`12 wrong codes and the right one in parallel: at most 5 wrong codes are evaluated, and a step-up denied for attempts is never approved (${ROUNDS} rounds)`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const h = await human(t);
      const created = await expectStatus(createStepUp(t, h, { methods: ['totp'], resource: `drive://r${round}` }), 201);
      const token = approvalToken(created.body.approvalUrl);
      const near = new Set(await Promise.all([-30_000, 0, 30_000].map((d) => totpCode(h.totpSecret, Date.now() + d))));
      const wrong: string[] = [];
      for (let n = 100000; wrong.length < 12; n += 7919) if (!near.has(String(n))) wrong.push(String(n));
      const right = await totpCode(h.totpSecret);
      const codes = [...wrong.slice(0, 6), right, ...wrong.slice(6)];
      const results = await Promise.all(codes.map((code) => t.http.post(`/v1/approvals/${token}/totp`).send({ code })));
      const invalid = results.filter((r) => r.body.code === 'invalid_code').length;
      const approved = results.filter((r) => r.status === 200).length;
      const unexpected = results.filter((r) => r.status !== 200 && r.body.code !== 'invalid_code' && r.body.code !== 'not_pending');
      expect(unexpected.map((r) => r.body)).toEqual([]);
      const final = (await t.http.get(`/v1/approvals/${token}`).expect(200)).body;
      expect(invalid, `round ${round}`).toBeLessThanOrEqual(5);
      if (final.status === 'approved') {
        expect(approved).toBe(1);
        expect(invalid).toBeLessThanOrEqual(4);
      } else {
        expect(final).toMatchObject({ status: 'denied', reason: 'too_many_attempts' });
        expect(approved).toBe(0);
        expect(invalid).toBe(5);
      }
    }
  });

  it(`12 step-ups for one user at once: exactly 5 are pending (${ROUNDS} rounds)`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const h = await human(t);
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => createStepUp(t, h, { resource: `drive://file-${round}-${i}` })));
      expect(results.filter((r) => r.status === 201).length, `round ${round}`).toBe(5);
      const refused = results.filter((r) => r.status !== 201);
      expect(refused.map((r) => r.body.code)).toEqual(Array(7).fill('too_many_pending'));
      const pending = await t.app.get(DataSource).query(`SELECT count(*) AS n FROM step_ups WHERE user_id = ${usingPostgres() ? '$1' : '?'} AND status = 'pending'`, [h.userId]);
      expect(Number(pending[0].n)).toBe(5);
    }
  });
});

describe('8. Idempotency-Key', () => {
  it('after 24 h the key starts a new step-up like any other request', async () => {
    const h = await human(t);
    const first = await expectStatus(createStepUp(t, h, { expiresIn: 60 }).set('Idempotency-Key', 'daily'), 201);
    t.clock.advance(24 * 3600_000 + 60_000);
    const token = await agentToken(t, h.agent);
    const again = await expectStatus(t.http.post('/v1/step-ups').set(bearer(token)).set('Idempotency-Key', 'daily').send({ action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 }, expiresIn: 60 }), 201);
    expect(again.body.id).not.toBe(first.body.id);
    // And it is the key's step-up from now on.
    const replay = await expectStatus(t.http.post('/v1/step-ups').set(bearer(token)).set('Idempotency-Key', 'daily').send({ action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 }, expiresIn: 60 }), 200);
    expect(replay.body.id).toBe(again.body.id);
  });

  it('concurrent first uses of one key make one step-up and spend one creation', async () => {
    const h = await human(t);
    const results = await Promise.all(Array.from({ length: 6 }, () => createStepUp(t, h).set('Idempotency-Key', 'race')));
    expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 201]);
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
  });
});

describe('11. app-initiated step-ups', () => {
  const appStepUp = (h: Human, body: Record<string, unknown>) => t.http.post('/v1/step-ups').set(bearer(h.tenant.apiKey)).send({ agentId: h.agent.id, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 }, ...body });

  it('the app asks for its agent, gets the approval URL, and alone receives the token, once', async () => {
    const h = await human(t, {}, PUBLIC_URL, {});
    const created = await expectStatus(appStepUp(h, { methods: ['totp'] }), 201);
    expect(created.body).toMatchObject({ status: 'pending', action: 'files:delete', approvalUrl: expect.stringMatching(/\/approve\/mpx_apr_/) });
    // The agent does not see it.
    await get(h.token, created.body.id).expect(404);
    await t.http.delete(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(404);
    await expectStatus(approveWithCode(t, h, created.body.approvalUrl), 200);
    const first = await t.http.get(`/v1/step-ups/${created.body.id}?wait=1`).set(bearer(h.tenant.apiKey)).expect(200);
    expect(first.body).toMatchObject({ status: 'approved', mfaProxyToken: expect.any(String) });
    expect((await get(h.token, created.body.id).expect(404)).body.mfaProxyToken).toBeUndefined();
    const second = await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(h.tenant.apiKey)).expect(200);
    expect(second.body).toMatchObject({ tokenIssued: true });
    expect(second.body.mfaProxyToken).toBeUndefined();
    const body = { token: first.body.mfaProxyToken, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 }, agentId: h.agent.id };
    expect((await verify(h, body)).body).toMatchObject({ valid: true, agentId: h.agent.id, userId: h.userId });

    const audit = (await t.http.get(`/v1/audit-events?type=step_up.created&agentId=${h.agent.id}`).set(bearer(h.tenant.apiKey)).expect(200)).body.events;
    expect(audit).toEqual([expect.objectContaining({ type: 'step_up.created', actorType: 'app', actorId: h.tenant.appId, agentId: h.agent.id, userId: h.userId })]);
  });

  it('the app can long-poll and cancel it', async () => {
    const h = await human(t);
    const created = await expectStatus(appStepUp(h, {}), 201);
    const polled = await t.http.get(`/v1/step-ups/${created.body.id}?wait=1`).set(bearer(h.tenant.apiKey)).expect(200);
    expect(polled.body.status).toBe('pending');
    expect((await t.http.delete(`/v1/step-ups/${created.body.id}`).set(bearer(h.tenant.apiKey)).expect(200)).body).toEqual({ status: 'cancelled' });
    expect((await t.http.delete(`/v1/step-ups/${created.body.id}`).set(bearer(h.tenant.apiKey)).expect(409)).body.code).toBe('not_pending');
  });

  it('refuses an action outside the agent’s boundaries, an agent of another app, a missing agentId, and an agent’s step-up to the app', async () => {
    const h = await human(t);
    const other = await human(t);
    expect((await expectStatus(appStepUp(h, { action: 'admin:all' }), 403)).body).toEqual(problem(403, 'action_not_permitted'));
    expect((await expectStatus(appStepUp(h, { agentId: other.agent.id }), 404)).body).toEqual(problem(404, 'not_found'));
    expect((await expectStatus(appStepUp(h, { agentId: 'agt_nope' }), 404)).body.code).toBe('not_found');
    expect((await expectStatus(t.http.post('/v1/step-ups').set(bearer(h.tenant.apiKey)).send({ action: 'files:delete' }), 400)).body.code).toBe('validation_failed');
    // An agent cannot name another agent.
    expect((await expectStatus(createStepUp(t, h, { agentId: other.agent.id }), 400)).body.code).toBe('validation_failed');
    // The app cannot read its agent's own step-up (and so never its token).
    const mine = await expectStatus(createStepUp(t, h), 201);
    await t.http.get(`/v1/step-ups/${mine.body.id}`).set(bearer(h.tenant.apiKey)).expect(404);
    // A suspended agent cannot be asked for.
    await t.http.patch(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).send({ status: 'suspended' }).expect(200);
    expect((await expectStatus(appStepUp(h, { resource: 'drive://x' }), 409)).body.code).toBe('conflict');
  });
});

describe('found by the adversarial review', () => {
  it('narrowing the boundaries stops approved step-ups: no token is handed out after, and one handed out before verifies revoked', async () => {
    const h = await human(t);
    const handed = await expectStatus(createStepUp(t, h, { methods: ['totp'] }), 201);
    await expectStatus(approveWithCode(t, h, handed.body.approvalUrl), 200);
    const mfa = (await get(h.token, handed.body.id).expect(200)).body.mfaProxyToken;
    const byApp = await expectStatus(t.http.post('/v1/step-ups').set(bearer(h.tenant.apiKey)).send({ agentId: h.agent.id, action: 'files:delete', resource: 'drive://other.pdf', methods: ['totp'] }), 201);
    await expectStatus(approveWithCode(t, h, byApp.body.approvalUrl, await totpCode(h.totpSecret, Date.now() + 30_000)), 200);
    const own = await expectStatus(createStepUp(t, h, { resource: 'drive://third.pdf' }), 201);
    await t.http.patch(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).send({ permissionBoundaries: ['files:read', 'research:read'] }).expect(200);
    expect((await t.http.get(`/v1/step-ups/${byApp.body.id}`).set(bearer(h.tenant.apiKey)).expect(200)).body).toMatchObject({ status: 'approved', tokenIssued: false, reason: 'boundaries_narrowed' });
    // The agent's token lost files:* with the narrowing: its step-up is no longer its to read.
    await get(h.token, own.body.id).expect(404);
    expect((await verify(h, { token: mfa, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 } })).body).toEqual({ valid: false, reason: 'revoked' });
    // Widening again does not bring them back (re-review): the approval stays void, the pending one cancelled.
    await t.http.patch(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).send({ permissionBoundaries: ['files:*', 'research:read', 'payments:send'] }).expect(200);
    const again = (await t.http.get(`/v1/step-ups/${byApp.body.id}`).set(bearer(h.tenant.apiKey)).expect(200)).body;
    expect(again).toMatchObject({ status: 'approved', tokenIssued: false, reason: 'boundaries_narrowed' });
    expect(again.mfaProxyToken).toBeUndefined();
    expect((await get(h.token, own.body.id).expect(200)).body).toMatchObject({ status: 'cancelled', reason: 'boundaries_narrowed' });
  });

  it('a step-up refused for the pending cap spends no push budget', async () => {
    const h = await human(t);
    for (let i = 0; i < 5; i++) await expectStatus(createStepUp(t, h, { resource: `cap-${i}` }), 201);
    // 12 refusals: were they to spend pushes, 5 + 12 + 5 would pass the agent's 20 per hour.
    for (let i = 0; i < 12; i++) expect((await createStepUp(t, h, { resource: `over-${i}` })).body.code).toBe('too_many_pending');
    // Free the slots: 5 pushes spent so far.
    const pending = await t.app.get(DataSource).query(`SELECT id FROM step_ups WHERE agent_id = ${usingPostgres() ? '$1' : '?'} AND status = 'pending'`, [h.agent.id]);
    for (const row of pending) await t.http.delete(`/v1/step-ups/${row.id}`).set(bearer(h.token)).expect(200);
    for (let i = 0; i < 5; i++) await expectStatus(createStepUp(t, h, { resource: `after-${i}` }), 201);
  });

  it('a deleted user’s approval links show nothing', async () => {
    const h = await human(t);
    const pending = await expectStatus(createStepUp(t, h), 201);
    await t.http.delete(`/v1/users/${h.userId}`).set(bearer(h.tenant.apiKey)).expect(204);
    expect((await t.http.get(`/v1/approvals/${approvalToken(pending.body.approvalUrl)}`).expect(404)).body.code).toBe('not_found');
    await t.http.get(`/approve/${approvalToken(pending.body.approvalUrl)}`).expect(404);
  });

  it('one agent cannot spend its human’s whole push budget: 20 new pushes per agent per hour, the others still reach the human', async () => {
    const h = await human(t);
    const noisy = await agentToken(t, h.agent, { scope: 'research:read' });
    for (let i = 0; i < 20; i++) {
      const created = await expectStatus(t.http.post('/v1/step-ups').set(bearer(noisy)).send({ action: 'research:read', resource: `r${i}` }), 201);
      await t.http.delete(`/v1/step-ups/${created.body.id}`).set(bearer(noisy)).expect(200);
    }
    const refused = await expectStatus(t.http.post('/v1/step-ups').set(bearer(noisy)).send({ action: 'research:read', resource: 'r20' }), 429);
    expect(refused.body.code).toBe('rate_limited');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    const other = await createAgent(t, h.tenant, h.userId, { permissionBoundaries: ['research:read'] });
    await expectStatus(t.http.post('/v1/step-ups').set(bearer(await agentToken(t, other))).send({ action: 'research:read' }), 201);
  });

  it('NUL in query filters and URLs is 400, never 500 (PostgreSQL refuses NUL in text)', async () => {
    const h = await human(t);
    for (const q of ['type', 'agentId', 'taskId', 'userId']) {
      const res = await t.http.get(`/v1/audit-events?${q}=a%00b`).set(bearer(h.tenant.apiKey));
      expect(res.status, q).toBe(400);
      expect(res.body.code).toBe('validation_failed');
    }
    expect((await t.http.get('/v1/webhook-deliveries?before=a%00b').set(bearer(h.tenant.apiKey))).status).toBe(400);
    const con = await t.http.post('/v1/connections').set(bearer(h.tenant.apiKey)).send({ name: 'c1', tokenEndpoint: 'http://127.0.0.1:9/t\u0000', clientId: 'c', clientSecret: 's' });
    expect(con.status).toBe(400);
    const app = await t.http.post('/v1/apps').set(bearer(t.adminToken)).send({ name: 'x', webhookUrl: 'http://127.0.0.1/\u0000' });
    expect(app.status).toBe(400);
  });

  it('token issuance at /oauth/token is audited under the agent', async () => {
    const h = await human(t);
    await agentToken(t, h.agent, { scope: 'research:read', task_id: 'audited-issuance' });
    await t.http.post('/oauth/token').auth(h.agent.id, h.agent.clientSecret).type('form').send({ grant_type: 'client_credentials', scope: 'admin:all' }).expect(400);
    await expect.poll(async () => {
      const events = (await t.http.get('/v1/audit-events').query({ agentId: h.agent.id, type: 'http.request', limit: 200 }).set(bearer(h.tenant.apiKey))).body.events as { action: string; status: number; taskId: string | null }[];
      return events.filter((e) => e.action === 'POST /oauth/token').map((e) => e.status).sort();
    }).toEqual([200, 200, 400]);
  });
});
