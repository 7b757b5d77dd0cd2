import { randomBytes } from 'node:crypto';
import { DataSource, IsNull } from 'typeorm';
import { PubSub } from '../src/common/cache/pubsub.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { OutboxEntity } from '../src/modules/events/outbox.entity.js';
import { OUTBOX_PUBLISHED } from '../src/modules/events/outbox-publisher.js';
import { OutboxRepository } from '../src/modules/events/outbox.repository.js';
import { OutboxService } from '../src/modules/events/outbox.service.js';
import { WEBHOOK_PER_APP_CONCURRENCY, WebhookDispatcher } from '../src/modules/events/webhook-dispatcher.js';
import { RetentionService } from '../src/modules/ops/retention.service.js';
import { privateDatabase, startApp, usingPostgres, type TestApp } from './support/app.js';
import { bearer, createTenant, type Tenant } from './support/fixtures.js';
import { webhookReceiver } from './support/webhook-receiver.js';

// Issue 12: the outbox's background work costs in proportion to the new events, in statements too.
// On a database of its own: on the shared PostgreSQL, the publishers and dispatchers of other test
// files' instances would publish and deliver these apps' rows, announcing it on their own Redis
// prefixes, which this instance does not hear.
let t: TestApp;
let db: Awaited<ReturnType<typeof privateDatabase>>;
beforeAll(async () => {
  db = await privateDatabase();
  t = await startApp({ RETENTION_SWEEP_SECONDS: '0', ...db.env });
});
afterAll(async () => {
  await t?.close();
  await db?.drop();
});

const DAY = 86_400_000;

/** `n` events for the tenant, written the way every module writes them, `perTx` to a transaction. */
async function events(tenant: Tenant, n: number, perTx = 50): Promise<void> {
  const outbox = t.app.get(OutboxService);
  const ds = t.app.get(DataSource);
  for (let i = 0; i < n; i += perTx) {
    await ds.transaction(async (m) => {
      for (let j = i; j < Math.min(n, i + perTx); j++) await outbox.add(m, tenant.appId, 'agent.revoked', { agentId: `agt_tp${j}`, userId: 'usr_tp', reason: 'deleted_by_app' });
    });
  }
}

/**
 * The UPDATE statements this instance runs on the outbox while `fn` runs (TypeORM's query log
 * hook); with `appId`, only those whose parameters name that app (on the shared PostgreSQL this
 * instance's dispatchers also work for other test files' apps).
 */
async function outboxUpdatesDuring(fn: () => Promise<unknown>, appId?: string): Promise<string[]> {
  const ds = t.app.get(DataSource);
  const seen: string[] = [];
  const spy = vi.spyOn(ds.logger, 'logQuery').mockImplementation(
    (sql: string, params?: unknown) =>
      void (/^\s*(WITH [\s\S]*?\)\s*)?UPDATE\s+"?outbox"?\s/i.test(sql) && !/stream_seq =/.test(sql) && (!appId || JSON.stringify(params ?? []).includes(appId)) && seen.push(sql)),
  );
  try {
    await fn();
  } finally {
    spy.mockRestore();
  }
  return seen;
}

/** `n` events for the tenant added as a batch is (OutboxService.addMany, as consumed tokens are), `perTx` to a transaction. */
async function batchEvents(tenant: Tenant, n: number, perTx = 50): Promise<void> {
  const outbox = t.app.get(OutboxService);
  const ds = t.app.get(DataSource);
  for (let i = 0; i < n; i += perTx) {
    const batch = Array.from({ length: Math.min(n, i + perTx) - i }, (_, j) => ({ appId: tenant.appId, type: 'agent.revoked' as const, data: { agentId: `agt_tp${i + j}`, userId: 'usr_tp', reason: 'deleted_by_app' } }));
    await ds.transaction((m) => outbox.addMany(m, batch));
  }
}

const statuses = async (appId: string) => {
  const rows = await t.app.get(DataSource).getRepository(OutboxEntity).find({ select: { deliveryStatus: true }, where: { appId } });
  return rows.reduce<Record<string, number>>((acc, r) => ({ ...acc, [r.deliveryStatus]: (acc[r.deliveryStatus] ?? 0) + 1 }), {});
};

const unpublished = (appId: string) => t.app.get(DataSource).getRepository(OutboxEntity).countBy({ appId, streamSeq: IsNull() });

describe('outbox background work (issue 12)', () => {
  it('a commit wakes the ping and push dispatchers only when it added a row of theirs (a verify load adds webhook events only); a rollback wakes nobody', async () => {
    const repo = t.app.get(OutboxRepository);
    const outbox = t.app.get(OutboxService);
    const ds = t.app.get(DataSource);
    const woken = { ping: 0, push: 0, any: 0 };
    repo.onAddedCommitted(() => woken.ping++, 'ping');
    repo.onAddedCommitted(() => woken.push++, 'push');
    repo.onAddedCommitted(() => woken.any++);
    const tenant = await createTenant(t);
    await events(tenant, 10, 5);
    expect(woken).toEqual({ ping: 0, push: 0, any: 2 });
    // A CIBA ping (to an address the SSRF guard refuses: it ends ping_failed) beside a webhook event.
    const ping = { endpoint: 'https://127.0.0.1:9/cb', bearer: 'b'.repeat(32), body: { auth_req_id: 'x' }, agentId: 'agt_tp', stepUpId: 'stp_tp' };
    await ds.transaction(async (m) => {
      await outbox.add(m, tenant.appId, 'agent.revoked', { agentId: 'agt_tp', userId: 'usr_tp', reason: 'deleted_by_app' });
      await outbox.addPing(m, tenant.appId, ping);
    });
    expect(woken).toEqual({ ping: 1, push: 0, any: 3 });
    await expect(ds.transaction(async (m) => {
      await outbox.addPing(m, tenant.appId, ping);
      throw new Error('rolled back');
    })).rejects.toThrow('rolled back');
    expect(woken).toEqual({ ping: 1, push: 0, any: 3 });
  });

  it('events of an app without a webhookUrl end no_endpoint in a few statements, not one per event', async () => {
    const tenant = await createTenant(t);
    const updates = await outboxUpdatesDuring(async () => {
      await events(tenant, 300);
      await expect.poll(() => statuses(tenant.appId), { timeout: 15_000, interval: 100 }).toEqual({ no_endpoint: 300 });
    }, tenant.appId);
    expect(updates.length).toBeLessThan(30);
  });

  it("a backlog of an app without a webhookUrl is finished in rounds of at most 250 rows, and the event loop gets a turn between rounds", async () => {
    const tenant = await createTenant(t);
    const repo = t.app.get(OutboxRepository);
    const finish = repo.finishWithoutEndpoint.bind(repo);
    const rounds: { rows: number; loopTurned: boolean }[] = [];
    let turned = true;
    const spy = vi.spyOn(repo, 'finishWithoutEndpoint').mockImplementation(async (apps, now) => {
      const done = await finish(apps, now);
      const rows = done.get(tenant.appId) ?? 0;
      if (rows > 0) {
        rounds.push({ rows, loopTurned: turned });
        // A macrotask: it has run by the next round only if the dispatcher yielded to the event loop.
        turned = false;
        setImmediate(() => (turned = true));
      }
      return done;
    });
    try {
      await events(tenant, 600, 600);
      await expect.poll(() => statuses(tenant.appId), { timeout: 15_000, interval: 100 }).toEqual({ no_endpoint: 600 });
    } finally {
      spy.mockRestore();
    }
    expect(rounds.reduce((n, r) => n + r.rows, 0)).toBe(600);
    expect(Math.max(...rounds.map((r) => r.rows))).toBeLessThanOrEqual(250);
    expect(rounds.every((r) => r.loopTurned)).toBe(true);
  });

  it('a batch of events (consumed tokens) of an app without a webhookUrl is written no_endpoint: no update of their rows, no wake-up of the webhook dispatcher', async () => {
    const repo = t.app.get(OutboxRepository);
    const tenant = await createTenant(t);
    // It answers late, so the app's events are still pending when the publisher's round runs, even
    // if the dispatcher claimed them first (PostgreSQL: the round then skips them, and the next one,
    // at most a second later, announces them): the announcement of pending work is then certain.
    const rx = await webhookReceiver({ delayMs: 2_500 });
    try {
      const withUrl = await createTenant(t, undefined, { webhookUrl: rx.url });
      let woken = 0;
      repo.onAddedCommitted(() => woken++, 'pending');
      const announced: unknown[] = [];
      const off = t.app.get(PubSub).subscribe(OUTBOX_PUBLISHED, (m) => void announced.push(m.pending));
      try {
        const updates = await outboxUpdatesDuring(() => batchEvents(tenant, 300), tenant.appId);
        // Finished as they commit: no poll, no delivery status written afterwards.
        expect(await statuses(tenant.appId)).toEqual({ no_endpoint: 300 });
        expect(updates).toEqual([]);
        expect(woken).toBe(0);
        // Published for the stream, announced as having nothing to deliver (the dispatchers of every instance stay asleep).
        await expect.poll(() => unpublished(tenant.appId), { timeout: 5_000, interval: 20 }).toBe(0);
        expect(announced.length).toBeGreaterThan(0);
        expect(announced.every((pending) => pending === false)).toBe(true);
        // An app with a webhookUrl: pending, its commit wakes the dispatcher, its publication says so.
        // (Once the publisher is idle, past its 50 ms between rounds, so its round runs on the
        // commit, before the delivery: a round after it would rightly say that nothing is pending.)
        await new Promise((resolve) => setTimeout(resolve, 200));
        await batchEvents(withUrl, 2);
        expect(woken).toBe(1);
        await expect.poll(() => announced.includes(true), { timeout: 5_000, interval: 20 }).toBe(true);
        await expect.poll(() => statuses(withUrl.appId), { timeout: 5_000, interval: 50 }).toEqual({ delivered: 2 });
      } finally {
        off();
      }
    } finally {
      await rx.close();
    }
  });

  it('a webhookUrl set where this instance cannot see it change (another instance, Redis down) still gets every event written after it', async () => {
    const rx = await webhookReceiver();
    try {
      const tenant = await createTenant(t);
      await batchEvents(tenant, 1);
      expect(await statuses(tenant.appId)).toEqual({ no_endpoint: 1 });
      // Written beside TypeORM's entity hooks and without an app.changed message: no cache here is told.
      await t.app.get(DataSource).query(`UPDATE apps SET webhook_url = ${usingPostgres() ? '$1' : '?'} WHERE id = ${usingPostgres() ? '$2' : '?'}`, [rx.url, tenant.appId]);
      await batchEvents(tenant, 1);
      expect(await statuses(tenant.appId)).toEqual({ no_endpoint: 1, pending: 1 });
      // The dispatcher's target for the app (read before the change, kept up to a second) does not finish it either.
      await expect.poll(() => rx.received.length, { timeout: 5_000, interval: 50 }).toBe(1);
      await expect.poll(() => statuses(tenant.appId), { timeout: 5_000, interval: 50 }).toEqual({ no_endpoint: 1, delivered: 1 });
    } finally {
      await rx.close();
    }
  });

  it('an event written after a webhookUrl was set, by an instance whose clock is behind, is delivered: a reading of "no URL" made before the change does not finish it', async () => {
    const rx = await webhookReceiver();
    const outbox = t.app.get(OutboxService);
    const repo = t.app.get(OutboxRepository);
    const ds = t.app.get(DataSource);
    try {
      const tenant = await createTenant(t);
      // The dispatcher has read "no webhookUrl" for the app and is about to finish its due rows on
      // that reading's word. Meanwhile the URL is set, and another instance, its clock 800 ms behind
      // this one's, writes an event: its time is before the reading.
      const finish = repo.finishWithoutEndpoint.bind(repo);
      let raced = false;
      vi.spyOn(repo, 'finishWithoutEndpoint').mockImplementation(async (apps, now) => {
        if (!raced && apps.some((a) => a.appId === tenant.appId)) {
          raced = true;
          await ds.query(`UPDATE apps SET webhook_url = ${usingPostgres() ? '$1' : '?'} WHERE id = ${usingPostgres() ? '$2' : '?'}`, [rx.url, tenant.appId]);
          await ds.transaction(async (m) => {
            t.clock.advance(-800);
            try {
              await outbox.add(m, tenant.appId, 'agent.revoked', { agentId: 'agt_skew', userId: 'usr_tp', reason: 'deleted_by_app' });
            } finally {
              t.clock.reset();
            }
          });
        }
        return finish(apps, now);
      });
      await events(tenant, 1);
      await expect.poll(() => raced, { timeout: 5_000, interval: 10 }).toBe(true);
      // Events written before the change may go either way; the one written after it is delivered.
      await expect.poll(() => rx.received.some((r) => r.body.includes('agt_skew')), { timeout: 5_000, interval: 50 }).toBe(true);
    } finally {
      vi.restoreAllMocks();
      t.clock.reset();
      await rx.close();
    }
  });

  it('deliveries are recorded many per statement, each still delivered once and signed', async () => {
    const rx = await webhookReceiver();
    try {
      const tenant = await createTenant(t, undefined, { webhookUrl: rx.url });
      const updates = await outboxUpdatesDuring(async () => {
        await events(tenant, 300);
        await expect.poll(() => statuses(tenant.appId), { timeout: 20_000, interval: 100 }).toEqual({ delivered: 300 });
      });
      // Claims and outcomes together: far fewer statements than the 300 rows (one outcome statement per row before).
      expect(updates.length).toBeLessThan(150);
      expect(new Set(rx.received.map((r) => r.json.id)).size).toBe(300);
      const deliveries = (await t.http.get('/v1/webhook-deliveries?limit=5').set(bearer(tenant.apiKey)).expect(200)).body.deliveries;
      for (const d of deliveries) expect(d).toMatchObject({ status: 'delivered', attempts: 1, lastError: null, deliveredAt: expect.any(String) });
    } finally {
      await rx.close();
    }
  });

  it('a webhookUrl set after events ended no_endpoint: the next event is delivered at once, and a retried one too', async () => {
    const rx = await webhookReceiver();
    try {
      const tenant = await createTenant(t);
      await events(tenant, 1);
      await expect.poll(() => statuses(tenant.appId), { timeout: 10_000, interval: 100 }).toEqual({ no_endpoint: 1 });
      const [first] = (await t.http.get('/v1/webhook-deliveries').set(bearer(tenant.apiKey)).expect(200)).body.deliveries;
      // The dispatcher has just read "no webhookUrl" for this app; the change must not wait for that reading to age.
      await t.http.patch(`/v1/apps/${tenant.appId}`).set(bearer(t.adminToken)).send({ webhookUrl: rx.url }).expect(200);
      await events(tenant, 1);
      await expect.poll(() => rx.received.length, { timeout: 5_000, interval: 50 }).toBe(1);
      await t.http.post(`/v1/webhook-deliveries/${first.eventId}/retry`).set(bearer(tenant.apiKey)).expect(200);
      await expect.poll(() => rx.received.map((r) => r.json.id), { timeout: 5_000, interval: 50 }).toContain(first.eventId);
      // Outcomes are recorded in batches just after the deliveries.
      await expect.poll(() => statuses(tenant.appId), { timeout: 5_000, interval: 50 }).toEqual({ delivered: 2 });
    } finally {
      await rx.close();
    }
  });

  it('rows of a fast endpoint are claimed ahead of its free slots; one that waited too long for a slot is handed back, never delivered late', async () => {
    const rx = await webhookReceiver({ delayMs: 100 });
    const ds = t.app.get(DataSource);
    const dispatcher = t.app.get(WebhookDispatcher);
    try {
      const tenant = await createTenant(t, undefined, { webhookUrl: rx.url });
      const claimedHere = async () => ds.getRepository(OutboxEntity).countBy({ appId: tenant.appId, deliveryStatus: 'pending', claimedBy: dispatcher.instanceId });
      await events(tenant, 400, 100);
      // At this endpoint's pace the next rows wait claimed here while every slot is busy.
      await expect.poll(claimedHere, { timeout: 10_000, interval: 20 }).toBeGreaterThan(WEBHOOK_PER_APP_CONCURRENCY);
      expect(dispatcher.stats().perApp[tenant.appId]).toBeLessThanOrEqual(WEBHOOK_PER_APP_CONCURRENCY);
      // Two seconds later by the clock, the queued rows' claims no longer cover a whole delivery:
      // they are handed back (claim released) and claimed again, not started.
      const handedBack = vi.spyOn(t.app.get(OutboxRepository), 'releaseClaimsOf');
      try {
        t.clock.advance(2_000);
        await expect.poll(() => statuses(tenant.appId), { timeout: 30_000, interval: 100 }).toEqual({ delivered: 400 });
        expect(handedBack).toHaveBeenCalled();
      } finally {
        handedBack.mockRestore();
      }
      const ids = rx.received.map((r) => r.json.id);
      expect(new Set(ids).size).toBe(400);
      expect(ids.length).toBe(400);
    } finally {
      t.clock.reset();
      await rx.close();
    }
  });

  it.skipIf(!usingPostgres())('publication skips a row another transaction holds (recording an outcome) instead of waiting on it: the two never deadlock', async () => {
    const ds = t.app.get(DataSource);
    const repo = t.app.get(OutboxRepository);
    const tenant = await createTenant(t);
    const row = (): OutboxEntity =>
      Object.assign(new OutboxEntity(), {
        id: `evt_lk${randomBytes(8).toString('hex')}`, appId: tenant.appId, type: 'agent.revoked', payload: { test: true }, createdAt: Date.now(), deliveredAt: null,
        deliveryStatus: 'delivered', attempts: 1, nextAttemptAt: null, claimedUntil: null, claimedBy: null, lastError: null, streamSeq: null,
      });
    const holder = ds.createQueryRunner();
    await holder.connect();
    try {
      // Written without the commit hook, and locked at once (the fallback publisher runs once a second; try again if it won).
      let held: OutboxEntity | null = null;
      let other: OutboxEntity | null = null;
      for (let i = 0; i < 5 && !held; i++) {
        const [a, b] = [row(), row()];
        await ds.getRepository(OutboxEntity).insert(a as never);
        await ds.getRepository(OutboxEntity).insert(b as never);
        await holder.startTransaction();
        const [locked] = await holder.query('SELECT stream_seq FROM outbox WHERE id = $1 FOR UPDATE', [a.id]);
        if (locked.stream_seq === null) [held, other] = [a, b];
        else await holder.rollbackTransaction();
      }
      expect(held).not.toBeNull();
      const outcome = await Promise.race([repo.publish(500), new Promise((resolve) => setTimeout(() => resolve('waited'), 3_000))]);
      expect(outcome).not.toBe('waited');
      const seq = async (id: string) => (await ds.getRepository(OutboxEntity).findOneByOrFail({ id })).streamSeq;
      expect(await seq(other!.id)).not.toBeNull();
      expect(await seq(held!.id)).toBeNull();
      await holder.commitTransaction();
      // Published by a later pass once the holder lets go.
      await expect.poll(() => seq(held!.id), { timeout: 5_000 }).not.toBeNull();
    } finally {
      if (holder.isTransactionActive) await holder.rollbackTransaction();
      await holder.release();
    }
  });

  it('retention purges no_endpoint rows written more than RETENTION_OUTBOX_DAYS ago, and keeps newer ones', async () => {
    const ds = t.app.get(DataSource);
    const tenant = await createTenant(t);
    const now = Date.now();
    const row = (createdAt: number): OutboxEntity =>
      Object.assign(new OutboxEntity(), {
        id: `evt_ne${randomBytes(8).toString('hex')}`, appId: tenant.appId, type: 'step_up.created', payload: { test: true }, createdAt, deliveredAt: null,
        deliveryStatus: 'no_endpoint', attempts: 0, nextAttemptAt: createdAt, claimedUntil: null, claimedBy: null, lastError: null, streamSeq: null,
      });
    const old = Array.from({ length: 5 }, () => row(now - 8 * DAY));
    const recent = row(now - DAY);
    const recentId = recent.id;
    // Written out one by one: a multi-row TypeORM insert reads rows back and may assign them to the wrong objects.
    for (const r of [...old, recent]) await ds.getRepository(OutboxEntity).insert(r as never);
    const report = await t.app.get(RetentionService).sweep();
    expect(report.outbox).toBeGreaterThanOrEqual(5);
    const left = (await ds.getRepository(OutboxEntity).findBy({ appId: tenant.appId })).map((r) => r.id);
    expect(left).toEqual([recentId]);
  });
});
