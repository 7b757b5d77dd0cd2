import { Webhook } from 'standardwebhooks';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from './support/app.js';
import { bearer, createAgent, createUser, agentToken } from './support/fixtures.js';
import { approvalToken, approveWithCode, createStepUp, expectStatus, human } from './support/step-up.js';
import { webhookReceiver } from './support/webhook-receiver.js';
import { freePort } from './support/browser.js';
import { OutboxRepository } from '../src/modules/events/outbox.repository.js';

let t: TestApp;
let base: string;
beforeAll(async () => {
  const port = await freePort();
  t = await startApp({ WEBHOOK_RETRY_BASE_MS: '50', WEBHOOK_TIMEOUT_MS: '2000' });
  await t.app.listen({ port, host: '127.0.0.1' });
  base = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  await t?.close();
});

async function humanWithHook(url: string) {
  const h = await human(t);
  await t.http.patch(`/v1/apps/${h.tenant.appId}`).set(bearer(t.adminToken)).send({ webhookUrl: url }).expect(200);
  return h;
}

describe('webhooks', () => {
  it('step_up.created carries approvalUrl, signed so that a Standard Webhooks verifier accepts it', async () => {
    const rx = await webhookReceiver();
    try {
      const h = await humanWithHook(rx.url);
      const created = await createStepUp(t, h).expect(201);
      await expect.poll(() => rx.received.length, { timeout: 10_000 }).toBeGreaterThan(0);
      const hook = rx.received.find((r) => r.json.type === 'step_up.created')!;
      expect(hook.json.data).toMatchObject({ stepUpId: created.body.id, approvalUrl: created.body.approvalUrl, bindingCode: created.body.bindingCode, agentId: h.agent.id });
      expect(hook.headers['webhook-id']).toBe(hook.json.id);
      expect(hook.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
      const verified = new Webhook(h.tenant.webhookSecret).verify(hook.body, hook.headers) as { type: string };
      expect(verified.type).toBe('step_up.created');
      expect(() => new Webhook(`whsec_${Buffer.alloc(32, 1).toString('base64')}`).verify(hook.body, hook.headers)).toThrow();
      // The approval follows as its own event.
      await expectStatus(approveWithCode(t, h, created.body.approvalUrl), 200);
      await expect.poll(() => rx.received.map((r) => r.json.type), { timeout: 10_000 }).toContain('step_up.approved');
    } finally {
      await rx.close();
    }
  });

  it('approvalUrl is encrypted at rest in the outbox and reaches the webhook and the stream as the URL itself', async () => {
    const rx = await webhookReceiver();
    const controller = new AbortController();
    try {
      const h = await humanWithHook(rx.url);
      const res = await fetch(`${base}/v1/events/stream`, { headers: { authorization: `Bearer ${h.tenant.apiKey}` }, signal: controller.signal });
      const reader = res.body!.getReader();
      let text = '';
      const reading = (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          text += Buffer.from(value).toString();
        }
      })().catch(() => undefined);
      await expect.poll(() => text, { timeout: 5_000 }).toContain(': connected');

      const created = await createStepUp(t, h).expect(201);
      const secret = approvalToken(created.body.approvalUrl);
      const rows: { payload: string }[] = await t.app.get(DataSource).createQueryBuilder().select('o.payload', 'payload').from('outbox', 'o').where('o.app_id = :a', { a: h.tenant.appId }).andWhere("o.type = 'step_up.created'").getRawMany();
      expect(rows).toHaveLength(1);
      expect(rows[0].payload).not.toContain(secret);
      expect(rows[0].payload).not.toContain('/approve/');

      await expect.poll(() => rx.received.length, { timeout: 10_000 }).toBe(1);
      const hook = rx.received[0];
      expect(hook.json.data.approvalUrl).toBe(created.body.approvalUrl);
      await expect.poll(() => text, { timeout: 5_000 }).toContain('event: step_up.created');
      const streamed = /\ndata: (.*)\n\n/.exec(text.slice(text.indexOf('event: step_up.created')))![1];
      // The same payload as the webhook body, byte for byte (field order included).
      expect(streamed).toBe(hook.body);
      controller.abort();
      await reading;
    } finally {
      controller.abort();
      await rx.close();
    }
  });

  it('a receiver that answers 500 twice gets the same webhook-id a third time; nothing is delivered twice once acknowledged', async () => {
    const rx = await webhookReceiver({ failFirst: 2 });
    try {
      const h = await humanWithHook(rx.url);
      await createStepUp(t, h).expect(201);
      await expect.poll(() => rx.received.length, { timeout: 10_000 }).toBe(1);
      expect(rx.attempts).toHaveLength(3);
      expect(new Set(rx.attempts).size).toBe(1);
      // The receiver has answered 2xx; the service records the delivery once that answer is read, so poll for it.
      const delivery = async () => (await t.http.get('/v1/webhook-deliveries').set(bearer(h.tenant.apiKey)).expect(200)).body.deliveries[0];
      await expect.poll(async () => (await delivery()).status, { timeout: 5_000 }).toBe('delivered');
      expect(await delivery()).toMatchObject({ eventId: rx.attempts[0], type: 'step_up.created', status: 'delivered', attempts: 3, deliveredAt: expect.any(String) });
      await new Promise((r) => setTimeout(r, 1500));
      expect(rx.attempts).toHaveLength(3);
    } finally {
      await rx.close();
    }
  });

  it('rotating the webhook secret signs with both secrets during the grace period', async () => {
    const rx = await webhookReceiver();
    try {
      const h = await humanWithHook(rx.url);
      const rotated = await t.http.post(`/v1/apps/${h.tenant.appId}/webhook-secret`).set(bearer(t.adminToken)).expect(201);
      await createStepUp(t, h).expect(201);
      await expect.poll(() => rx.received.length, { timeout: 10_000 }).toBeGreaterThan(0);
      const hook = rx.received[0];
      expect(hook.headers['webhook-signature'].split(' ')).toHaveLength(2);
      expect(() => new Webhook(rotated.body.webhookSecret).verify(hook.body, hook.headers)).not.toThrow();
      expect(() => new Webhook(h.tenant.webhookSecret).verify(hook.body, hook.headers)).not.toThrow();
    } finally {
      await rx.close();
    }
  });

  it('a failed delivery is visible and can be retried', async () => {
    // On PostgreSQL other test processes' dispatchers share the outbox, with their own settings:
    // the receiver fails until told otherwise, so whoever tries, the row ends `failed` once this
    // instance (one attempt allowed) gets to it.
    const t2 = await startApp({ WEBHOOK_RETRY_BASE_MS: '50', WEBHOOK_MAX_ATTEMPTS: '1' });
    const rx = await webhookReceiver({ failFirst: Number.MAX_SAFE_INTEGER });
    try {
      const h = await human(t2);
      await t2.http.patch(`/v1/apps/${h.tenant.appId}`).set(bearer(t2.adminToken)).send({ webhookUrl: rx.url }).expect(200);
      await createStepUp(t2, h).expect(201);
      const list = async () => (await t2.http.get('/v1/webhook-deliveries').set(bearer(h.tenant.apiKey)).expect(200)).body.deliveries;
      await expect.poll(async () => (await list())[0]?.status, { timeout: 20_000 }).toBe('failed');
      expect((await list())[0].lastError).toBe('HTTP 500');
      const eventId = (await list())[0].eventId;
      rx.recover();
      await t2.http.post(`/v1/webhook-deliveries/${eventId}/retry`).set(bearer(h.tenant.apiKey)).expect(200);
      await expect.poll(async () => (await list())[0]?.status, { timeout: 20_000 }).toBe('delivered');
      expect(rx.received).toHaveLength(1);
      await t2.http.post('/v1/webhook-deliveries/evt_AAAAAAAAAAAAAAAAAAAAAA/retry').set(bearer(h.tenant.apiKey)).expect(404);
    } finally {
      await rx.close();
      await t2.close();
    }
  });

  it('refuses webhook URLs to loopback, private, link-local and metadata addresses when private addresses are not allowed', async () => {
    const t3 = await startApp({ WEBHOOK_ALLOW_PRIVATE: 'false' });
    try {
      for (const webhookUrl of ['http://127.0.0.1/hook', 'http://10.0.0.1/hook', 'http://169.254.169.254/latest/meta-data/', 'http://[::1]/hook', 'http://localhost:8080/hook',
        // IPv6 that carries or reaches an IPv4 address: mapped, 6to4, NAT64 local use, Teredo.
        'http://[::ffff:10.0.0.1]/hook', 'http://[2002:a00:1::1]/hook', 'http://[64:ff9b:1::a00:1]/hook', 'http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook']) {
        const res = await t3.http.post('/v1/apps').set(bearer(t3.adminToken)).send({ name: 'ssrf', webhookUrl }).expect(400);
        expect(res.body.code).toBe('validation_failed');
      }
      const app = await t3.http.post('/v1/apps').set(bearer(t3.adminToken)).send({ name: 'ok', webhookUrl: 'https://hooks.example.com/x' }).expect(201);
      for (const webhookUrl of ['http://10.0.0.1/hook', 'http://[2002:a00:1::1]/hook']) {
        await t3.http.patch(`/v1/apps/${app.body.id}`).set(bearer(t3.adminToken)).send({ webhookUrl }).expect(400);
      }
      // Refused changes nothing: the app keeps its URL, and no refused app was created.
      expect((await t3.http.get(`/v1/apps/${app.body.id}`).set(bearer(t3.adminToken)).expect(200)).body.webhookUrl).toBe('https://hooks.example.com/x');
      const refused = await t3.app.get(DataSource).createQueryBuilder().select('COUNT(*)', 'n').from('apps', 'a').where('a.name = :name', { name: 'ssrf' }).getRawOne();
      expect(Number(refused.n)).toBe(0);
    } finally {
      await t3.close();
    }
  });
});

describe('SSE', () => {
  it('streams the app’s own events, resumes from Last-Event-ID, and ends when the API key is revoked', async () => {
    const h = await human(t);
    const other = await human(t);
    const keyRes = await t.http.post(`/v1/apps/${h.tenant.appId}/api-keys`).set(bearer(t.adminToken)).expect(201);
    const controller = new AbortController();
    const res = await fetch(`${base}/v1/events/stream`, { headers: { authorization: `Bearer ${keyRes.body.apiKey}` }, signal: controller.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    let ended = false;
    const reading = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString();
      }
      ended = true;
    })().catch(() => undefined);

    const created = await createStepUp(t, h).expect(201);
    await createStepUp(t, other).expect(201);
    await expect.poll(() => text, { timeout: 10_000 }).toContain('event: step_up.created');
    expect(text).toContain(created.body.id);
    expect(text).not.toContain(other.agent.id);
    const firstId = /id: (evt_[A-Za-z0-9_-]+)/.exec(text)![1];

    // Resume: everything after the given id.
    await t.http.delete(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(200);
    const resumed = await fetch(`${base}/v1/events/stream`, { headers: { authorization: `Bearer ${h.tenant.apiKey}`, 'last-event-id': firstId } });
    const r2 = resumed.body!.getReader();
    let text2 = '';
    while (!text2.includes('step_up.cancelled')) text2 += Buffer.from((await r2.read()).value!).toString();
    expect(text2).not.toContain(`id: ${firstId}`);
    await r2.cancel();

    // Revoking the key the stream was opened with ends it.
    await t.http.delete(`/v1/apps/${h.tenant.appId}/api-keys/${keyRes.body.id}`).set(bearer(t.adminToken)).expect(204);
    await expect.poll(() => ended, { timeout: 5_000 }).toBe(true);
    controller.abort();
    await reading;
  });

  it('the approval page’s stream is scoped to one approval token and ends with the decision', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h).expect(201);
    const token = created.body.approvalUrl.split('/approve/')[1];
    const res = await fetch(`${base}/v1/approvals/${token}/events`);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    while (!text.includes('"pending"')) text += Buffer.from((await reader.read()).value!).toString();
    await t.http.post(`/v1/approvals/${token}/deny`).send({}).expect(200);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    expect(text).toMatch(/event: status\ndata: \{"status":"denied"/);
    expect((await fetch(`${base}/v1/approvals/mpx_apr_unknown/events`)).status).toBe(404);
  });

  it('needs an app key', async () => {
    expect((await fetch(`${base}/v1/events/stream`)).status).toBe(401);
  });
});

describe('agent.revoked', () => {
  it('is emitted when the app deletes an agent', async () => {
    const h = await human(t);
    const agent = await createAgent(t, h.tenant, await createUser(t, h.tenant));
    await agentToken(t, agent);
    await t.http.delete(`/v1/agents/${agent.id}`).set(bearer(h.tenant.apiKey)).expect(204);
    const deliveries = (await t.http.get('/v1/webhook-deliveries').set(bearer(h.tenant.apiKey)).expect(200)).body.deliveries;
    expect(deliveries.map((d: { type: string }) => d.type)).toContain('agent.revoked');
  });
});

describe('GET /v1/webhook-deliveries', () => {
  it('pages through every event once, newest first, when a page ends inside a millisecond (a consume batch writes its events at one instant)', async () => {
    const h = await human(t);
    await createStepUp(t, h).expect(201);
    for (let i = 0; i < 6; i++) await t.http.delete(`/v1/agents/${(await createAgent(t, h.tenant, h.userId)).id}`).set(bearer(h.tenant.apiKey)).expect(204);
    const ds = t.app.get(DataSource);
    const p = (i: number) => (ds.options.type === 'postgres' ? `$${i}` : '?');
    const appId = h.tenant.appId;
    const at = Date.now() - 60_000;
    // All the app's events in one millisecond, two of them in the next; three of them failed, the others delivered.
    await ds.query(`UPDATE outbox SET created_at = ${p(1)} WHERE app_id = ${p(2)}`, [at, appId]);
    const byId: { id: string }[] = await ds.query(`SELECT id FROM outbox WHERE app_id = ${p(1)} ORDER BY id`, [appId]);
    expect(byId.length).toBeGreaterThanOrEqual(6);
    const newer = [byId[1].id, byId[4].id];
    const failed = [byId[0].id, byId[2].id, byId[5].id];
    await ds.query(`UPDATE outbox SET created_at = ${p(1)} WHERE id IN (${p(2)}, ${p(3)})`, [at + 1, ...newer]);
    await ds.query(`UPDATE outbox SET delivery_status = CASE WHEN id IN (${p(1)}, ${p(2)}, ${p(3)}) THEN 'failed' ELSE 'delivered' END WHERE app_id = ${p(4)}`, [...failed, appId]);
    // The order the list promises, as the database orders ids (its collation).
    const expected = async (status?: string): Promise<string[]> =>
      ((await ds.query(
        `SELECT id FROM outbox WHERE app_id = ${p(1)}${status ? ` AND delivery_status = ${p(2)}` : ''} ORDER BY created_at DESC, id DESC`,
        status ? [appId, status] : [appId],
      )) as { id: string }[]).map((r) => r.id);

    const pages = async (query: string, limit: number): Promise<string[]> => {
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const url: string = `/v1/webhook-deliveries?limit=${limit}${query}${cursor ? `&before=${cursor}` : ''}`;
        const res = await t.http.get(url).set(bearer(h.tenant.apiKey)).expect(200);
        const page: { eventId: string }[] = res.body.deliveries;
        expect(page.length).toBeLessThanOrEqual(limit);
        seen.push(...page.map((d) => d.eventId));
        cursor = res.body.nextCursor;
        if (cursor) expect(cursor).toBe(page[page.length - 1].eventId);
      } while (cursor);
      return seen;
    };
    const all = await expected();
    expect(all.slice(0, 2).sort()).toEqual([...newer].sort());
    for (const limit of [1, 2, 3]) expect(await pages('', limit)).toEqual(all);
    expect(await expected('failed')).toHaveLength(3);
    for (const limit of [1, 2]) expect(await pages('&status=failed', limit)).toEqual(await expected('failed'));
    expect(await expected('delivered')).toHaveLength(all.length - 3);
    expect(await pages('&status=delivered', 2)).toEqual(await expected('delivered'));
  });

  it("refuses a cursor that is not one of the app's events, and an unknown status", async () => {
    const h = await human(t);
    const other = await human(t);
    await createStepUp(t, other).expect(201);
    const [{ id }] = (await t.app.get(DataSource).query(`SELECT id FROM outbox WHERE app_id = ${t.app.get(DataSource).options.type === 'postgres' ? '$1' : '?'} LIMIT 1`, [other.tenant.appId])) as { id: string }[];
    expect((await t.http.get(`/v1/webhook-deliveries?before=${id}`).set(bearer(h.tenant.apiKey)).expect(400)).body.code).toBe('validation_failed');
    for (const status of ['ping', 'constructor', "failed' OR '1'='1"]) {
      expect((await t.http.get(`/v1/webhook-deliveries?status=${encodeURIComponent(status)}`).set(bearer(h.tenant.apiKey)).expect(400)).body.code).toBe('validation_failed');
    }
    expect((await t.http.get('/v1/webhook-deliveries?status=failed&status=delivered').set(bearer(h.tenant.apiKey)).expect(400)).body.code).toBe('validation_failed');
    // Behind the validation too, the repository writes only its own constants into the statement.
    await expect(t.app.get(OutboxRepository).deliveries(h.tenant.appId, { status: 'constructor' as never, limit: 1 })).rejects.toThrow(RangeError);
  });
});
