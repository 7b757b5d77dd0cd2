import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OutboxEntity } from '../src/modules/events/outbox.entity.js';
import { OutboxRepository } from '../src/modules/events/outbox.repository.js';
import { OutboxService } from '../src/modules/events/outbox.service.js';
import { WEBHOOK_PER_APP_CONCURRENCY, WebhookDispatcher } from '../src/modules/events/webhook-dispatcher.js';
import { privateDatabase, startApp, usingPostgres, type TestApp } from './support/app.js';
import { bearer, createAgent, createTenant, createUser, type Tenant } from './support/fixtures.js';
import { webhookReceiver } from './support/webhook-receiver.js';

// The default delivery timeout (10 s): a hanging endpoint holds each request that long.
let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

/** `n` events for the tenant, written the way every module writes them. */
async function backlog(tenant: Tenant, n: number): Promise<void> {
  const outbox = t.app.get(OutboxService);
  const ds = t.app.get(DataSource);
  for (let i = 0; i < n; i++) await outbox.add(ds.manager, tenant.appId, 'agent.revoked', { agentId: `agt_backlog${i}`, userId: 'usr_backlog', reason: 'deleted_by_app' });
}

/** A tenant with a webhook URL and an agent ready to be revoked (one `agent.revoked` event). */
async function tenantWithAgent(webhookUrl: string) {
  const tenant = await createTenant(t, undefined, { webhookUrl });
  const agent = await createAgent(t, tenant, await createUser(t, tenant));
  return { tenant, revoke: () => t.http.delete(`/v1/agents/${agent.id}`).set(bearer(tenant.apiKey)).expect(204), agentId: agent.id };
}

describe('webhook delivery is fair between apps (API.md v1.1)', () => {
  it('with one app’s endpoint hanging, another app’s event is delivered within 2 s', async () => {
    const hanging = await webhookReceiver({ hang: true });
    const ok = await webhookReceiver();
    try {
      const stuck = await createTenant(t, undefined, { webhookUrl: hanging.url });
      await backlog(stuck, 40);
      await expect.poll(() => hanging.inFlight, { timeout: 5_000 }).toBeGreaterThan(0);

      const other = await tenantWithAgent(ok.url);
      const started = Date.now();
      await other.revoke();
      await expect.poll(() => ok.received.map((r) => r.json.data.agentId), { timeout: 2_000 }).toContain(other.agentId);
      expect(Date.now() - started).toBeLessThan(2_000);

      // This instance holds no more than its per-app limit of requests to the hanging endpoint
      // (on PostgreSQL the other test processes' dispatchers may hold their own share).
      expect(t.app.get(WebhookDispatcher).stats().perApp[stuck.appId]).toBeLessThanOrEqual(WEBHOOK_PER_APP_CONCURRENCY);
      // Nothing of it is claimed ahead here either: a hanging endpoint's pace is zero, so its other rows stay free for other instances.
      const claimed = await t.app.get(DataSource).getRepository(OutboxEntity).countBy({ appId: stuck.appId, claimedBy: t.app.get(WebhookDispatcher).instanceId });
      expect(claimed).toBeLessThanOrEqual(WEBHOOK_PER_APP_CONCURRENCY);
      if (!usingPostgres()) expect(hanging.maxInFlight).toBeLessThanOrEqual(WEBHOOK_PER_APP_CONCURRENCY);
    } finally {
      await hanging.close();
      await ok.close();
    }
  });

  it('one app’s backlog does not fill the batches: another app’s event is delivered within 2 s', async () => {
    const slow = await webhookReceiver({ delayMs: 300 });
    const ok = await webhookReceiver();
    try {
      const busy = await createTenant(t, undefined, { webhookUrl: slow.url });
      await backlog(busy, 150);
      await expect.poll(() => slow.received.length, { timeout: 5_000 }).toBeGreaterThan(0);

      const other = await tenantWithAgent(ok.url);
      const started = Date.now();
      await other.revoke();
      await expect.poll(() => ok.received.map((r) => r.json.data.agentId), { timeout: 2_000 }).toContain(other.agentId);
      expect(Date.now() - started).toBeLessThan(2_000);
      // The backlog is still being worked through, not skipped.
      expect(slow.received.length).toBeLessThan(150);
      await expect.poll(() => new Set(slow.received.map((r) => r.json.id)).size, { timeout: 25_000 }).toBe(150);
    } finally {
      await slow.close();
      await ok.close();
    }
  });
});

describe('apps with due deliveries, from a given app on (a claim beyond the first 1,000 apps)', () => {
  it('the query lists the due apps after the given one, in the database\'s order', async () => {
    const db = await privateDatabase();
    const p = await startApp(db.env);
    try {
      // Nobody claims here: the rows stay pending and due.
      await p.app.get(WebhookDispatcher).onApplicationShutdown();
      for (let i = 0; i < 3; i++) {
        const tenant = await createTenant(p, undefined, { webhookUrl: 'http://127.0.0.1:9/hook' });
        await p.app.get(OutboxService).add(p.app.get(DataSource).manager, tenant.appId, 'agent.revoked', { agentId: 'agt_x', userId: 'usr_x', reason: 'deleted_by_app' });
      }
      const repo = p.app.get(OutboxRepository);
      const now = p.clock.now();
      const ids = await repo.appsWithDue(now, 1000);
      expect(ids).toHaveLength(3);
      expect(await repo.appsWithDue(now, 1000, ids[0])).toEqual(ids.slice(1));
      expect(await repo.appsWithDue(now, 1, ids[0])).toEqual([ids[1]]);
      expect(await repo.appsWithDue(now, 1000, ids[2])).toEqual([]);
      // Not due yet: not listed.
      expect(await repo.appsWithDue(now - 60_000, 1000)).toEqual([]);
    } finally {
      await p.close();
      await db.drop();
    }
  });
});
