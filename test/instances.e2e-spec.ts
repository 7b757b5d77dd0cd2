import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { usingPostgres } from './support/app.js';
import { agentToken, bearer } from './support/fixtures.js';
import { deployment, startInstance, type Instance } from './support/instances.js';
import { approveWithCode, approveWithPasskey, createStepUp, expectStatus, human } from './support/step-up.js';
import { webhookReceiver } from './support/webhook-receiver.js';

const shared = usingPostgres() && !!process.env.TEST_REDIS_URL;

describe.runIf(shared)('two instances as separate processes on one PostgreSQL and one Redis', () => {
  let a: Instance;
  let b: Instance;
  beforeAll(async () => {
    const settings = deployment();
    [a, b] = await Promise.all([startInstance(settings), startInstance(settings)]);
  }, 90_000);
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('step-up created on A, approved on B: the long-poll waiting on A returns within a second', async () => {
    const h = await human(a.t);
    const created = await createStepUp(a.t, h).expect(201);
    const poll = a.t.http.get(`/v1/step-ups/${created.body.id}?wait=20`).set(bearer(h.token));
    const pollDone = poll.then((r) => ({ r, at: Date.now() }));
    await new Promise((r) => setTimeout(r, 300));
    const approvedAt = Date.now();
    await expectStatus(approveWithCode(b.t, h, created.body.approvalUrl), 200);
    const { r, at } = await pollDone;
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status: 'approved', mfaProxyToken: expect.any(String) });
    expect(at - approvedAt).toBeLessThan(1000);
  });

  it('an SSE stream on B receives events caused on A', async () => {
    const h = await human(a.t);
    const res = await fetch(`${b.base}/v1/events/stream`, { headers: { authorization: `Bearer ${h.tenant.apiKey}` } });
    const reader = res.body!.getReader();
    let text = '';
    await reader.read(); // ': connected'
    const created = await createStepUp(a.t, h).expect(201);
    const until = Date.now() + 10_000;
    while (!text.includes(created.body.id) && Date.now() < until) text += Buffer.from((await reader.read()).value!).toString();
    expect(text).toContain('event: step_up.created');
    expect(text).toContain(created.body.id);
    await reader.cancel();
  });

  it('50 concurrent verifications split across A and B: exactly one valid', async () => {
    const h = await human(a.t);
    for (let round = 0; round < 3; round++) {
      const created = await createStepUp(a.t, h, { resource: `r${round}` }).expect(201);
      await expectStatus(approveWithPasskey(b.t, h, created.body.approvalUrl), 200);
      const token = (await a.t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(200)).body.mfaProxyToken;
      const body = { token, action: 'files:delete', resource: `r${round}`, details: { size: 42 } };
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send(body)));
      expect(results.every((r) => r.status === 200)).toBe(true);
      expect(results.filter((r) => r.body.valid === true)).toHaveLength(1);
    }
  });

  it('a task DPoP proof used on A is refused on B; ten upstream-token requests split across A and B → one upstream refresh', async () => {
    const { exportJWK, generateKeyPair, SignJWT } = await import('jose');
    const { randomUUID } = await import('node:crypto');
    const { PUBLIC_URL } = await import('./support/app.js');
    const { upstreamProvider } = await import('./support/upstream.js');
    const h = await human(a.t, { permissionBoundaries: ['files:*', 'connection:up'] });
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const jwk = await exportJWK(publicKey);
    const proof = (path: string) => new SignJWT({ jti: randomUUID(), htm: 'POST', htu: `${PUBLIC_URL}${path}`, iat: Math.floor(Date.now() / 1000) }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk }).sign(privateKey);
    const token = await agentToken(a.t, h.agent, { scope: 'files:read connection:up' });
    const task = (await a.t.http.post('/v1/tasks').set(bearer(token)).send({ taskId: 'x-instance', scopes: ['files:read', 'connection:up'], workerJwk: jwk }).expect(201)).body;
    const path = `/v1/tasks/${task.id}/token`;
    const p = await proof(path);
    await a.t.http.post(path).set('DPoP', p).expect(200);
    expect((await b.t.http.post(path).set('DPoP', p).expect(401)).body.code).toBe('invalid_dpop_proof');

    const upstream = await upstreamProvider('rt-1');
    upstream.state.mode = 'slow';
    try {
      const con = await a.t.http.post('/v1/connections').set(bearer(h.tenant.apiKey)).send({ name: 'up', tokenEndpoint: upstream.url, clientId: upstream.clientId, clientSecret: upstream.clientSecret }).expect(201);
      await a.t.http.put(`/v1/users/${h.userId}/connections/${con.body.id}`).set(bearer(h.tenant.apiKey)).send({ refreshToken: 'rt-1' }).expect(204);
      const upPath = `/v1/tasks/${task.id}/connections/${con.body.id}/token`;
      const results = await Promise.all(Array.from({ length: 10 }, async (_, i) => (i % 2 ? a : b).t.http.post(upPath).set('DPoP', await proof(upPath))));
      expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
      expect(upstream.state.calls).toBe(1);
    } finally {
      await upstream.close();
    }
  });

  it('revoking an agent on A makes its token fail on B on the next request', async () => {
    const h = await human(a.t);
    await b.t.http.get('/v1/whoami').set(bearer(h.token)).expect(200);
    await a.t.http.delete(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).expect(204);
    await b.t.http.get('/v1/whoami').set(bearer(h.token)).expect(401);
  });
});

describe('crash and shutdown', () => {
  it('SIGKILL after approval, before the webhook is delivered: after restart the webhook arrives and the token is handed out once', async () => {
    // Without TEST_DATABASE_URL the deployment has its own SQLite file, which survives the crash.
    const settings = deployment({ WEBHOOK_RETRY_BASE_MS: '200', WEBHOOK_TIMEOUT_MS: '1000' });
    // The receiver is not listening yet: deliveries fail until after the crash.
    const rxPort = await (await import('./support/browser.js')).freePort();
    let first: Instance | null = await startInstance(settings);
    let second: Instance | null = null;
    let receiver: Awaited<ReturnType<typeof webhookReceiver>> | null = null;
    try {
      const h = await human(first.t);
      await first.t.http.patch(`/v1/apps/${h.tenant.appId}`).set(bearer(settings.ADMIN_TOKEN)).send({ webhookUrl: `http://127.0.0.1:${rxPort}/hooks` }).expect(200);
      const created = await createStepUp(first.t, h).expect(201);
      await expectStatus(approveWithCode(first.t, h, created.body.approvalUrl), 200);
      await first.stop('SIGKILL');
      first = null;

      receiver = await webhookReceiver({ port: rxPort });
      second = await startInstance(settings);
      const rx = receiver;
      await expect.poll(() => rx.received.map((r) => r.json.type), { timeout: 20_000, interval: 200 }).toContain('step_up.approved');
      const token = await agentToken(second.t, h.agent);
      const fetched = await second.t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(token)).expect(200);
      expect(fetched.body).toMatchObject({ status: 'approved', mfaProxyToken: expect.any(String) });
      expect((await second.t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(token)).expect(200)).body).toMatchObject({ tokenIssued: true });
      // Each event arrived once.
      const ids = rx.received.map((r) => r.json.id);
      expect(new Set(ids).size).toBe(ids.length);
    } finally {
      await first?.stop('SIGKILL');
      await second?.stop();
      await receiver?.close();
    }
  }, 90_000);

  it('SIGTERM: a waiting long-poll is answered with the current status and the process exits', async () => {
    const settings = deployment();
    const instance = await startInstance(settings);
    try {
      const h = await human(instance.t);
      const created = await createStepUp(instance.t, h).expect(201);
      const started = Date.now();
      const poll = fetch(`${instance.base}/v1/step-ups/${created.body.id}?wait=25`, { headers: { authorization: `Bearer ${h.token}` } });
      await new Promise((r) => setTimeout(r, 300));
      const exited = instance.stop('SIGTERM');
      const res = await poll;
      expect(res.status).toBe(200);
      expect(((await res.json()) as { status: string }).status).toBe('pending');
      expect(Date.now() - started).toBeLessThan(5000);
      // The process must also finish closing by itself, promptly (a held socket would keep it alive).
      const outcome = await Promise.race([exited.then(() => 'exited'), new Promise((r) => setTimeout(() => r('still running'), 10_000))]);
      expect(outcome).toBe('exited');
    } finally {
      await instance.stop('SIGKILL');
    }
  }, 60_000);
});
