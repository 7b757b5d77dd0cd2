import { createHash, randomUUID } from 'node:crypto';
import { base64url, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PUBLIC_URL, startApp, type TestApp } from './support/app.js';
import { bearer, world } from './support/fixtures.js';
import { upstreamProvider } from './support/upstream.js';
import { proof, worker, type Worker } from './support/worker.js';

let t: TestApp;
const logs: string[] = [];
beforeAll(async () => {
  t = await startApp({ LOG_LEVEL: 'debug' }, { logs });
});
afterAll(async () => {
  await t?.close();
});

async function startTask(w: Worker, body: Record<string, unknown> = {}, agentBody: Record<string, unknown> = {}) {
  const base = await world(t, agentBody);
  const res = await t.http.post('/v1/tasks').set(bearer(base.token)).send({ taskId: 'deep-research-1', scopes: ['research:read'], workerJwk: w.jwk, ...body }).expect(201);
  return { ...base, task: res.body };
}

const tokenPath = (id: string) => `/v1/tasks/${id}/token`;
const drawToken = async (w: Worker, id: string) => t.http.post(tokenPath(id)).set('DPoP', await proof(w, 'POST', tokenPath(id)));

describe('tasks', () => {
  it('a worker draws ephemeral DPoP-bound tokens that work on agent endpoints with the DPoP scheme only', async () => {
    const w = await worker();
    const { task, agent } = await startTask(w);
    expect(task).toEqual({ id: expect.stringMatching(/^tsk_/), taskId: 'deep-research-1', status: 'active', scopes: ['research:read'], expiresAt: expect.any(String) });
    const res = await (await drawToken(w, task.id)).body;
    expect(res).toMatchObject({ access_token: expect.any(String), token_type: 'DPoP', expires_in: 300, scope: 'research:read' });
    const claims = JSON.parse(Buffer.from(res.access_token.split('.')[1], 'base64url').toString());
    expect(claims).toMatchObject({ task_id: 'deep-research-1', client_id: agent.id, cnf: { jkt: expect.any(String) }, tsk: task.id });
    const ath = createHash('sha256').update(res.access_token).digest('base64url');
    const who = await t.http.get('/v1/whoami').set('Authorization', `DPoP ${res.access_token}`).set('DPoP', await proof(w, 'GET', '/v1/whoami', { ath })).expect(200);
    expect(who.body).toMatchObject({ agentId: agent.id, taskId: 'deep-research-1' });
    await t.http.get('/v1/whoami').set(bearer(res.access_token)).expect(401);
  });

  it('refuses private keys and other key types as workerJwk; scopes outside the boundaries', async () => {
    const base = await world(t);
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const rsa = await generateKeyPair('RS256', { extractable: true });
    for (const workerJwk of [await exportJWK(privateKey), await exportJWK(rsa.publicKey), { kty: 'oct', k: 'c2VjcmV0' }, {}]) {
      const res = await t.http.post('/v1/tasks').set(bearer(base.token)).send({ taskId: 'x', scopes: ['research:read'], workerJwk }).expect(400);
      expect(res.body.code).toBe('validation_failed');
    }
    const ed = await worker('EdDSA');
    await t.http.post('/v1/tasks').set(bearer(base.token)).send({ taskId: 'x', scopes: ['research:read'], workerJwk: ed.jwk }).expect(201);
    expect((await t.http.post('/v1/tasks').set(bearer(base.token)).send({ taskId: 'x', scopes: ['admin:all'], workerJwk: ed.jwk }).expect(403)).body.code).toBe('action_not_permitted');
    await t.http.post('/v1/tasks').set(bearer(base.token)).send({ taskId: 'x', scopes: ['research:read'], workerJwk: ed.jwk, maxDuration: 100 }).expect(400);
  });

  describe('DPoP refusals on the token endpoint (401 invalid_dpop_proof)', () => {
    let w: Worker;
    let id: string;
    beforeAll(async () => {
      w = await worker();
      id = (await startTask(w)).task.id;
    });
    const expectRefused = async (dpop?: string) => {
      const req = t.http.post(tokenPath(id));
      const res = await (dpop === undefined ? req : req.set('DPoP', dpop)).expect(401);
      expect(res.body.code).toBe('invalid_dpop_proof');
    };

    it('no proof', () => expectRefused());
    it('another key', async () => expectRefused(await proof(await worker(), 'POST', tokenPath(id))));
    it('wrong htm', async () => expectRefused(await proof(w, 'GET', tokenPath(id))));
    it('wrong htu', async () => expectRefused(await proof(w, 'POST', '/v1/tasks/tsk_other/token')));
    it('stale iat', async () => expectRefused(await proof(w, 'POST', tokenPath(id), { iat: Math.floor(Date.now() / 1000) - 600 })));
    it('replayed jti', async () => {
      const p = await proof(w, 'POST', tokenPath(id));
      await t.http.post(tokenPath(id)).set('DPoP', p).expect(200);
      await expectRefused(p);
    });
    it('alg none and HS256', async () => {
      const payload = base64url.encode(JSON.stringify({ jti: randomUUID(), htm: 'POST', htu: `${PUBLIC_URL}${tokenPath(id)}`, iat: Math.floor(Date.now() / 1000) }));
      await expectRefused(`${base64url.encode(JSON.stringify({ alg: 'none', typ: 'dpop+jwt', jwk: w.jwk }))}.${payload}.`);
      const head = base64url.encode(JSON.stringify({ alg: 'HS256', typ: 'dpop+jwt', jwk: w.jwk }));
      const sig = (await import('node:crypto')).createHmac('sha256', 'k').update(`${head}.${payload}`).digest('base64url');
      await expectRefused(`${head}.${payload}.${sig}`);
    });
    it('private key in the header', async () => {
      const { privateKey } = await generateKeyPair('ES256', { extractable: true });
      const priv = await exportJWK(privateKey);
      await expectRefused(await new SignJWT({ jti: randomUUID(), htm: 'POST', htu: `${PUBLIC_URL}${tokenPath(id)}`, iat: Math.floor(Date.now() / 1000) }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: priv }).sign(privateKey));
    });
    it('control: a fresh proof by the worker key works', async () => {
      await t.http.post(tokenPath(id)).set('DPoP', await proof(w, 'POST', tokenPath(id))).expect(200);
    });
  });

  it('task revoked → 410 on the token endpoint and 401 for its live ephemeral token', async () => {
    const w = await worker();
    const { task, tenant } = await startTask(w);
    const token = (await drawToken(w, task.id)).body.access_token;
    const useIt = async () => t.http.get('/v1/whoami').set('Authorization', `DPoP ${token}`).set('DPoP', await proof(w, 'GET', '/v1/whoami', { ath: createHash('sha256').update(token).digest('base64url') }));
    expect((await useIt()).status).toBe(200);
    await t.http.delete(`/v1/tasks/${task.id}`).set(bearer(tenant.apiKey)).expect(204);
    const ended = await drawToken(w, task.id);
    expect(ended.status).toBe(410);
    expect(ended.body.code).toBe('task_ended');
    expect((await useIt()).status).toBe(401);
    expect((await t.http.get(`/v1/tasks/${task.id}`).set(bearer(tenant.apiKey)).expect(200)).body).toMatchObject({ status: 'ended', endReason: 'revoked_by_app' });
  });

  it('revoking the agent or deleting the user ends the task', async () => {
    const w = await worker();
    const a = await startTask(w);
    await t.http.delete(`/v1/agents/${a.agent.id}`).set(bearer(a.tenant.apiKey)).expect(204);
    expect((await drawToken(w, a.task.id)).status).toBe(410);
    const b = await startTask(w);
    await t.http.delete(`/v1/users/${b.userId}`).set(bearer(b.tenant.apiKey)).expect(204);
    expect((await drawToken(w, b.task.id)).status).toBe(410);
  });

  it('another agent or app cannot see or end the task', async () => {
    const w = await worker();
    const a = await startTask(w);
    const b = await world(t);
    await t.http.get(`/v1/tasks/${a.task.id}`).set(bearer(b.token)).expect(404);
    await t.http.delete(`/v1/tasks/${a.task.id}`).set(bearer(b.tenant.apiKey)).expect(404);
    await t.http.get(`/v1/tasks/${a.task.id}`).set(bearer(a.token)).expect(200);
  });
});

describe('the vault', () => {
  async function setup(mode: 'ok' | 'invalid_grant' | 'error' | 'slow' = 'ok') {
    const original = `rt-original-${randomUUID()}`;
    const upstream = await upstreamProvider(original);
    upstream.state.mode = mode;
    const w = await worker();
    // A connection is reached through the scope connection:<name>, in the boundaries and the task's scopes.
    const s = await startTask(w, { scopes: ['research:read', 'connection:drive'] }, { permissionBoundaries: ['research:read', 'connection:drive'] });
    const con = await t.http.post('/v1/connections').set(bearer(s.tenant.apiKey)).send({ name: 'drive', tokenEndpoint: upstream.url, clientId: upstream.clientId, clientSecret: upstream.clientSecret, scopes: ['drive.read'] }).expect(201);
    await t.http.put(`/v1/users/${s.userId}/connections/${con.body.id}`).set(bearer(s.tenant.apiKey)).send({ refreshToken: original }).expect(204);
    const path = `/v1/tasks/${s.task.id}/connections/${con.body.id}/token`;
    const draw = async () => t.http.post(path).set('DPoP', await proof(w, 'POST', path));
    return { ...s, w, original, upstream, connectionId: con.body.id, draw };
  }

  it('the worker gets an upstream access token; the rotated refresh token is stored; the original appears nowhere', async () => {
    const v = await setup();
    try {
      const res = await v.draw();
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ access_token: v.upstream.state.issued[0], expires_in: expect.any(Number), scope: 'drive.read' });
      expect(v.upstream.state.seen).toEqual([v.original]);
      // Cached: no second upstream call.
      expect((await v.draw()).body.access_token).toBe(v.upstream.state.issued[0]);
      expect(v.upstream.state.calls).toBe(1);

      // The rotated refresh token is what the vault now holds: after the cache is cleared, it is used.
      await t.app.get(DataSource).createQueryBuilder().update('user_connections').set({ accessTokenEnc: null, accessTokenExpiresAt: null }).where('connection_id = :c', { c: v.connectionId }).execute();
      expect((await v.draw()).status).toBe(200);
      expect(v.upstream.state.seen[1]).toMatch(/^rt-rotated-1-/);

      const { AuditService } = await import('../src/modules/audit/audit.service.js');
      await t.app.get(AuditService).sealAll();
      const ds = t.app.get(DataSource);
      const everything = JSON.stringify([
        await ds.createQueryBuilder().select('*').from('audit_events', 'e').getRawMany(),
        await ds.createQueryBuilder().select('*').from('outbox', 'o').getRawMany(),
        await ds.createQueryBuilder().select('*').from('user_connections', 'u').getRawMany(),
        res.body,
      ]);
      expect(everything).not.toContain(v.original);
      expect(everything).not.toContain(v.upstream.state.seen[1]);
      expect(everything).not.toContain(v.upstream.clientSecret);
      expect(logs.join('')).not.toContain(v.original);
      const audit = await ds.createQueryBuilder().select('e.type', 'type').addSelect('e.task_id', 'task_id').from('audit_events', 'e').where('e.app_id = :a', { a: v.tenant.appId }).getRawMany();
      expect(audit).toEqual(expect.arrayContaining([{ type: 'vault.upstream_refresh', task_id: 'deep-research-1' }, { type: 'task.created', task_id: 'deep-research-1' }]));
    } finally {
      await v.upstream.close();
    }
  });

  it('ten concurrent upstream-token requests → one upstream refresh', async () => {
    const v = await setup('slow');
    try {
      const results = await Promise.all(Array.from({ length: 10 }, () => v.draw()));
      expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
      expect(new Set(results.map((r) => r.body.access_token)).size).toBe(1);
      expect(v.upstream.state.calls).toBe(1);
    } finally {
      await v.upstream.close();
    }
  });

  it('invalid_grant → 409 reauth_required, connection marked, app told; a 5xx → 502 upstream_error, credential untouched', async () => {
    const err = await setup('error');
    try {
      const res = await err.draw();
      expect(res.status).toBe(502);
      expect(res.body.code).toBe('upstream_error');
      err.upstream.state.mode = 'ok';
      expect((await err.draw()).status).toBe(200); // the same refresh token still works
    } finally {
      await err.upstream.close();
    }
    const dead = await setup('invalid_grant');
    try {
      const res = await dead.draw();
      expect(res.status).toBe(409);
      expect(res.body.code).toBe('reauth_required');
      expect((await dead.draw()).body.code).toBe('reauth_required');
      expect(dead.upstream.state.calls).toBe(1);
      const outbox = await t.app.get(DataSource).createQueryBuilder().select('o.type', 'type').from('outbox', 'o').where('o.app_id = :a', { a: dead.tenant.appId }).getRawMany();
      expect(outbox.map((o) => o.type)).toContain('connection.reauth_required');
      // A new deposit brings it back.
      dead.upstream.state.mode = 'ok';
      dead.upstream.state.valid.add('rt-new');
      await t.http.put(`/v1/users/${dead.userId}/connections/${dead.connectionId}`).set(bearer(dead.tenant.apiKey)).send({ refreshToken: 'rt-new' }).expect(204);
      expect((await dead.draw()).status).toBe(200);
    } finally {
      await dead.upstream.close();
    }
  });

  it('unknown connection → 404; another app’s connection → 404', async () => {
    const v = await setup();
    try {
      const path = `/v1/tasks/${v.task.id}/connections/con_AAAAAAAAAAAAAAAAAAAAAA/token`;
      await t.http.post(path).set('DPoP', await proof(v.w, 'POST', path)).expect(404);
      const other = await world(t);
      await t.http.put(`/v1/users/${other.userId}/connections/${v.connectionId}`).set(bearer(other.tenant.apiKey)).send({ refreshToken: 'x' }).expect(404);
    } finally {
      await v.upstream.close();
    }
  });
});
