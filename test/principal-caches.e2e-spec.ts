import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { AgentsRepository } from '../src/modules/agents/agents.repository.js';
import { AppsRepository } from '../src/modules/apps/apps.repository.js';
import { AppsService, KEY_REVOKED } from '../src/modules/apps/apps.service.js';
import { AgentTokensService } from '../src/modules/oauth/agent-tokens.service.js';
import { TasksRepository } from '../src/modules/tasks/tasks.repository.js';
import { AGENT_CHANGED, TASK_ENDED } from '../src/common/cache/channels.js';
import { JOIN_WINDOW_MS } from '../src/common/cache/loading-cache.js';
import { MemoryPubSub, PubSub, RedisPubSub } from '../src/common/cache/pubsub.js';
import { hashSecret } from '../src/common/crypto/tokens.js';
import { startApp, usingPostgres, type TestApp } from './support/app.js';
import { bearer, createTenant, world } from './support/fixtures.js';
import { holdAfterRead } from './support/faults.js';
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

/** Holds B's (or t's) first lookup of `key` through `repo[method]` after it has read its row (holdAfterRead). */
const holdLookupAfterRead = <R extends object>(repo: R, method: keyof R & string, key: string) => holdAfterRead(repo, method, (args) => args[0] === key);

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

  it('a lookup that never ends (a query on a dead connection) holds up the requests of its first second only', async () => {
    const w = await world(t);
    const key = await newApiKey(w.tenant.appId);
    const repo = t.app.get(AppsRepository);
    const original = repo.findActiveKeyByHash.bind(repo);
    let stuck = false;
    vi.spyOn(repo, 'findActiveKeyByHash').mockImplementation(async (hash: string) => {
      if (!stuck && hash === hashSecret(key.apiKey)) {
        stuck = true;
        return new Promise(() => undefined);
      }
      return original(hash);
    });
    const status = (r: Promise<{ status: number }>) => r.then((res) => res.status, (err: { code?: string }) => err.code ?? String(err));
    const first = status(t.http.get(`/v1/users/${w.userId}`).set(bearer(key.apiKey)).timeout(JOIN_WINDOW_MS + 2_000));
    await new Promise((resolve) => setTimeout(resolve, JOIN_WINDOW_MS + 100));
    expect(await status(t.http.get(`/v1/users/${w.userId}`).set(bearer(key.apiKey)).timeout(3_000))).toBe(200);
    expect(await first).toBe('ECONNABORTED');
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

/**
 * Holds back the delivery to `t`'s subscribers of the next message from Redis on `channel` that
 * `matches`: `arrived` resolves when it has come in, and it is delivered on `deliver`.
 */
function holdDelivery(t: TestApp, channel: string, matches: (m: Record<string, unknown>) => boolean) {
  const local = (t.app.get(PubSub) as unknown as { local: MemoryPubSub }).local;
  const original = local.publish.bind(local);
  let deliver!: () => void;
  const delivered = new Promise<void>((resolve) => (deliver = resolve));
  let signalArrived!: () => void;
  const arrived = new Promise<void>((resolve) => (signalArrived = resolve));
  vi.spyOn(local, 'publish').mockImplementation(async (ch, m) => {
    if (ch === channel && matches(m)) {
      signalArrived();
      await delivered;
    }
    return original(ch, m);
  });
  return { arrived, deliver };
}

describe.runIf(usingPostgres() && !!process.env.TEST_REDIS_URL)('a change on instance A while instance B has a lookup of the old row in flight (PostgreSQL + Redis)', () => {
  let a: TestApp;
  let b: TestApp;
  beforeAll(async () => {
    const shared = { REDIS_KEY_PREFIX: `mpx-caches-${randomBytes(4).toString('hex')}:` };
    [a, b] = await Promise.all([startApp(shared), startApp(shared)]);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
  });

  interface Race {
    /** B's lookup to hold: the repository, its method and the key it is called with. */
    hold: [object, string, string];
    /** A request on B that needs the looked-up row; its status. */
    request(): Promise<number>;
    /** The change, made on A. */
    change(): Promise<void>;
    /** The message that carries it to B. */
    message: [string, (m: Record<string, unknown>) => boolean];
  }

  const races: [string, () => Promise<Race>][] = [
    ['API key deleted', async () => {
      const w = await world(a);
      const key = (await a.http.post(`/v1/apps/${w.tenant.appId}/api-keys`).set(bearer(a.adminToken)).expect(201)).body as { id: string; apiKey: string };
      return {
        hold: [b.app.get(AppsRepository), 'findActiveKeyByHash', hashSecret(key.apiKey)],
        request: async () => (await b.http.get(`/v1/users/${w.userId}`).set(bearer(key.apiKey))).status,
        change: async () => void (await a.http.delete(`/v1/apps/${w.tenant.appId}/api-keys/${key.id}`).set(bearer(a.adminToken)).expect(204)),
        message: [KEY_REVOKED, (m) => m.keyId === key.id],
      };
    }],
    ['agent suspended', async () => {
      const w = await world(a);
      return {
        hold: [b.app.get(AgentsRepository), 'findById', w.agent.id],
        request: async () => (await b.http.get('/v1/whoami').set(bearer(w.token))).status,
        change: async () => void (await a.http.patch(`/v1/agents/${w.agent.id}`).set(bearer(w.tenant.apiKey)).send({ status: 'suspended' }).expect(200)),
        message: [AGENT_CHANGED, (m) => m.agentId === w.agent.id],
      };
    }],
    ['agent secret rotated (client authentication)', async () => {
      const w = await world(a);
      return {
        hold: [b.app.get(AgentsRepository), 'findById', w.agent.id],
        request: async () => (await b.http.post('/oauth/token').auth(w.agent.id, w.agent.clientSecret).type('form').send({ grant_type: 'client_credentials' })).status,
        change: async () => void (await a.http.post(`/v1/agents/${w.agent.id}/secret`).set(bearer(w.tenant.apiKey)).expect(201)),
        message: [AGENT_CHANGED, (m) => m.agentId === w.agent.id],
      };
    }],
    ['task ended (a worker token)', async () => {
      const w = await world(a);
      const wk = await worker();
      const task = (await a.http.post('/v1/tasks').set(bearer(w.token)).send({ taskId: 'held', scopes: ['research:read'], workerJwk: wk.jwk }).expect(201)).body as { id: string };
      const path = `/v1/tasks/${task.id}/token`;
      const workerToken = (await a.http.post(path).set('DPoP', await proof(wk, 'POST', path)).expect(200)).body.access_token as string;
      return {
        hold: [b.app.get(TasksRepository), 'findById', task.id],
        request: async () => (await b.http.get('/v1/whoami').set(await dpopAuth(wk, workerToken, 'GET', '/v1/whoami'))).status,
        change: async () => void (await a.http.delete(`/v1/tasks/${task.id}`).set(bearer(w.token)).expect(204)),
        message: [TASK_ENDED, (m) => m.taskId === task.id],
      };
    }],
  ];

  for (const [name, setUp] of races) {
    for (const order of ['the message is delivered before the lookup ends', 'the lookup ends (and fills the cache) before the message is delivered'] as const) {
      it(`${name}; ${order}: B refuses from then on`, async () => {
        const race = await setUp();
        const [repo, method, key] = race.hold;
        const hold = holdLookupAfterRead(repo, method as never, key);
        const inFlight = race.request();
        await hold.read;
        const message = holdDelivery(b, ...race.message);
        await race.change();
        await message.arrived;
        if (order === 'the message is delivered before the lookup ends') {
          message.deliver();
          await new Promise((resolve) => setImmediate(resolve));
          hold.release();
          await inFlight;
        } else {
          hold.release();
          await inFlight;
          message.deliver();
          await new Promise((resolve) => setImmediate(resolve));
        }
        expect(await race.request()).toBe(401);
      });
    }
  }

  it('a change whose message was lost, then a cache.reset (what a Redis reconnect sends) while B has a lookup in flight: B refuses from then on', async () => {
    const w = await world(a);
    const key = (await a.http.post(`/v1/apps/${w.tenant.appId}/api-keys`).set(bearer(a.adminToken)).expect(201)).body as { id: string; apiKey: string };
    const hold = holdLookupAfterRead(b.app.get(AppsRepository), 'findActiveKeyByHash', hashSecret(key.apiKey));
    const inFlight = b.http.get(`/v1/users/${w.userId}`).set(bearer(key.apiKey)).then((r) => r.status);
    await hold.read;
    // Deleted in the database with no message (as if it were lost), then B's subscriber reconnects.
    const repo = a.app.get(AppsRepository);
    await repo.ds.transaction((m) => repo.revokeKey(m, w.tenant.appId, key.id, Date.now()));
    (b.app.get(PubSub) as RedisPubSub).publishLocal('cache.reset', {});
    hold.release();
    expect(await inFlight).toBe(200);
    expect((await b.http.get(`/v1/users/${w.userId}`).set(bearer(key.apiKey))).status).toBe(401);
  });
});
