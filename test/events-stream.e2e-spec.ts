import { randomBytes } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventStreamService } from '../src/modules/events/event-stream.service.js';
import { OutboxService } from '../src/modules/events/outbox.service.js';
import { startApp, usingPostgres, type TestApp } from './support/app.js';
import { freePort } from './support/browser.js';
import { bearer, createAgent, createTenant, createUser, type Tenant } from './support/fixtures.js';

let t: TestApp;
let base: string;
let port: number;
beforeAll(async () => {
  port = await freePort();
  t = await startApp();
  await t.app.listen({ port, host: '127.0.0.1' });
  base = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  await t?.close();
});

interface StreamEvent {
  id: string;
  type: string;
  data: { id: string; type: string; data: Record<string, unknown> };
}

/** An SSE client of `GET /v1/events/stream` that parses what arrives. */
async function openStream(apiKey: string, lastEventId?: string) {
  const controller = new AbortController();
  const res = await fetch(`${base}/v1/events/stream`, {
    headers: { authorization: `Bearer ${apiKey}`, ...(lastEventId ? { 'last-event-id': lastEventId } : {}) },
    signal: controller.signal,
  });
  expect(res.status).toBe(200);
  const events: StreamEvent[] = [];
  let buffer = '';
  let connected = false;
  const reader = res.body!.getReader();
  const reading = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += Buffer.from(value).toString();
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (block.startsWith(': connected')) connected = true;
        const fields = Object.fromEntries(block.split('\n').filter((l) => !l.startsWith(':')).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]));
        if (fields.id) events.push({ id: fields.id, type: fields.event, data: JSON.parse(fields.data) });
      }
    }
  })().catch(() => undefined);
  await expect.poll(() => connected, { timeout: 5_000 }).toBe(true);
  return {
    events,
    ids: () => events.map((e) => e.id),
    close: async () => {
      controller.abort();
      await reading;
    },
  };
}

/** One `agent.revoked` event of the tenant, caused over HTTP: returns its event id. */
async function revokeAnAgent(tenant: Tenant, userId: string): Promise<string> {
  const agent = await createAgent(t, tenant, userId);
  await t.http.delete(`/v1/agents/${agent.id}`).set(bearer(tenant.apiKey)).expect(204);
  const ds = t.app.get(DataSource);
  const rows: { id: string; payload: string }[] = await ds.createQueryBuilder().select('o.id', 'id').addSelect('o.payload', 'payload').from('outbox', 'o').where('o.app_id = :a', { a: tenant.appId }).getRawMany();
  return rows.find((r) => JSON.parse(r.payload).data.agentId === agent.id)!.id;
}

/** Records every query of the outbox this instance sends that carries `value` as a parameter. */
function queriesCarrying(value: string): { count: () => number; stop: () => void } {
  const ds = t.app.get(DataSource);
  const logger = ds.logger;
  const original = logger.logQuery.bind(logger);
  let n = 0;
  logger.logQuery = (query, parameters, runner) => {
    if (/outbox/i.test(query) && (parameters as unknown[] | undefined)?.some((p) => p === value || (Array.isArray(p) && p.includes(value)))) n++;
    return original(query, parameters, runner);
  };
  return { count: () => n, stop: () => void (logger.logQuery = original) };
}

/** Counts over a window with a deadline: nothing else to wait for when asserting that nothing happens. */
const quietWindow = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('GET /v1/events/stream: order and resumption', () => {
  it('an event stamped earlier than one already streamed (this instance’s clock behind) still reaches the stream and a resumed stream', async () => {
    const tenant = await createTenant(t);
    const userId = await createUser(t, tenant);
    const s = await openStream(tenant.apiKey);
    try {
      const first = await revokeAnAgent(tenant, userId);
      await expect.poll(() => s.ids(), { timeout: 5_000 }).toEqual([first]);
      // The next event is stamped a minute earlier (a skewed instance, or a transaction that read
      // the clock long before it committed): it still follows, once.
      t.clock.advance(-60_000);
      let second: string;
      try {
        second = await revokeAnAgent(tenant, userId);
      } finally {
        t.clock.reset();
      }
      const third = await revokeAnAgent(tenant, userId);
      await expect.poll(() => s.ids(), { timeout: 5_000 }).toEqual([first, second, third]);

      const resumed = await openStream(tenant.apiKey, first);
      try {
        await expect.poll(() => resumed.ids(), { timeout: 5_000 }).toEqual([second, third]);
      } finally {
        await resumed.close();
      }
    } finally {
      await s.close();
    }
  });

  it('Last-Event-ID resumes exactly: every later event, in the same order, once', async () => {
    const tenant = await createTenant(t);
    const userId = await createUser(t, tenant);
    const s = await openStream(tenant.apiKey);
    const ids: string[] = [];
    try {
      for (let i = 0; i < 6; i++) ids.push(await revokeAnAgent(tenant, userId));
      await expect.poll(() => s.ids(), { timeout: 5_000 }).toEqual(ids);
      for (const e of s.events) expect(e.data).toMatchObject({ id: e.id, type: 'agent.revoked' });
    } finally {
      await s.close();
    }
    const resumed = await openStream(tenant.apiKey, ids[2]);
    try {
      await expect.poll(() => resumed.ids(), { timeout: 5_000 }).toEqual(ids.slice(3));
      // A later event arrives after them: nothing was sent twice or out of order meanwhile.
      const marker = await revokeAnAgent(tenant, userId);
      await expect.poll(() => resumed.ids(), { timeout: 5_000 }).toEqual([...ids.slice(3), marker]);
    } finally {
      await resumed.close();
    }
  });
});

// Deleting the newest outbox rows of the database is only this file's business on SQLite (its own
// file); on PostgreSQL other test processes write to the same table at the same time.
describe.skipIf(usingPostgres())('GET /v1/events/stream: after retention', () => {
  it('new events reach open and resumed streams after the newest delivered rows were deleted', async () => {
    const tenant = await createTenant(t);
    const userId = await createUser(t, tenant);
    const s = await openStream(tenant.apiKey);
    try {
      const ids = [await revokeAnAgent(tenant, userId), await revokeAnAgent(tenant, userId)];
      await expect.poll(() => s.ids(), { timeout: 5_000 }).toEqual(ids);
      // Retention deletes delivered rows, the newest included.
      await t.app.get(DataSource).query('DELETE FROM outbox');
      const third = await revokeAnAgent(tenant, userId);
      await expect.poll(() => s.ids(), { timeout: 5_000 }).toEqual([...ids, third]);
      const fourth = await revokeAnAgent(tenant, userId);
      await expect.poll(() => s.ids(), { timeout: 5_000 }).toEqual([...ids, third, fourth]);
      const resumed = await openStream(tenant.apiKey, third);
      try {
        await expect.poll(() => resumed.ids(), { timeout: 5_000 }).toEqual([fourth]);
      } finally {
        await resumed.close();
      }
    } finally {
      await s.close();
    }
  });
});

describe.runIf(usingPostgres())('GET /v1/events/stream: a transaction that commits late (PostgreSQL)', () => {
  it('its event reaches the stream after the events that committed before it, and a stream resumed from them', async () => {
    const tenant = await createTenant(t);
    const userId = await createUser(t, tenant);
    const s = await openStream(tenant.apiKey);
    const ds = t.app.get(DataSource);
    const outbox = t.app.get(OutboxService);
    // A transaction on its own connection writes an event (the way every module does) and
    // then waits, as one waiting on a row lock does, before it commits.
    const slow = ds.createQueryRunner();
    await slow.connect();
    try {
      await slow.startTransaction();
      const late = await outbox.add(slow.manager, tenant.appId, 'agent.revoked', { agentId: 'agt_late', userId, reason: 'deleted_by_app' });
      // Meanwhile a later event commits and is streamed.
      const early = await revokeAnAgent(tenant, userId);
      await expect.poll(() => s.ids(), { timeout: 5_000 }).toEqual([early]);
      await slow.commitTransaction();
      // Then the slow one commits: it follows, in commit order.
      await expect.poll(() => s.ids(), { timeout: 5_000 }).toEqual([early, late]);
      const resumed = await openStream(tenant.apiKey, early);
      try {
        await expect.poll(() => resumed.ids(), { timeout: 5_000 }).toEqual([late]);
      } finally {
        await resumed.close();
      }
    } finally {
      if (slow.isTransactionActive) await slow.rollbackTransaction();
      await slow.release();
      await s.close();
    }
  });

  it('an event committed late by another connection (not this process) reaches the stream too', async () => {
    const tenant = await createTenant(t);
    const userId = await createUser(t, tenant);
    const s = await openStream(tenant.apiKey);
    const client = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    await client.connect();
    try {
      await client.query('BEGIN');
      const late = `evt_${randomBytes(16).toString('base64url')}`;
      const createdAt = Date.now();
      const payload = { id: late, type: 'agent.revoked', createdAt: new Date(createdAt).toISOString(), data: { agentId: 'agt_other', userId, reason: 'deleted_by_app' } };
      await client.query(
        `INSERT INTO outbox (id, app_id, type, payload, created_at, delivered_at, delivery_status, attempts, next_attempt_at) VALUES ($1, $2, 'agent.revoked', $3, $4, NULL, 'no_endpoint', 0, $4)`,
        [late, tenant.appId, JSON.stringify(payload), createdAt],
      );
      const early = await revokeAnAgent(tenant, userId);
      await expect.poll(() => s.ids(), { timeout: 5_000 }).toEqual([early]);
      await client.query('COMMIT');
      await expect.poll(() => s.ids(), { timeout: 5_000 }).toEqual([early, late]);
      expect(s.events[1].data).toEqual(payload);
    } finally {
      await client.end();
      await s.close();
    }
  });
});

describe('GET /v1/events/stream: resources', () => {
  it('20+ clients that drop at once leave no stream, timer or query behind', async () => {
    const tenant = await createTenant(t);
    const userId = await createUser(t, tenant);
    const lastEventId = await revokeAnAgent(tenant, userId);
    // The event's delivery is settled (no webhook URL), so the dispatcher has no more business with
    // this app; and the key is warm in the cache.
    const delivery = async () => (await t.http.get('/v1/webhook-deliveries').set(bearer(tenant.apiKey)).expect(200)).body.deliveries[0]?.status;
    await expect.poll(delivery, { timeout: 10_000 }).toBe('no_endpoint');
    const streams = t.app.get(EventStreamService);
    const openedBefore = streams.stats().opened;
    // What the server saw: requests parsed, and its side of our connections closed.
    const server = t.app.getHttpServer() as Server;
    const ports = new Set<number>();
    let requests = 0;
    let serverClosed = 0;
    const onRequest = (req: IncomingMessage) => void (req.headers.authorization === `Bearer ${tenant.apiKey}` && requests++);
    const onConnection = (socket: Socket) => socket.on('close', () => void (ports.has(socket.remotePort!) && serverClosed++));
    server.on('request', onRequest);
    server.on('connection', onConnection);
    const queries = queriesCarrying(tenant.appId);
    const n = 24;
    try {
      const request = (resume: boolean) =>
        `GET /v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${tenant.apiKey}\r\n${resume ? `Last-Event-ID: ${lastEventId}\r\n` : ''}\r\n`;
      await Promise.all(
        Array.from({ length: n }, (_, i) =>
          new Promise<void>((resolve) => {
            const socket = connect(port, '127.0.0.1', () => {
              ports.add(socket.localPort!);
              socket.end(request(i % 2 === 0), () => socket.destroy());
            });
            socket.on('close', () => resolve());
            socket.on('error', () => resolve());
          }),
        ),
      );
      // Every request the server parsed has reached the handler, and every stream it opened is gone.
      await expect.poll(() => serverClosed, { timeout: 5_000 }).toBe(n);
      expect(requests).toBeGreaterThan(0);
      await expect.poll(() => streams.stats().opened - openedBefore, { timeout: 5_000 }).toBe(requests);
      await expect.poll(() => streams.stats(), { timeout: 5_000 }).toMatchObject({ streams: 0, timers: 0 });
      const before = queries.count();
      await quietWindow(2_000);
      expect(queries.count() - before).toBe(0);
    } finally {
      queries.stop();
      server.off('request', onRequest);
      server.off('connection', onConnection);
    }
  });

  it('one shared poller, however many streams: idle streams cost no query of their own, and every stream gets every event', async () => {
    const tenant = await createTenant(t);
    const userId = await createUser(t, tenant);
    const streams = t.app.get(EventStreamService);
    const clients = await Promise.all(Array.from({ length: 10 }, () => openStream(tenant.apiKey)));
    const queries = queriesCarrying(tenant.appId);
    try {
      expect(streams.stats()).toMatchObject({ streams: 10, timers: 2 });
      await quietWindow(2_000);
      expect(queries.count()).toBe(0);
      queries.stop();
      const id = await revokeAnAgent(tenant, userId);
      for (const c of clients) await expect.poll(() => c.ids(), { timeout: 5_000 }).toEqual([id]);
    } finally {
      queries.stop();
      await Promise.all(clients.map((c) => c.close()));
    }
    await expect.poll(() => streams.stats(), { timeout: 5_000 }).toMatchObject({ streams: 0, timers: 0 });
  });
});
