import { decodeJwt } from 'jose';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from './support/app.js';
import { requestFrom, statuses, times, type SourcedResponse } from './support/sources.js';
import { bearer, createAgent, createTenant, createUser, type AgentFixture, type Tenant } from './support/fixtures.js';

/** The documented budgets (BUCKETS in src/modules/rate-limit/buckets.ts). */
const ISSUANCE_PER_MINUTE = 60;
const FAILURES_PER_SOURCE = 20;

/**
 * Two real TCP sources on loopback: the app listens on all IPv4 interfaces and we connect from
 * 127.0.0.1 or 127.0.0.2 (Linux routes the whole 127/8 to lo), so Fastify's `request.ip` differs.
 */
const SOURCE_A = '127.0.0.2';
const SOURCE_B = '127.0.0.1';

let t: TestApp;
let port: number;
beforeAll(async () => {
  t = await startApp();
  await t.app.listen(0, '0.0.0.0');
  port = (t.app.getHttpServer().address() as AddressInfo).port;
});
afterAll(async () => {
  await t?.close();
});

type Res = SourcedResponse;

/** POST /oauth/token with client_secret_basic, from the given local address. */
function tokenFrom(source: string, clientId: string, secret: string, form: Record<string, string> = {}): Promise<Res> {
  return postToken(source, basic(clientId, secret), form);
}

/** A JWT-shaped client assertion whose `iss` names the client (what the throttle reads before verifying anything). */
const unsignedAssertion = (clientId: string) =>
  ['{"alg":"ES256"}', JSON.stringify({ iss: clientId, sub: clientId })].map((part) => Buffer.from(part).toString('base64url')).join('.') + '.c2ln';

const basic = (clientId: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`;

/** POST /oauth/token with this Authorization header and a form body, from the given local address. */
function postToken(source: string, authorization: string, form: Record<string, string> = {}): Promise<Res> {
  return send(source, authorization, 'application/x-www-form-urlencoded', new URLSearchParams({ grant_type: 'client_credentials', ...form }).toString());
}

/** POST /oauth/token with a JSON body (whose values need not be strings), from the given local address. */
function postJson(source: string, authorization: string | undefined, json: Record<string, unknown>): Promise<Res> {
  return send(source, authorization, 'application/json', JSON.stringify({ grant_type: 'client_credentials', ...json }));
}

function send(source: string, authorization: string | undefined, contentType: string, body: string, path = '/oauth/token'): Promise<Res> {
  return requestFrom({ port, from: source, method: 'POST', path, body, headers: { ...(authorization === undefined ? {} : { Authorization: authorization }), 'Content-Type': contentType } });
}

describe('/oauth/token: failed client authentication is throttled per (client, source), never a right credential, apart from issuance', () => {
  let tenant: Tenant;
  let userId: string;
  let agent: AgentFixture;
  beforeAll(async () => {
    tenant = await createTenant(t);
    userId = await createUser(t, tenant);
  });

  it('a flood of wrong secrets for an agent is throttled at its source and neither locks the agent out (there or elsewhere) nor spends its issuance budget', async () => {
    agent = await createAgent(t, tenant, userId);

    // Source A guesses: invalid_client until its failure budget is gone, then 429.
    const flood: Res[] = [];
    for (let i = 0; i < 60; i++) flood.push(await tokenFrom(SOURCE_A, agent.id, `wrong-secret-${i}`));
    expect(flood.map((r) => r.status)).toEqual([...times(FAILURES_PER_SOURCE, 401), ...times(60 - FAILURES_PER_SOURCE, 429)]);
    expect(flood[0]!.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
    const throttled = flood[FAILURES_PER_SOURCE]!;
    expect(throttled.body).toEqual({ error: 'invalid_request', error_description: expect.stringMatching(/rate limit/) });
    expect(throttled.headers['content-type']).toMatch(/^application\/json/);
    expect(throttled.headers['cache-control']).toBe('no-store');
    expect(Number(throttled.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(throttled.headers['retry-after'])).toBeLessThanOrEqual(300);
    expect(throttled.headers['ratelimit-limit']).toBe(String(FAILURES_PER_SOURCE));
    expect(throttled.headers['ratelimit-remaining']).toBe('0');
    expect(Number(throttled.headers['ratelimit-reset'])).toBeGreaterThan(0);

    // The real agent sharing source A with the attacker (a NAT, the proxy in front of the service)
    // still gets its token: the right secret passes whatever the failures.
    const shared = await tokenFrom(SOURCE_A, agent.id, agent.clientSecret);
    expect(shared.status).toBe(200);
    expect(decodeJwt(shared.body.access_token as string).client_id).toBe(agent.id);
    // ...and a wrong one from there is still refused by the throttle.
    expect((await tokenFrom(SOURCE_A, agent.id, 'wrong-secret-again')).status).toBe(429);

    // From source B the agent has the rest of its issuance budget (one token went to source A), then its own 429.
    const fromB = await statuses(ISSUANCE_PER_MINUTE - 1, () => tokenFrom(SOURCE_B, agent.id, agent.clientSecret));
    expect(fromB).toEqual(times(ISSUANCE_PER_MINUTE - 1, 200));
    const over = await tokenFrom(SOURCE_B, agent.id, agent.clientSecret);
    expect(over.status).toBe(429);
    expect(over.headers['ratelimit-limit']).toBe(String(ISSUANCE_PER_MINUTE));
  });

  it('the failure throttle is per claimed client: another agent from the throttled source is not affected', async () => {
    const victim = await createAgent(t, tenant, userId);
    const bystander = await createAgent(t, tenant, userId);
    await statuses(FAILURES_PER_SOURCE, () => tokenFrom(SOURCE_A, victim.id, 'wrong-secret'));
    expect((await tokenFrom(SOURCE_A, victim.id, 'wrong-secret')).status).toBe(429);
    expect((await tokenFrom(SOURCE_A, bystander.id, 'wrong-secret')).status).toBe(401);
    const ok = await tokenFrom(SOURCE_A, bystander.id, bystander.clientSecret);
    expect(ok.status).toBe(200);
  });

  it('concurrent failures get exactly the budget of 401s (each failure spends atomically), and right secrets sent among them all pass', async () => {
    const a = await createAgent(t, tenant, userId);
    const wrong = 3 * FAILURES_PER_SOURCE;
    const right = 10;
    const answers = await Promise.all([
      ...Array.from({ length: wrong }, (_, i) => tokenFrom(SOURCE_A, a.id, `wrong-secret-${i}`)),
      ...Array.from({ length: right }, () => tokenFrom(SOURCE_A, a.id, a.clientSecret)),
    ]);
    const count = (rs: Res[]) => rs.reduce<Record<number, number>>((c, r) => ({ ...c, [r.status]: (c[r.status] ?? 0) + 1 }), {});
    expect(count(answers.slice(0, wrong))).toEqual({ 401: FAILURES_PER_SOURCE, 429: wrong - FAILURES_PER_SOURCE });
    expect(count(answers.slice(wrong))).toEqual({ 200: right });
  });

  it('every endpoint that authenticates an agent as an OAuth client spends from the same budget, and passes a right credential past it', async () => {
    const a = await createAgent(t, tenant, userId);
    // Each endpoint's own parameters, left incomplete: what a right credential gets is the endpoint's answer, whatever it is.
    const endpoints: [string, Record<string, string>][] = [
      ['/oauth/revoke', { token: 'not-a-token' }],
      ['/oauth/bc-authorize', { scope: 'openid' }],
      ['/oauth/txn-authorization', { transaction_authorization_id: 'unknown' }],
      ['/oauth/token', { grant_type: 'client_credentials', scope: 'not-a-boundary' }],
    ];
    const post = (path: string, secret: string, form: Record<string, string>) =>
      send(SOURCE_A, basic(a.id, secret), 'application/x-www-form-urlencoded', new URLSearchParams(form).toString(), path);
    // The budget spent a quarter at each endpoint.
    for (const [path, form] of endpoints) {
      expect(await statuses(FAILURES_PER_SOURCE / 4, () => post(path, 'wrong-secret', form)), path).toEqual(times(FAILURES_PER_SOURCE / 4, 401));
    }
    for (const [path, form] of endpoints) {
      const wrong = await post(path, 'wrong-secret', form);
      expect(wrong.status, path).toBe(429);
      const right = await post(path, a.clientSecret, form);
      // Past authentication: the endpoint's own answer to the incomplete request (200 or 400), never 401, 429 or a 500.
      expect([200, 400], `${path}: ${right.status} ${JSON.stringify(right.body)}`).toContain(right.status);
    }
  });

  it('undecodable Basic credentials are invalid_client, and counted against the client the body claims at that source', async () => {
    const victim = await createAgent(t, tenant, userId);
    const bystander = await createAgent(t, tenant, userId);
    // Base64 of bytes without a colon, and of an id with a broken %-escape: neither can be read as id:secret.
    const malformed = [`Basic ${Buffer.from('no-colon-here').toString('base64')}`, `Basic ${Buffer.from('%zz:secret').toString('base64')}`];
    const first = await postToken(SOURCE_A, malformed[0]!, { client_id: victim.id });
    expect(first.status).toBe(401);
    expect(first.body).toEqual({ error: 'invalid_client', error_description: 'malformed Basic credentials' });
    expect(first.headers['www-authenticate']).toBe('Basic realm="mfa-proxy"');
    const rest = await statuses(FAILURES_PER_SOURCE - 1, () => postToken(SOURCE_A, malformed[1]!, { client_id: victim.id }));
    expect(rest).toEqual(times(FAILURES_PER_SOURCE - 1, 401));
    // The claimed client's budget at this source is spent: its next failure there is 429, its real credentials pass; another client is untouched.
    expect((await postToken(SOURCE_A, malformed[0]!, { client_id: victim.id })).status).toBe(429);
    expect((await tokenFrom(SOURCE_A, victim.id, victim.clientSecret)).status).toBe(200);
    expect((await tokenFrom(SOURCE_A, bystander.id, 'wrong-secret')).status).toBe(401);
    expect((await tokenFrom(SOURCE_A, bystander.id, bystander.clientSecret)).status).toBe(200);
    expect((await tokenFrom(SOURCE_B, victim.id, victim.clientSecret)).status).toBe(200);
  });

  it('wrong secrets below the failure budget cost the agent nothing of its issuance budget, even from the same source', async () => {
    const a = await createAgent(t, tenant, userId);
    const wrong = await statuses(FAILURES_PER_SOURCE - 1, () => tokenFrom(SOURCE_A, a.id, 'wrong-secret'));
    expect(wrong).toEqual(times(FAILURES_PER_SOURCE - 1, 401));
    expect(await statuses(ISSUANCE_PER_MINUTE, () => tokenFrom(SOURCE_A, a.id, a.clientSecret))).toEqual(times(ISSUANCE_PER_MINUTE, 200));
    expect((await tokenFrom(SOURCE_A, a.id, a.clientSecret)).status).toBe(429);
  });

  it('a request refused before any secret is checked (invalid_request) spends nothing of the failure budget, and gets no token even with the right secret', async () => {
    const a = await createAgent(t, tenant, userId);
    // All but one of the source's failures for this client are spent.
    expect(await statuses(FAILURES_PER_SOURCE - 1, () => tokenFrom(SOURCE_A, a.id, 'wrong-secret'))).toEqual(times(FAILURES_PER_SOURCE - 1, 401));

    // Each malformed request names the claimed client (so it would be counted against this very
    // budget) and is sent once with the right secret and once with a wrong one, where it carries
    // one: none is a failed authentication, and the answer must not depend on the secret.
    const jwtBearer = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
    const assertion = unsignedAssertion(a.id);
    const form = (secret: string, raw: string) => send(SOURCE_A, basic(a.id, secret), 'application/x-www-form-urlencoded', `grant_type=client_credentials&${raw}`);
    const malformed: [string, (secret: string) => Promise<Res>][] = [
      ['use exactly one client authentication method', (secret) => postToken(SOURCE_A, basic(a.id, secret), { client_secret: secret })],
      ['use exactly one client authentication method', (secret) => postToken(SOURCE_A, basic(a.id, secret), { client_secret: '' })],
      ['use exactly one client authentication method', (secret) => postToken(SOURCE_A, basic(a.id, secret), { client_assertion: assertion, client_assertion_type: jwtBearer })],
      ['use exactly one client authentication method', (secret) => postJson(SOURCE_A, undefined, { client_id: a.id, client_secret: secret, client_assertion: assertion, client_assertion_type: jwtBearer })],
      ['client_id does not match the Basic credentials', (secret) => postToken(SOURCE_A, basic(a.id, secret), { client_id: 'agt_someone_else' })],
      ['client_id must be a string', (secret) => postJson(SOURCE_A, basic(a.id, secret), { client_id: 5 })],
      ['client_secret must be a string', (secret) => postJson(SOURCE_A, basic(a.id, secret), { client_secret: 12345 })],
      ['client_secret must be a string', (secret) => postJson(SOURCE_A, undefined, { client_id: a.id, client_secret: [secret] })],
      // A form parameter given twice is not a string either.
      ['client_secret must be a string', (secret) => form(secret, `client_id=${a.id}&client_secret=${encodeURIComponent(secret)}&client_secret=${encodeURIComponent(secret)}`)],
      ['client_assertion must be a string', (secret) => postJson(SOURCE_A, basic(a.id, secret), { client_assertion: { iss: a.id } })],
      [`client_assertion_type must be ${jwtBearer}`, () => postJson(SOURCE_A, undefined, { client_assertion: assertion, client_assertion_type: 'bearer' })],
      [`client_assertion_type must be ${jwtBearer}`, () => postJson(SOURCE_A, undefined, { client_assertion: assertion })],
    ];
    // The headers an invalid_client answer would change (a 401 carries WWW-Authenticate).
    const headersOf = (r: Res) => ({ type: r.headers['content-type'], cache: r.headers['cache-control'], challenge: r.headers['www-authenticate'] });
    for (const [description, request] of malformed) {
      const right = await request(a.clientSecret);
      const wrong = await request('wrong-secret');
      expect(right.status, description).toBe(400);
      expect(right.body).toEqual({ error: 'invalid_request', error_description: description });
      expect({ status: wrong.status, body: wrong.body, headers: headersOf(wrong) }).toEqual({ status: right.status, body: right.body, headers: headersOf(right) });
    }

    // 24 refusals later the budget still has its last failure: one more wrong secret is the 20th 401, the next 429.
    expect((await tokenFrom(SOURCE_A, a.id, 'wrong-secret')).status).toBe(401);
    expect((await tokenFrom(SOURCE_A, a.id, 'wrong-secret')).status).toBe(429);
    // Once it is spent, a malformed request is still refused as malformed (before any credential is
    // checked, so before the throttle), with the same answer whichever secret it carries.
    for (const [description, request] of malformed) {
      const [right, wrong] = [await request(a.clientSecret), await request('wrong-secret')];
      expect([right.status, right.body.error_description], description).toEqual([400, description]);
      expect({ status: wrong.status, body: wrong.body, headers: headersOf(wrong) }).toEqual({ status: right.status, body: right.body, headers: headersOf(right) });
    }
    expect((await tokenFrom(SOURCE_A, a.id, a.clientSecret)).status).toBe(200);
  });

  it('successful issuance is limited to 60 per minute per authenticated client, in RFC 6749 form, whatever the source', async () => {
    const a = await createAgent(t, tenant, userId);
    const half = ISSUANCE_PER_MINUTE / 2;
    expect(await statuses(half, () => tokenFrom(SOURCE_A, a.id, a.clientSecret))).toEqual(times(half, 200));
    expect(await statuses(half, () => tokenFrom(SOURCE_B, a.id, a.clientSecret))).toEqual(times(half, 200));
    const res = await tokenFrom(SOURCE_A, a.id, a.clientSecret);
    expect(res.status).toBe(429);
    expect(res.body).toEqual({ error: 'invalid_request', error_description: expect.stringMatching(/rate limit/) });
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(res.headers['ratelimit-limit']).toBe(String(ISSUANCE_PER_MINUTE));
    expect(res.headers['ratelimit-remaining']).toBe('0');
    // The issuance 429 is not an authentication failure: another client is unaffected.
    const other = await createAgent(t, tenant, userId);
    expect((await tokenFrom(SOURCE_A, other.id, other.clientSecret)).status).toBe(200);
  });
});

describe('/oauth/token: default scope (API.md v1.1)', () => {
  it('without a scope parameter the token carries every boundary, wildcards included', async () => {
    const tenant = await createTenant(t);
    const agent = await createAgent(t, tenant, await createUser(t, tenant), { permissionBoundaries: ['research:read', 'files:*'] });
    const res = await t.http.post('/oauth/token').auth(agent.id, agent.clientSecret).type('form').send({ grant_type: 'client_credentials' }).expect(200);
    expect(res.body.scope).toBe('research:read files:*');
    expect(decodeJwt(res.body.access_token).scope).toBe('research:read files:*');
    const intro = await t.http.post('/oauth/introspect').set(bearer(tenant.apiKey)).type('form').send({ token: res.body.access_token }).expect(200);
    expect(intro.body).toMatchObject({ active: true, client_id: agent.id, scope: 'research:read files:*' });
    const who = await t.http.get('/v1/whoami').set(bearer(res.body.access_token)).expect(200);
    expect(who.body.scopes).toEqual(['research:read', 'files:*']);
  });
});
