import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from './support/app.js';
import { requestFrom, statuses, times, type SourcedResponse } from './support/sources.js';
import { bearer, world } from './support/fixtures.js';

/**
 * TRUST_PROXY against real TCP sources on loopback (Linux routes the whole 127/8 to lo): the app
 * trusts 127.0.0.2 as its load balancer; 127.0.0.1 is a client that reaches it directly.
 */
const PROXY = '127.0.0.2';
const DIRECT = '127.0.0.1';
/** The documented budgets per source (BUCKETS.loginChallenges, BUCKETS.oauthTokenFailures). */
const CHALLENGES_PER_SOURCE = 30;
const FAILURES_PER_SOURCE = 20;

const send = (port: number, from: string, method: 'GET' | 'POST', path: string, headers: Record<string, string>): Promise<SourcedResponse> =>
  requestFrom({ port, from, method, path, ...(method === 'POST' ? { body: '{}', headers: { ...headers, 'Content-Type': 'application/json' } } : { headers }) });

async function listening(env: Record<string, string>, host = '0.0.0.0'): Promise<{ t: TestApp; port: number }> {
  const t = await startApp(env);
  await t.app.listen(0, host);
  return { t, port: (t.app.getHttpServer().address() as AddressInfo).port };
}

/** Passkey sign-in options (no credential needed): its budget is kept per source address. */
const loginOptions = (port: number, from: string, forwardedFor?: string) =>
  send(port, from, 'POST', '/v1/me/login/webauthn/options', { 'X-Requested-With': 'mfa-proxy', ...(forwardedFor ? { 'X-Forwarded-For': forwardedFor } : {}) });

describe('TRUST_PROXY: behind a load balancer, per-source budgets and audit rows are the client’s', () => {
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    // 192.0.2.10: a second proxy in front of the first (a CDN before the load balancer).
    ({ t, port } = await listening({ TRUST_PROXY: `${PROXY},192.0.2.10` }));
  });
  afterAll(async () => {
    await t?.close();
  });

  it('clients behind the trusted proxy each have their own budget', async () => {
    expect(await statuses(CHALLENGES_PER_SOURCE, () => loginOptions(port, PROXY, '203.0.113.7'))).toEqual(times(CHALLENGES_PER_SOURCE, 200));
    expect((await loginOptions(port, PROXY, '203.0.113.7')).status).toBe(429);
    // Another client through the same proxy, and the proxy's own requests, are not held back.
    expect((await loginOptions(port, PROXY, '203.0.113.8')).status).toBe(200);
    expect((await loginOptions(port, PROXY)).status).toBe(200);
  });

  it('a client cannot choose its key by sending its own X-Forwarded-For through the proxy: the address the proxy appended counts', async () => {
    // The proxy appends the address it saw; what the client wrote before it is not trusted.
    expect((await loginOptions(port, PROXY, '198.51.100.1, 203.0.113.7')).status).toBe(429);
    expect((await loginOptions(port, PROXY, '127.0.0.2, 203.0.113.7')).status).toBe(429);
  });

  it('X-Forwarded-For from a peer that is not a trusted proxy is ignored', async () => {
    const forged = (i: number) => `192.0.2.${i}`;
    const answers: number[] = [];
    for (let i = 0; i < CHALLENGES_PER_SOURCE + 1; i++) answers.push((await loginOptions(port, DIRECT, forged(i))).status);
    expect(answers).toEqual([...times(CHALLENGES_PER_SOURCE, 200), 429]);
  });

  it('the audit row records the client the proxy names', async () => {
    const h = await world(t);
    expect((await send(port, PROXY, 'GET', '/v1/whoami', { ...bearer(h.token), 'X-Forwarded-For': '203.0.113.50' })).status).toBe(200);
    expect((await send(port, DIRECT, 'GET', '/v1/whoami', { ...bearer(h.token), 'X-Forwarded-For': '203.0.113.51' })).status).toBe(200);
    await expect
      .poll(async () => {
        const { events } = (await t.http.get('/v1/audit-events').query({ agentId: h.agent.id, type: 'http.request' }).set(bearer(h.tenant.apiKey)).expect(200)).body as { events: { action: string; ip: string | null }[] };
        return events.filter((e) => e.action === 'GET /v1/whoami').map((e) => e.ip).sort();
      }, { timeout: 5000 })
      .toEqual([DIRECT, '203.0.113.50']);
  });

  it('a forwarded entry that is not an address (the proxy passed on what the client wrote) is never taken as the client: the proxy is', async () => {
    const h = await world(t);
    // A zone id passes Node's isIP whatever its text (fe80::1%<anything>): it is not taken either.
    const junks = ['not-an-address', `${'9'.repeat(200)}`, '203.0.113.60 , <script>', `fe80::1%${'a'.repeat(100)}`, 'fe80::1%eth0'];
    for (const junk of junks) {
      expect((await send(port, PROXY, 'GET', '/v1/whoami', { ...bearer(h.token), 'X-Forwarded-For': junk })).status, junk).toBe(200);
    }
    await expect
      .poll(async () => {
        const { events } = (await t.http.get('/v1/audit-events').query({ agentId: h.agent.id, type: 'http.request' }).set(bearer(h.tenant.apiKey)).expect(200)).body as { events: { action: string; ip: string | null }[] };
        return events.filter((e) => e.action === 'GET /v1/whoami').map((e) => e.ip);
      }, { timeout: 5000 })
      .toEqual(times(junks.length, PROXY));
  });

  it('the address is stored canonical, without the port some proxies append (a.b.c.d:port, [v6]:port)', async () => {
    const h = await world(t);
    for (const entry of ['203.0.113.70:51234', '[2001:db8:7::1]:443', '[2001:DB8:7:0::2]', '::FFFF:CB00:7147']) {
      expect((await send(port, PROXY, 'GET', '/v1/whoami', { ...bearer(h.token), 'X-Forwarded-For': entry })).status, entry).toBe(200);
    }
    await expect
      .poll(async () => {
        const { events } = (await t.http.get('/v1/audit-events').query({ agentId: h.agent.id, type: 'http.request' }).set(bearer(h.tenant.apiKey)).expect(200)).body as { events: { action: string; ip: string | null }[] };
        return events.filter((e) => e.action === 'GET /v1/whoami').map((e) => e.ip).sort();
      }, { timeout: 5000 })
      .toEqual(['2001:db8:7::1', '2001:db8:7::2', '203.0.113.70', '203.0.113.71']);
  });

  it('behind two proxies that both append ports, each client keeps its own budget', async () => {
    const chain = (client: string) => `${client}:51000, 192.0.2.10:443`;
    expect(await statuses(CHALLENGES_PER_SOURCE + 1, () => loginOptions(port, PROXY, chain('198.51.100.7')))).toEqual([...times(CHALLENGES_PER_SOURCE, 200), 429]);
    expect((await loginOptions(port, PROXY, chain('198.51.100.8'))).status).toBe(200);
    // The outer proxy's own requests are its own too.
    expect((await loginOptions(port, PROXY, '192.0.2.10:443')).status).toBe(200);
  });

  it('failed client authentications are budgeted per client behind the proxy, and the right secret still passes', async () => {
    const h = await world(t);
    const token = (clientIp: string, secret: string) =>
      requestFrom({
        port, from: PROXY, method: 'POST', path: '/oauth/token', body: 'grant_type=client_credentials',
        headers: { Authorization: `Basic ${Buffer.from(`${h.agent.id}:${secret}`).toString('base64')}`, 'Content-Type': 'application/x-www-form-urlencoded', 'X-Forwarded-For': clientIp },
      });
    expect(await statuses(FAILURES_PER_SOURCE + 1, () => token('203.0.113.80', 'wrong-secret'))).toEqual([...times(FAILURES_PER_SOURCE, 401), 429]);
    expect((await token('203.0.113.81', 'wrong-secret')).status).toBe(401);
    expect((await token('203.0.113.80', h.agent.clientSecret)).status).toBe(200);
  });
});

describe('without TRUST_PROXY, X-Forwarded-For is ignored', () => {
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    ({ t, port } = await listening({}));
  });
  afterAll(async () => {
    await t?.close();
  });

  it('every request of a peer spends the peer’s budget, whatever it forwards', async () => {
    const answers: number[] = [];
    for (let i = 0; i < CHALLENGES_PER_SOURCE + 1; i++) answers.push((await loginOptions(port, PROXY, `203.0.113.${i}`)).status);
    expect(answers).toEqual([...times(CHALLENGES_PER_SOURCE, 200), 429]);
    expect((await loginOptions(port, DIRECT, '203.0.113.200')).status).toBe(200);
  });
});

describe('TRUST_PROXY on a dual-stack listener (IPv4 peers seen as ::ffff:a.b.c.d)', () => {
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    ({ t, port } = await listening({ TRUST_PROXY: PROXY }, '::'));
  });
  afterAll(async () => {
    await t?.close();
  });

  it('an IPv4 entry matches the proxy, and clients behind it keep their own budgets', async () => {
    expect(await statuses(CHALLENGES_PER_SOURCE + 1, () => loginOptions(port, PROXY, '203.0.113.90'))).toEqual([...times(CHALLENGES_PER_SOURCE, 200), 429]);
    expect((await loginOptions(port, PROXY, '203.0.113.91')).status).toBe(200);
    expect((await loginOptions(port, DIRECT, '203.0.113.92')).status).toBe(200);
  });
});
