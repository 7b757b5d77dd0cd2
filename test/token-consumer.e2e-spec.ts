import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { AUDIT_CARRIED, AuditLog } from '../src/common/audit-log.js';
import { RequestContext } from '../src/common/request-context.js';
import { PgParams } from '../src/database/pg-params.js';
import { OutboxRepository } from '../src/modules/events/outbox.repository.js';
import { OUTBOX_CARRIED, OutboxService } from '../src/modules/events/outbox.service.js';
import { eventData, eventDataSql } from '../src/modules/step-ups/step-up-decisions.js';
import { TokenConsumer } from '../src/modules/mfa-proxy-tokens/token-consumer.js';
import { PUBLIC_URL, startApp, usingPostgres, type TestApp } from './support/app.js';
import { refuseWrites } from './support/faults.js';
import { bearer } from './support/fixtures.js';
import { webhookReceiver } from './support/webhook-receiver.js';
import { approveWithPasskey, createStepUp, expectStatus, human, type Human } from './support/step-up.js';

let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

/**
 * Verify-and-consume writes with group commit (issue 12): verifications arriving together are
 * consumed in one transaction. These drive the consumer directly, so the batch is certain to hold
 * several tokens of several apps, each asked for in its own request context.
 */
describe('token consumption in batches', () => {
  async function approvedJti(h: Human): Promise<string> {
    const created = await createStepUp(t, h).expect(201);
    await expectStatus(approveWithPasskey(t, h, created.body.approvalUrl), 200);
    const token = (await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(200)).body.mfaProxyToken as string;
    return decodeJwt(token).jti!;
  }

  it('one batch: each token consumed once, by its first asker, audited and announced under that asker', async () => {
    const consumer = t.app.get(TokenConsumer);
    const humans = await Promise.all([human(t), human(t), human(t)]);
    const jtis = await Promise.all(humans.map(approvedJti));
    const asks = [
      ...humans.map((h, i) => ({ appId: h.tenant.appId, jti: jtis[i], requestId: `batch-first-${i}` })),
      { appId: humans[0].tenant.appId, jti: jtis[0], requestId: 'batch-again-0' },
      // Another app's token id under this app: not this app's to consume.
      { appId: humans[1].tenant.appId, jti: jtis[2], requestId: 'batch-foreign' },
      { appId: humans[1].tenant.appId, jti: 'no-such-jti', requestId: 'batch-unknown' },
    ];
    // All in one tick: one batch.
    const results = await Promise.all(asks.map((a) => RequestContext.run({ requestId: a.requestId, ip: '203.0.113.7' }, () => consumer.consume(a.appId, a.jti))));
    expect(results.map((r) => r?.tokenJti ?? null)).toEqual([jtis[0], jtis[1], jtis[2], null, null, null]);
    for (const [i, h] of humans.entries()) {
      expect(results[i]).toMatchObject({ appId: h.tenant.appId, agentId: h.agent.id, userId: h.userId, action: 'files:delete' });
      const events = (await t.http.get('/v1/audit-events?type=mfa_proxy_token.consumed').set(bearer(h.tenant.apiKey)).expect(200)).body.events;
      expect(events).toEqual([expect.objectContaining({ requestId: `batch-first-${i}`, ip: '203.0.113.7', agentId: h.agent.id, userId: h.userId })]);
      const deliveries: { type: string }[] = (await t.http.get('/v1/webhook-deliveries').set(bearer(h.tenant.apiKey)).expect(200)).body.deliveries;
      expect(deliveries.filter((d) => d.type === 'mfa_proxy_token.consumed')).toHaveLength(1);
    }
    // And once consumed, never again.
    expect(await consumer.consume(humans[0].tenant.appId, jtis[0])).toBeNull();
  });

  it('a batch tells the dispatchers once it has committed: the event of an app with a webhookUrl wakes the webhook dispatcher and is delivered, that of an app without one is no_endpoint; a batch that consumed nothing wakes nobody', async () => {
    const consumer = t.app.get(TokenConsumer);
    const rx = await webhookReceiver();
    try {
      const [withUrl, without] = await Promise.all([human(t, {}, PUBLIC_URL, { approvalUrlToAgent: true, webhookUrl: rx.url }), human(t)]);
      const [j1, j2] = await Promise.all([approvedJti(withUrl), approvedJti(without)]);
      const woken = { pending: 0, any: 0 };
      const outbox = t.app.get(OutboxRepository);
      outbox.onAddedCommitted(() => woken.pending++, 'pending');
      outbox.onAddedCommitted(() => woken.any++);
      // A batch that consumes nothing (unknown tokens, another app's) adds nothing and wakes nobody.
      expect(await Promise.all([consumer.consume(withUrl.tenant.appId, 'no-such-jti'), consumer.consume(withUrl.tenant.appId, j2)])).toEqual([null, null]);
      expect(woken).toEqual({ pending: 0, any: 0 });
      const results = await Promise.all([consumer.consume(withUrl.tenant.appId, j1), consumer.consume(without.tenant.appId, j2)]);
      expect(results.map((r) => r?.tokenJti)).toEqual([j1, j2]);
      // One batch, one commit: told once, before its verifications are answered.
      expect(woken).toEqual({ pending: 1, any: 1 });
      await expect.poll(() => rx.received.filter((w) => w.json.type === 'mfa_proxy_token.consumed').map((w) => w.json.data.agentId), { timeout: 5_000, interval: 50 }).toEqual([withUrl.agent.id]);
      const deliveries: { type: string; status: string }[] = (await t.http.get('/v1/webhook-deliveries').set(bearer(without.tenant.apiKey)).expect(200)).body.deliveries;
      expect(deliveries.filter((d) => d.type === 'mfa_proxy_token.consumed').map((d) => d.status)).toEqual(['no_endpoint']);
    } finally {
      await rx.close();
    }
  });

  // The outbox row, or the audit row, of one app's token is refused by the database: the batch
  // holding both apps' tokens fails whole (on PostgreSQL one statement, on SQLite one transaction).
  it.each(['outbox', 'audit_events'])('a batch whose %s insert fails is rolled back whole: each of its verifications fails, no token is consumed, no event written', async (table) => {
    const consumer = t.app.get(TokenConsumer);
    const [h1, h2] = await Promise.all([human(t), human(t)]);
    const [j1, j2] = await Promise.all([approvedJti(h1), approvedJti(h2)]);
    const refuse = await refuseWrites(t, table, 'INSERT', h2.tenant.appId);
    try {
      const results = await Promise.allSettled([consumer.consume(h1.tenant.appId, j1), consumer.consume(h2.tenant.appId, j2)]);
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    } finally {
      await refuse.restore();
    }
    for (const h of [h1, h2]) {
      const events = (await t.http.get('/v1/audit-events?type=mfa_proxy_token.consumed').set(bearer(h.tenant.apiKey)).expect(200)).body.events;
      expect(events).toEqual([]);
      const deliveries: { type: string }[] = (await t.http.get('/v1/webhook-deliveries').set(bearer(h.tenant.apiKey)).expect(200)).body.deliveries;
      expect(deliveries.filter((d) => d.type === 'mfa_proxy_token.consumed')).toEqual([]);
    }
    // Nothing was consumed: both tokens are still good, once.
    const again = await Promise.all([consumer.consume(h1.tenant.appId, j1), consumer.consume(h2.tenant.appId, j2)]);
    expect(again.map((r) => r?.tokenJti)).toEqual([j1, j2]);
  });
});

describe.runIf(usingPostgres() && !!process.env.TEST_REDIS_URL)('token consumption in batches on two instances sharing PostgreSQL', () => {
  let b: TestApp;
  beforeAll(async () => {
    b = await startApp();
  });
  afterAll(async () => {
    await b?.close();
  });

  it('two batches holding the same tokens in opposite orders neither deadlock nor consume a token twice', async () => {
    const humans = await Promise.all(Array.from({ length: 4 }, () => human(t)));
    const tokens: { appId: string; jti: string }[] = [];
    for (const h of humans) {
      for (let i = 0; i < 4; i++) {
        const created = await createStepUp(t, h, { resource: `r-${i}` }).expect(201);
        await expectStatus(approveWithPasskey(t, h, created.body.approvalUrl), 200);
        const token = (await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(200)).body.mfaProxyToken as string;
        tokens.push({ appId: h.tenant.appId, jti: decodeJwt(token).jti! });
      }
    }
    const [onA, onB] = [t.app.get(TokenConsumer), b.app.get(TokenConsumer)];
    // One batch per instance (all asked in one tick), each locking the same rows, in opposite orders.
    const [fromA, fromB] = await Promise.all([
      Promise.all(tokens.map((k) => onA.consume(k.appId, k.jti))),
      Promise.all([...tokens].reverse().map((k) => onB.consume(k.appId, k.jti))),
    ]);
    fromB.reverse();
    for (let i = 0; i < tokens.length; i++) expect([fromA[i], fromB[i]].filter((r) => r !== null)).toHaveLength(1);
  });
});

/**
 * On PostgreSQL a batch is one statement (TokenConsumer.writePostgres): its audit and outbox rows
 * are built in SQL from the consumed rows. They must be the rows recordMany and addMany write
 * for the same input, field for field, whatever the text holds and whether the app has a webhook.
 */
describe.runIf(usingPostgres())('events written by the consuming statement match those written row by row', () => {
  const cases = [
    { id: 'stp_1', initiator: 'agent', agent_id: 'agt_1', user_id: 'usr_1', model: 'claude-test-1', task_id: null, action: 'files:delete', resource: null, details_hash: 'h1' },
    { id: 'stp_2', initiator: 'app', agent_id: 'agt_2', user_id: 'usr_2', model: 'm\u0007\u001b[31m\u202Eevil\u2066', task_id: 'task\n1', action: 'a\tb', resource: 'r'.repeat(600), details_hash: 'h2' },
    { id: 'stp_3', initiator: 'ciba', agent_id: 'agt_3', user_id: 'usr_3', model: 'x'.repeat(200), task_id: 't'.repeat(128), action: 'pay', resource: 'acct:1', details_hash: 'h3' },
    { id: 'stp_4', initiator: 'txn', agent_id: 'agt_4', user_id: 'usr_4', model: 'mod\u{1F600}el', task_id: null, action: 'transfer', resource: 'r\u0085x', details_hash: 'h4' },
    // Cut as safeText cuts, in UTF-16 units: 200 emoji keep 100, an odd cut drops the split pair; more bytes than the cap but fewer units keeps all.
    { id: 'stp_5', initiator: 'agent', agent_id: 'agt_5', user_id: 'usr_5', model: '\u{1F600}'.repeat(200), task_id: null, action: 'x', resource: `x${'\u{1F600}'.repeat(300)}`, details_hash: 'h5' },
    { id: 'stp_6', initiator: 'app', agent_id: 'agt_6', user_id: 'usr_6', model: '\u00e9'.repeat(150), task_id: null, action: 'y', resource: `\u0007${'\u00e9'.repeat(600)}`, details_hash: 'h6' },
  ];
  const columns = ['app_id', 'id', 'initiator', 'agent_id', 'user_id', 'model', 'task_id', 'action', 'resource', 'details_hash', ...AUDIT_CARRIED, ...OUTBOX_CARRIED];

  it('the audit event, the outbox payload and its delivery status, for every initiator, with and without a webhook', async () => {
    const ds = t.app.get(DataSource);
    const [audit, outbox] = [t.app.get(AuditLog), t.app.get(OutboxService)];
    const [withHook, without] = await Promise.all([human(t), human(t)]);
    await ds.query(`UPDATE apps SET webhook_url = 'https://hooks.example/in' WHERE id = $1`, [withHook.tenant.appId]);
    const context = { requestId: 'req-parity', ip: '198.51.100.4', actorType: 'app' as const, actorId: 'app-actor' };
    const now = Date.now();
    for (const h of [withHook, without]) {
      const appId = h.tenant.appId;
      const rows = cases.map((c) => ({ ...c, app_id: appId }));
      // Both writers in one transaction, compared before it is rolled back: no dispatcher or sealer touches the rows.
      const compared = ds.transaction(async (m) => {
        // By one statement, as writePostgres builds it.
        const p = new PgParams();
        const at = p.add(now, 'bigint');
        const values = rows.map((r) => [...columns.slice(0, 10).map((c) => r[c as keyof typeof r]), ...audit.carried(context, now), ...outbox.carried(now)]);
        const arrays = columns.map((_, i) => p.add(values.map((v) => v[i]), 'varchar[]'));
        await m.query(
          `WITH r AS (SELECT * FROM unnest(${arrays.join(', ')}) AS v(${columns.join(', ')})),
            a AS (${audit.insertSelectSql('r', { appId: 'r.app_id', at, userId: 'r.user_id', agentId: 'r.agent_id', model: 'r.model', taskId: 'r.task_id', action: 'r.action', resource: 'r.resource', type: 'mfa_proxy_token.consumed', outcome: 'success', status: 200 })}),
            e AS (${outbox.insertSelectSql('r', { appId: 'r.app_id', type: 'mfa_proxy_token.consumed', data: eventDataSql('r'), createdAt: at, createdIso: p.add(new Date(now).toISOString(), 'varchar') })})
            SELECT 1`,
          p.values,
        );
        const bySql = { audit: values.map((v) => v[10] as string), outbox: values.map((v) => v[columns.length - 1] as string) };
        // Row by row, as other changes write them (the SQLite consumer writes the same rows: recordManySqlite and addManySqlite share build() and row()).
        await audit.recordMany(m, rows.map((r) => ({ input: { appId, type: 'mfa_proxy_token.consumed', outcome: 'success' as const, userId: r.user_id, agentId: r.agent_id, model: r.model, taskId: r.task_id, action: r.action, resource: r.resource, status: 200 }, context })));
        await outbox.addMany(m, rows.map((r) => ({ appId, type: 'mfa_proxy_token.consumed' as const, data: eventData({ id: r.id, initiator: r.initiator as never, agentId: r.agent_id, userId: r.user_id, model: r.model, taskId: r.task_id, action: r.action, resource: r.resource, detailsHash: r.details_hash }) })));
        const byRow = {
          audit: ((await m.query(`SELECT id FROM audit_events WHERE app_id = $1 AND request_id = 'req-parity' AND NOT (id = ANY($2))`, [appId, bySql.audit])) as { id: string }[]).map((x) => x.id),
          outbox: ((await m.query(`SELECT id FROM outbox WHERE app_id = $1 AND type = 'mfa_proxy_token.consumed' AND NOT (id = ANY($2))`, [appId, bySql.outbox])) as { id: string }[]).map((x) => x.id),
        };
        expect(byRow.audit).toHaveLength(cases.length);
        expect(byRow.outbox).toHaveLength(cases.length);
        const auditRow = async (id: string) => ({ ...((await m.query(`SELECT * FROM audit_events WHERE id = $1`, [id])) as Record<string, unknown>[])[0], id: undefined, at: undefined });
        const outboxRow = async (id: string) => {
          const row = ((await m.query(`SELECT * FROM outbox WHERE id = $1`, [id])) as Record<string, unknown>[])[0];
          const payload = JSON.parse(row.payload as string) as Record<string, unknown>;
          // Key order too: the payload is delivered as it is stored.
          return { ...row, delivery_status: row.delivery_status as string, id: undefined, created_at: undefined, next_attempt_at: undefined, payload: JSON.stringify({ ...payload, id: undefined, createdAt: undefined }), keys: Object.keys(payload) };
        };
        // One query at a time: the transaction has one connection.
        const jsAudits = [];
        for (const id of byRow.audit) jsAudits.push(await auditRow(id));
        const jsOutbox = [];
        for (const id of byRow.outbox) jsOutbox.push(await outboxRow(id));
        for (const [i, c] of cases.entries()) {
          expect(jsAudits).toContainEqual(await auditRow(bySql.audit[i]));
          const sqlOutbox = await outboxRow(bySql.outbox[i]);
          expect(jsOutbox).toContainEqual(sqlOutbox);
          expect(sqlOutbox.delivery_status).toBe(h === withHook ? 'pending' : 'no_endpoint');
          expect(JSON.parse(sqlOutbox.payload).data).toMatchObject({ stepUpId: c.id, agentId: c.agent_id });
        }
        throw new Error('compared');
      });
      await expect(compared).rejects.toThrow('compared');
    }
  });
});
