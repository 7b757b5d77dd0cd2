import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { AgentsRepository } from '../src/modules/agents/agents.repository.js';
import { AppsRepository } from '../src/modules/apps/apps.repository.js';
import { AppsService } from '../src/modules/apps/apps.service.js';
import { AgentTokensService } from '../src/modules/oauth/agent-tokens.service.js';
import { TasksRepository } from '../src/modules/tasks/tasks.repository.js';
import { hashSecret } from '../src/common/crypto/tokens.js';
import { startApp, type TestApp } from './support/app.js';
import { bearer, createTenant, world } from './support/fixtures.js';
import { dpopAuth, proof, worker } from './support/worker.js';

/**
 * The per-instance caches of who is asking (an app's API key, an agent's status, a task's) against
 * the two ways they fail under load: a change that commits while a lookup of the old row is in
 * flight (the old row must not be cached for a lifetime after it), and a burst of requests that
 * all miss at once (one lookup, not one per request).
 */
let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});
afterEach(() => {
  vi.restoreAllMocks();
});

/**
 * Lets the next lookup of `key` through `repo[method]` read its row, then holds it until `release`:
 * the window in which a change can commit after the read and before the reader caches what it read.
 */
function holdLookupAfterRead<R extends object>(repo: R, method: keyof R & string, key: string) {
  const original = (repo[method] as (...args: unknown[]) => Promise<unknown>).bind(repo);
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let signalRead!: () => void;
  const read = new Promise<void>((resolve) => (signalRead = resolve));
  let held = false;
  vi.spyOn(repo, method as never).mockImplementation((async (...args: unknown[]) => {
    const row = await original(...args);
    if (!held && args[0] === key) {
      held = true;
      signalRead();
      await released;
    }
    return row;
  }) as never);
  return { read, release };
}

const adminAuth = () => bearer(t.adminToken);
const newApiKey = async (appId: string) => (await t.http.post(`/v1/apps/${appId}/api-keys`).set(adminAuth()).expect(201)).body as { id: string; apiKey: string };

describe('a change that commits while a lookup of the old row is in flight wins', () => {
  it('an API key deleted while a request with it is being authenticated is refused from then on', async () => {
    const w = await world(t);
    const key = await newApiKey(w.tenant.appId);
    const hold = holdLookupAfterRead(t.app.get(AppsRepository), 'findActiveKeyByHash', hashSecret(key.apiKey));
    const inFlight = t.http.get(`/v1/users/${w.userId}`).set(bearer(key.apiKey)).then((r) => r.status);
    await hold.read;
    await t.http.delete(`/v1/apps/${w.tenant.appId}/api-keys/${key.id}`).set(adminAuth()).expect(204);
    hold.release();
    // It asked before the deletion: answered from the row it read.
    expect(await inFlight).toBe(200);
    const after = await t.http.get(`/v1/users/${w.userId}`).set(bearer(key.apiKey));
    expect(after.status).toBe(401);
    // The app's other key is untouched.
    await t.http.get(`/v1/users/${w.userId}`).set(bearer(w.tenant.apiKey)).expect(200);
  });

  it('an agent suspended while a request with its token is being authenticated is refused from then on', async () => {
    const w = await world(t);
    t.app.get(AgentTokensService).forget(w.agent.id);
    const hold = holdLookupAfterRead(t.app.get(AgentsRepository), 'findById', w.agent.id);
    const inFlight = t.http.get('/v1/whoami').set(bearer(w.token)).then((r) => r.status);
    await hold.read;
    await t.http.patch(`/v1/agents/${w.agent.id}`).set(bearer(w.tenant.apiKey)).send({ status: 'suspended' }).expect(200);
    hold.release();
    expect(await inFlight).toBe(200);
    const after = await t.http.get('/v1/whoami').set(bearer(w.token));
    expect(after.status).toBe(401);
  });

  it('a task ended while a request with its worker’s token is being authenticated: the token is refused from then on', async () => {
    const w = await world(t);
    const wk = await worker();
    const task = (await t.http.post('/v1/tasks').set(bearer(w.token)).send({ taskId: 'held', scopes: ['research:read'], workerJwk: wk.jwk }).expect(201)).body as { id: string };
    const tokenPath = `/v1/tasks/${task.id}/token`;
    const drawn = await t.http.post(tokenPath).set('DPoP', await proof(wk, 'POST', tokenPath)).expect(200);
    const workerToken = drawn.body.access_token as string;
    const hold = holdLookupAfterRead(t.app.get(TasksRepository), 'findById', task.id);
    const inFlight = t.http.get('/v1/whoami').set(await dpopAuth(wk, workerToken, 'GET', '/v1/whoami')).then((r) => r.status);
    await hold.read;
    await t.http.delete(`/v1/tasks/${task.id}`).set(bearer(w.token)).expect(204);
    hold.release();
    expect(await inFlight).toBe(200);
    const after = await t.http.get('/v1/whoami').set(await dpopAuth(wk, workerToken, 'GET', '/v1/whoami'));
    expect(after.status).toBe(401);
  });
});

describe('requests that miss the cache at once share one lookup', () => {
  const burst = 50;

  // The first lookup is held until all the requests have asked (each has checked the cache by then),
  // so the burst overlaps one lookup on either database, as it does under load on PostgreSQL.
  it(`${burst} concurrent requests with an agent's token, its status not cached: one lookup of the agent, every request served`, async () => {
    const w = await world(t);
    const tokens = t.app.get(AgentTokensService);
    tokens.forget(w.agent.id);
    const repo = t.app.get(AgentsRepository);
    const hold = holdLookupAfterRead(repo, 'findById', w.agent.id);
    const asked = vi.spyOn(tokens, 'principal');
    const requests = Array.from({ length: burst }, () => t.http.get('/v1/whoami').set(bearer(w.token)).then((r) => r.status));
    await hold.read;
    await vi.waitFor(() => expect(asked).toHaveBeenCalledTimes(burst), { timeout: 10_000 });
    hold.release();
    expect(await Promise.all(requests)).toEqual(Array(burst).fill(200));
    expect(vi.mocked(repo.findById).mock.calls.filter(([id]) => id === w.agent.id)).toHaveLength(1);
  });

  it(`${burst} concurrent requests with a new API key: one lookup of the key, every request served`, async () => {
    const tenant = await createTenant(t);
    const key = await newApiKey(tenant.appId);
    const repo = t.app.get(AppsRepository);
    const hold = holdLookupAfterRead(repo, 'findActiveKeyByHash', hashSecret(key.apiKey));
    const asked = vi.spyOn(t.app.get(AppsService), 'authenticate');
    const requests = Array.from({ length: burst }, () => t.http.get('/v1/agents').query({ userId: 'usr_none' }).set(bearer(key.apiKey)).then((r) => r.status));
    await hold.read;
    await vi.waitFor(() => expect(asked).toHaveBeenCalledTimes(burst), { timeout: 10_000 });
    hold.release();
    expect(await Promise.all(requests)).toEqual(Array(burst).fill(200));
    expect(vi.mocked(repo.findActiveKeyByHash).mock.calls.filter(([hash]) => hash === hashSecret(key.apiKey))).toHaveLength(1);
  });

  it(`${burst} concurrent requests with an unknown API key: all refused, nothing cached (the next request looks again)`, async () => {
    const findKey = vi.spyOn(t.app.get(AppsRepository), 'findActiveKeyByHash');
    const unknown = `mpx_app_${'x'.repeat(43)}`;
    const statuses = await Promise.all(Array.from({ length: burst }, () => t.http.get('/v1/agents').set(bearer(unknown)).then((r) => r.status)));
    expect(statuses).toEqual(Array(burst).fill(401));
    const lookups = findKey.mock.calls.filter(([hash]) => hash === hashSecret(unknown)).length;
    expect(lookups).toBeGreaterThanOrEqual(1);
    await t.http.get('/v1/agents').set(bearer(unknown)).expect(401);
    expect(findKey.mock.calls.filter(([hash]) => hash === hashSecret(unknown))).toHaveLength(lookups + 1);
  });
});
