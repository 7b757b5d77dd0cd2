import { afterAll, beforeAll, expect, it } from 'vitest';
import { startApp, type TestApp } from './support/app.js';
import { agentToken, bearer, createAgent, createTenant, createUser } from './support/fixtures.js';

/**
 * Two instances on one database that do not hear each other (SQLite: each has its in-process
 * pub/sub; PostgreSQL + Redis: each its own key prefix, so its own channels), as when the revoking
 * instance is cut off from Redis: its publish fails, and the others never reconnect, so never reload.
 * A revocation still reaches the other instance, through the database, within PRINCIPAL_CACHE_SECONDS.
 */
let a: TestApp;
let b: TestApp;
beforeAll(async () => {
  a = await startApp({ PRINCIPAL_CACHE_SECONDS: '1' });
  const db = a.config.database;
  b = await startApp({ PRINCIPAL_CACHE_SECONDS: '1', DATABASE_URL: db.type === 'sqlite' ? `sqlite:${db.path}` : db.url });
});
afterAll(async () => {
  await b?.close();
  await a?.close();
});

it('a token revoked on an instance whose message never arrives stops working on the other within PRINCIPAL_CACHE_SECONDS', async () => {
  const tenant = await createTenant(a);
  const agent = await createAgent(a, tenant, await createUser(a, tenant));
  const token = await agentToken(a, agent);
  const other = await agentToken(a, agent);
  // B has verified the token (its cache of verified tokens) and the agent (its state cache).
  await b.http.get('/v1/whoami').set(bearer(token)).expect(200);
  await a.http.post('/oauth/revoke').auth(agent.id, agent.clientSecret).type('form').send({ token }).expect(200);
  await a.http.get('/v1/whoami').set(bearer(token)).expect(401);

  const revokedAt = Date.now();
  const onB = async () => (await b.http.get('/v1/whoami').set(bearer(token))).status;
  let status = await onB();
  while (status === 200 && Date.now() - revokedAt < 5_000) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    status = await onB();
  }
  expect(status).toBe(401);
  // One interval (1 s) and the reading: well under the 5 s waited for.
  expect(Date.now() - revokedAt).toBeLessThan(3_000);
  const intro = await b.http.post('/oauth/introspect').set(bearer(tenant.apiKey)).type('form').send({ token }).expect(200);
  expect(intro.body).toEqual({ active: false });
  // Only that token: another of the same agent still works on B.
  await b.http.get('/v1/whoami').set(bearer(other)).expect(200);
});
