import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RequestContext } from '../src/common/request-context.js';
import { TokenConsumer } from '../src/modules/mfa-proxy-tokens/token-consumer.js';
import { startApp, usingPostgres, type TestApp } from './support/app.js';
import { refuseWrites } from './support/faults.js';
import { bearer } from './support/fixtures.js';
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

  it('a batch that fails is rolled back whole: each of its verifications fails, no token is consumed, no event written', async () => {
    const consumer = t.app.get(TokenConsumer);
    const [h1, h2] = await Promise.all([human(t), human(t)]);
    const [j1, j2] = await Promise.all([approvedJti(h1), approvedJti(h2)]);
    // The database refuses the outbox row of one app's token: the batch holding both fails.
    const refuse = await refuseWrites(t, 'outbox', 'INSERT', h2.tenant.appId);
    try {
      const results = await Promise.allSettled([consumer.consume(h1.tenant.appId, j1), consumer.consume(h2.tenant.appId, j2)]);
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    } finally {
      await refuse.restore();
    }
    for (const h of [h1, h2]) {
      const events = (await t.http.get('/v1/audit-events?type=mfa_proxy_token.consumed').set(bearer(h.tenant.apiKey)).expect(200)).body.events;
      expect(events).toEqual([]);
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
