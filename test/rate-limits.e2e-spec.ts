import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from './support/app.js';
import { agentToken, bearer, createAgent, createTenant, createUser } from './support/fixtures.js';
import { approveWithCode, createStepUp, human } from './support/step-up.js';

let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

describe('rate limits', () => {
  it('an agent with rateLimitPerMinute 5: the 6th request in a minute → 429 with Retry-After and RateLimit-*', async () => {
    const tenant = await createTenant(t);
    const agent = await createAgent(t, tenant, await createUser(t, tenant), { rateLimitPerMinute: 5 });
    const token = await agentToken(t, agent);
    for (let i = 0; i < 5; i++) {
      const ok = await t.http.get('/v1/whoami').set(bearer(token)).expect(200);
      expect(ok.headers['ratelimit-limit']).toBe('5');
      expect(ok.headers['ratelimit-remaining']).toBe(String(4 - i));
    }
    const res = await t.http.get('/v1/whoami').set(bearer(token)).expect(429);
    expect(res.body).toMatchObject({ status: 429, code: 'rate_limited' });
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(res.headers['ratelimit-limit']).toBe('5');
    expect(res.headers['ratelimit-remaining']).toBe('0');
    expect(Number(res.headers['ratelimit-reset'])).toBeGreaterThan(0);
    // Another agent of the same user is not affected.
    const other = await agentToken(t, await createAgent(t, tenant, agent.userId, { rateLimitPerMinute: 5 }));
    await t.http.get('/v1/whoami').set(bearer(other)).expect(200);
  });

  // Failed client authentication has its own budget per (claimed client, source): 20 per 5 min.
  // Sources apart and the 60/min issuance budget: test/oauth-throttle.e2e-spec.ts.
  it('/oauth/token: wrong secrets are throttled per client and source (20 per 5 min) in RFC 6749 form with Retry-After', async () => {
    const tenant = await createTenant(t);
    const agent = await createAgent(t, tenant, await createUser(t, tenant));
    const results = [];
    for (let i = 0; i < 21; i++) results.push((await t.http.post('/oauth/token').auth(agent.id, 'wrong-secret').type('form').send({ grant_type: 'client_credentials' })).status);
    expect(results).toEqual([...Array.from({ length: 20 }, () => 401), 429]);
    const res = await t.http.post('/oauth/token').auth(agent.id, 'wrong-secret').type('form').send({ grant_type: 'client_credentials' }).expect(429);
    expect(res.body.error).toBe('invalid_request');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    // The right secret is never held back, even from the same source.
    await t.http.post('/oauth/token').auth(agent.id, agent.clientSecret).type('form').send({ grant_type: 'client_credentials' }).expect(200);
  });

  it('TOTP attempts are capped per user across step-ups (20 per 15 min)', async () => {
    const h = await human(t);
    let wrongSent = 0;
    for (let i = 0; i < 4; i++) {
      const s = await createStepUp(t, h, { resource: `r${i}` }).expect(201);
      for (let j = 0; j < 5; j++) {
        const res = await approveWithCode(t, h, s.body.approvalUrl, '000000');
        expect(res.status).toBe(400);
        wrongSent++;
      }
    }
    expect(wrongSent).toBe(20);
    const s = await createStepUp(t, h, { resource: 'last' }).expect(201);
    const res = await approveWithCode(t, h, s.body.approvalUrl);
    expect(res.status).toBe(429);
    expect(res.body.code).toBe('rate_limited');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
  });
});

describe('push cap and a store that cannot be reached', () => {
  it('the per-user push cap holds across agents; dedupe does not count', async () => {
    const t2 = await startApp({ PUSHES_PER_USER_PER_HOUR: '3' });
    try {
      const h = await human(t2);
      const second = await agentToken(t2, await createAgent(t2, h.tenant, h.userId, { permissionBoundaries: ['files:*'] }));
      await createStepUp(t2, h, { resource: 'p1' }).expect(201);
      await createStepUp(t2, h, { resource: 'p1' }).expect(200); // identical pending: no new push
      await createStepUp(t2, h, { resource: 'p2' }).expect(201);
      await t2.http.post('/v1/step-ups').set(bearer(second)).send({ action: 'files:delete', resource: 'p3' }).expect(201);
      const res = await t2.http.post('/v1/step-ups').set(bearer(second)).send({ action: 'files:delete', resource: 'p4' }).expect(429);
      expect(res.body.code).toBe('rate_limited');
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    } finally {
      await t2.close();
    }
  });

  it('Redis unreachable: plain throttles fail open (and count it), code attempts fail closed', async () => {
    const t3 = await startApp({ REDIS_URL: 'redis://127.0.0.1:1', DATABASE_URL: `sqlite:${(await import('node:os')).tmpdir()}/mpx-noredis-${Date.now()}.sqlite` });
    try {
      const h = await human(t3);
      await t3.http.get('/v1/whoami').set(bearer(h.token)).expect(200);
      const metrics = await t3.http.get('/metrics').expect(200);
      expect(metrics.text).toMatch(/mfa_proxy_fail_open_total\{component="rate-limit:agentRequests"\} [1-9]/);
      const s = await createStepUp(t3, h).expect(201);
      const code = await approveWithCode(t3, h, s.body.approvalUrl);
      expect(code.status).toBe(503);
      expect(code.body.code).toBe('service_unavailable');
      // A committed change is answered as done though its cache invalidation cannot be sent: the
      // rotated secret is shown (and works here at once), the old one is refused here at once.
      const rotated = await t3.http.post(`/v1/agents/${h.agent.id}/secret`).set(bearer(h.tenant.apiKey)).expect(201);
      await t3.http.post('/oauth/token').auth(h.agent.id, rotated.body.clientSecret).type('form').send({ grant_type: 'client_credentials' }).expect(200);
      await t3.http.patch(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).send({ status: 'suspended' }).expect(200);
      await t3.http.get('/v1/whoami').set(bearer(h.token)).expect(401);
    } finally {
      await t3.close();
    }
  }, 60_000);
});
