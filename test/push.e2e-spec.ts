import { DataSource } from 'typeorm';
import webpush from 'web-push';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HumanSessionsService } from '../src/modules/me/session/human-sessions.service.js';
import { PUBLIC_URL, startApp, usingPostgres, type TestApp } from './support/app.js';
import { bearer, createTenant, createUser } from './support/fixtures.js';
import { approvalToken, createStepUp, expectStatus, human, type Human } from './support/step-up.js';
import { pushService, pushSubscriber, verifyVapid, type PushSubscriber } from './support/web-push.js';
import { browserAvailable, freePort, launchBrowser } from './support/browser.js';
import { signInWithPasskey } from './support/me.js';

const VAPID = webpush.generateVAPIDKeys();
const SUBJECT = 'mailto:push-test@example.com';
const env = {
  WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_BASE_MS: '200', WEBHOOK_TIMEOUT_MS: '3000',
  VAPID_PUBLIC_KEY: VAPID.publicKey, VAPID_PRIVATE_KEY: VAPID.privateKey, VAPID_SUBJECT: SUBJECT,
};
const CSRF = { 'X-Requested-With': 'mfa-proxy' };

let t: TestApp;
let ps: Awaited<ReturnType<typeof pushService>>;
beforeAll(async () => {
  t = await startApp(env);
  ps = await pushService();
});
afterAll(async () => {
  await t?.close();
  await ps?.close();
});

/**
 * A dashboard session of this user without the ceremony (users made here may have no factor; the
 * sign-in itself is tested with the `me` module, and once below): its Cookie header.
 */
async function sessionOf(app: TestApp, appId: string, userId: string): Promise<string> {
  const sessions = app.app.get(HumanSessionsService, { strict: false });
  const setCookie = await app.app.get(DataSource).transaction((m) => sessions.startIn(m, { appId, userId }, 'totp'));
  return setCookie.split(';')[0];
}

function subscribe(app: TestApp, cookie: string, body: unknown) {
  return app.http.post('/v1/me/push-subscriptions').set('Cookie', cookie).set(CSRF).send(body as object);
}

async function subscribed(h: Human, endpoint = ps.endpoint(), session?: string): Promise<{ id: string; endpoint: string; sub: PushSubscriber; cookie: string }> {
  const cookie = session ?? (await sessionOf(t, h.tenant.appId, h.userId));
  const sub = pushSubscriber();
  const res = await expectStatus(subscribe(t, cookie, { endpoint, keys: sub.keys, expirationTime: null }), 201);
  expect(res.body).toEqual({ id: expect.stringMatching(/^psb_[A-Za-z0-9_-]{22}$/) });
  return { id: res.body.id, endpoint, sub, cookie };
}

const subscriptionRows = (appId: string): Promise<Record<string, string>[]> =>
  t.app.get(DataSource).query(`SELECT * FROM push_subscriptions WHERE app_id = ${usingPostgres() ? '$1' : '?'}`, [appId]);

const pushRows = (appId: string): Promise<{ delivery_status: string; attempts: number; last_error: string | null }[]> =>
  t.app.get(DataSource).query(`SELECT delivery_status, attempts, last_error FROM outbox WHERE app_id = ${usingPostgres() ? '$1' : '?'} AND type = 'push.notification' ORDER BY created_at`, [appId]);

describe('Web Push', () => {
  it('GET /v1/push/vapid-public-key gives the configured VAPID public key, without credentials', async () => {
    const res = await t.http.get('/v1/push/vapid-public-key').expect(200);
    expect(res.body).toEqual({ publicKey: VAPID.publicKey });
  });

  it('a new step-up reaches every subscription of the user as an RFC 8291 push with TTL = remaining lifetime, Urgency high and a valid VAPID JWT', async () => {
    const h = await human(t);
    // Signed in as the dashboard does (a sign-in link proven by the user's passkey).
    const a = await subscribed(h, ps.endpoint(), await signInWithPasskey(t, h));
    const b = await subscribed(h);
    const created = await expectStatus(createStepUp(t, h, { expiresIn: 600 }), 201);
    await expect.poll(() => ps.to(a.endpoint).length + ps.to(b.endpoint).length, { timeout: 10_000 }).toBe(2);
    for (const { endpoint, sub } of [a, b]) {
      const [push] = ps.to(endpoint);
      expect(push.headers['content-encoding']).toBe('aes128gcm');
      expect(push.headers['urgency']).toBe('high');
      // TTL: the step-up's remaining lifetime in seconds at the time of sending (RFC 8030 §5.2).
      const remaining = (Date.parse(created.body.expiresAt) - push.at) / 1000;
      expect(Number(push.headers['ttl'])).toBeGreaterThan(remaining - 5);
      expect(Number(push.headers['ttl'])).toBeLessThanOrEqual(Math.ceil(remaining) + 1);
      const claims = await verifyVapid(push.headers['authorization'], { publicKey: VAPID.publicKey, audience: ps.origin, subject: SUBJECT });
      expect(claims.exp! - Math.floor(Date.now() / 1000)).toBeGreaterThan(0);
      const payload = JSON.parse(sub.decrypt(push.body));
      expect(payload).toEqual({
        type: 'step_up.created', stepUpId: created.body.id, app: expect.any(String), agent: 'research-bot', action: 'files:delete',
        bindingCode: created.body.bindingCode, url: `${PUBLIC_URL}/me?stepUp=${created.body.id}`,
      });
      expect(payload.app).toBe((await t.http.get(`/v1/apps/${h.tenant.appId}`).set(bearer(t.adminToken)).expect(200)).body.name);
      // The approval link's secret never travels in a push.
      expect(JSON.stringify(payload)).not.toContain(approvalToken(created.body.approvalUrl));
      // Only this subscriber's key opens it.
      expect(() => pushSubscriber().decrypt(push.body)).toThrow();
    }
    expect((await pushRows(h.tenant.appId)).map((r) => r.delivery_status)).toEqual(['delivered', 'delivered']);
  });

  it('keeps the endpoint and the keys encrypted at rest, bound to their row', async () => {
    const h = await human(t);
    const a = await subscribed(h);
    const rows = await subscriptionRows(h.tenant.appId);
    expect(rows).toHaveLength(1);
    const text = JSON.stringify(rows[0]);
    expect(text).not.toContain(a.sub.keys.p256dh);
    expect(text).not.toContain(a.sub.keys.auth);
    expect(text).not.toContain(new URL(a.endpoint).pathname);
    // A ciphertext copied into another row does not open there: the push to it fails, nothing is sent.
    const b = await subscribed(h);
    const q = usingPostgres() ? ['$1', '$2'] : ['?', '?'];
    await t.app.get(DataSource).query(`UPDATE push_subscriptions SET auth_enc = ${q[0]} WHERE id = ${q[1]}`, [rows[0].auth_enc, b.id]);
    await expectStatus(createStepUp(t, h), 201);
    await expect.poll(async () => (await pushRows(h.tenant.appId)).map((r) => r.delivery_status).sort(), { timeout: 10_000 }).toEqual(['delivered', 'push_failed']);
    expect(ps.to(a.endpoint)).toHaveLength(1);
    expect(ps.to(b.endpoint)).toHaveLength(0);
  });

  it('a 410 from the push service deletes the subscription: no more pushes to it', async () => {
    const h = await human(t);
    const gone = await subscribed(h);
    const kept = await subscribed(h);
    ps.answer(gone.endpoint, 410);
    await expectStatus(createStepUp(t, h), 201);
    await expect.poll(async () => (await subscriptionRows(h.tenant.appId)).map((r) => r.id), { timeout: 10_000 }).toEqual([kept.id]);
    await expectStatus(createStepUp(t, h, { action: 'files:write' }), 201);
    await expect.poll(() => ps.to(kept.endpoint).length, { timeout: 10_000 }).toBe(2);
    expect(ps.to(gone.endpoint)).toHaveLength(1);
    // Its DELETE now finds nothing.
    await t.http.delete(`/v1/me/push-subscriptions/${gone.id}`).set('Cookie', gone.cookie).set(CSRF).expect(404);
  });

  it('a 404 from the push service deletes the subscription too', async () => {
    const h = await human(t);
    const gone = await subscribed(h);
    ps.answer(gone.endpoint, 404);
    await expectStatus(createStepUp(t, h), 201);
    await expect.poll(async () => (await subscriptionRows(h.tenant.appId)).length, { timeout: 10_000 }).toBe(0);
  });

  it('a 500 is retried with backoff until the push service takes it; the subscription stays', async () => {
    const h = await human(t);
    const a = await subscribed(h);
    ps.answer(a.endpoint, 500, 503);
    const created = await expectStatus(createStepUp(t, h), 201);
    await expect.poll(() => ps.to(a.endpoint).length, { timeout: 15_000 }).toBe(3);
    const [first, second, third] = ps.to(a.endpoint);
    expect(second.at - first.at).toBeGreaterThanOrEqual(100);
    expect(third.at - second.at).toBeGreaterThanOrEqual(200);
    expect(JSON.parse(a.sub.decrypt(third.body)).stepUpId).toBe(created.body.id);
    await expect.poll(async () => (await pushRows(h.tenant.appId))[0], { timeout: 5_000 }).toMatchObject({ delivery_status: 'delivered', attempts: 3 });
    expect(await subscriptionRows(h.tenant.appId)).toHaveLength(1);
  });

  it('a hanging push service does not hold up pushes to another one', async () => {
    const slow = await pushService();
    try {
      const h = await human(t);
      const stuck = await subscribed(h, slow.endpoint());
      const fine = await subscribed(h);
      slow.answer(stuck.endpoint, 'hang', 'hang', 'hang');
      await expectStatus(createStepUp(t, h), 201);
      await expect.poll(() => ps.to(fine.endpoint).length, { timeout: 5_000 }).toBe(1);
      await expect.poll(() => slow.to(stuck.endpoint).length, { timeout: 5_000 }).toBe(1);
      // While the first push still hangs (3 s timeout), a second step-up's push is delivered at once.
      const started = Date.now();
      await expectStatus(createStepUp(t, h, { action: 'files:write' }), 201);
      await expect.poll(() => ps.to(fine.endpoint).length, { timeout: 5_000 }).toBe(2);
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      await slow.close();
    }
  });

  it('a hanging push service holds at most a few delivery slots: with 27 pushes stuck there, another push service still gets its pushes at once', async () => {
    const slow = await pushService();
    try {
      const h = await human(t);
      const stuck = [];
      for (let i = 0; i < 9; i++) {
        const s = await subscribed(h, slow.endpoint());
        slow.answer(s.endpoint, 'hang', 'hang', 'hang', 'hang');
        stuck.push(s);
      }
      const fine = await subscribed(h);
      const started = Date.now();
      for (const action of ['files:a', 'files:b', 'files:c']) await expectStatus(createStepUp(t, h, { action }), 201);
      await expect.poll(() => ps.to(fine.endpoint).length, { timeout: 5_000 }).toBe(3);
      expect(Date.now() - started).toBeLessThan(2_500);
      // The stuck service never has more than MAX_IN_FLIGHT_PER_ORIGIN (4) of them at once.
      expect(slow.received.length).toBeLessThanOrEqual(4);
    } finally {
      await slow.close();
    }
  });

  it('no push for a user without subscriptions, and none to another user of the app', async () => {
    const h = await human(t);
    const other = await createUser(t, h.tenant);
    const theirs = await subscribed({ ...h, userId: other });
    await expectStatus(createStepUp(t, h), 201);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(ps.to(theirs.endpoint)).toHaveLength(0);
    expect(await pushRows(h.tenant.appId)).toEqual([]);
  });
});

describe('push subscriptions (POST/DELETE /v1/me/push-subscriptions)', () => {
  it('requires the CSRF header (403 csrf_required) and a session (401), and changes nothing without them', async () => {
    const h = await human(t);
    const cookie = await sessionOf(t, h.tenant.appId, h.userId);
    const body = { endpoint: ps.endpoint(), keys: pushSubscriber().keys };
    const noCsrf = await t.http.post('/v1/me/push-subscriptions').set('Cookie', cookie).send(body).expect(403);
    expect(noCsrf.body).toMatchObject({ status: 403, code: 'csrf_required' });
    const wrongCsrf = await t.http.post('/v1/me/push-subscriptions').set('Cookie', cookie).set('X-Requested-With', 'XMLHttpRequest').send(body).expect(403);
    expect(wrongCsrf.body.code).toBe('csrf_required');
    const noSession = await t.http.post('/v1/me/push-subscriptions').set(CSRF).send(body).expect(401);
    expect(noSession.body).toMatchObject({ status: 401, code: 'unauthorized' });
    expect(await subscriptionRows(h.tenant.appId)).toHaveLength(0);
    const { id } = (await subscribe(t, cookie, body).expect(201)).body;
    const delNoCsrf = await t.http.delete(`/v1/me/push-subscriptions/${id}`).set('Cookie', cookie).expect(403);
    expect(delNoCsrf.body.code).toBe('csrf_required');
    expect(await subscriptionRows(h.tenant.appId)).toHaveLength(1);
    await t.http.delete(`/v1/me/push-subscriptions/${id}`).set('Cookie', cookie).set(CSRF).expect(204);
    expect(await subscriptionRows(h.tenant.appId)).toHaveLength(0);
  });

  it('refuses malformed keys with 400 and stores nothing', async () => {
    const h = await human(t);
    const cookie = await sessionOf(t, h.tenant.appId, h.userId);
    const good = pushSubscriber().keys;
    const offCurve = Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 1)]).toString('base64url');
    const compressed = Buffer.concat([Buffer.from([2]), Buffer.alloc(32, 1)]).toString('base64url');
    const cases: [unknown, string][] = [
      [{ ...good, p256dh: offCurve }, 'keys.p256dh is not a point on P-256'],
      [{ ...good, p256dh: compressed }, 'keys.p256dh must be an uncompressed P-256 public key (65 bytes, base64url)'],
      [{ ...good, p256dh: good.p256dh.slice(0, -4) }, 'keys.p256dh must be an uncompressed P-256 public key (65 bytes, base64url)'],
      [{ ...good, p256dh: good.p256dh.replace(/^./, '+') }, 'keys.p256dh must be an uncompressed P-256 public key (65 bytes, base64url)'],
      [{ ...good, auth: Buffer.alloc(15).toString('base64url') }, 'keys.auth must be 16 bytes, base64url'],
      [{ ...good, auth: Buffer.alloc(20).toString('base64url') }, 'keys.auth must be 16 bytes, base64url'],
      [{ ...good, auth: Buffer.alloc(32).toString('base64url') }, 'keys.auth must be shorter than or equal to 40 characters'],
    ];
    for (const [keys, detail] of cases) {
      const res = await subscribe(t, cookie, { endpoint: ps.endpoint(), keys }).expect(400);
      expect(res.body).toEqual({ type: 'https://mfa-proxy.dev/problems/validation-failed', title: 'Invalid request', status: 400, detail, code: 'validation_failed' });
    }
    for (const body of [{ endpoint: ps.endpoint() }, { endpoint: ps.endpoint(), keys: { p256dh: good.p256dh } }, { endpoint: ps.endpoint(), keys: 'x' }, { endpoint: 42, keys: good }, { endpoint: ps.endpoint(), keys: good, extra: 1 }]) {
      const res = await subscribe(t, cookie, body).expect(400);
      expect(res.body).toMatchObject({ status: 400, code: 'validation_failed' });
    }
    expect(await subscriptionRows(h.tenant.appId)).toHaveLength(0);
  });

  it('refuses an endpoint that is not https when WEBHOOK_ALLOW_PRIVATE is false, and private or credentialed ones (400)', async () => {
    const strict = await startApp({ ...env, WEBHOOK_ALLOW_PRIVATE: 'false' });
    try {
      const tenant = await createTenant(strict);
      const userId = await createUser(strict, tenant);
      const cookie = await sessionOf(strict, tenant.appId, userId);
      const keys = pushSubscriber().keys;
      const cases: [string, string][] = [
        ['http://push.example.com/sub/1', 'endpoint must be an https URL'],
        [ps.endpoint(), 'endpoint must be an https URL'],
        ['https://127.0.0.1/sub/1', 'endpoint must not point to a private, loopback or link-local address'],
        ['https://169.254.169.254/latest', 'endpoint must not point to a private, loopback or link-local address'],
        ['https://[2002:a00:1::1]/sub/1', 'endpoint must not point to a private, loopback or link-local address'],
        ['https://localhost/sub/1', 'endpoint must not point to localhost'],
        ['https://user:pw@push.example.com/sub/1', 'endpoint must not carry credentials'],
        // RFC 6761 §6.4: never resolves. (Names resolving to private addresses: resolvePublicAddress, ssrf.spec.ts.)
        ['https://push.invalid/sub/1', 'endpoint must resolve to a public address'],
        ['not a url', 'endpoint is not a URL'],
        [`https://push.example.com/${'a'.repeat(2100)}`, 'endpoint must be shorter than or equal to 2048 characters'],
      ];
      for (const [endpoint, detail] of cases) {
        const res = await strict.http.post('/v1/me/push-subscriptions').set('Cookie', cookie).set(CSRF).send({ endpoint, keys }).expect(400);
        expect(res.body.detail, endpoint).toBe(detail);
        expect(res.body.code).toBe('validation_failed');
      }
      const rows = await strict.app.get(DataSource).query('SELECT id FROM push_subscriptions WHERE app_id = ' + (usingPostgres() ? '$1' : '?'), [tenant.appId]);
      expect(rows).toHaveLength(0);
    } finally {
      await strict.close();
    }
  });

  // SQLite only: on PostgreSQL every app instance of the run (other test files' too) shares the outbox and may claim
  // this push, and those instances allow private addresses; a per-instance setting cannot be isolated there. The
  // delivery-time check is the same code on both databases (PushDispatcher → pushEndpointProblem, postOutbound).
  it.skipIf(usingPostgres())('checks the endpoint again at delivery: one registered while private addresses were allowed gets no request once they are not', async () => {
    const strict = await startApp({ ...env, WEBHOOK_ALLOW_PRIVATE: 'false' });
    try {
      const h = await human(strict);
      const cookie = await sessionOf(strict, h.tenant.appId, h.userId);
      const sub = pushSubscriber();
      const endpoint = ps.endpoint();
      // The operator allowed private addresses at registration time, and no longer does.
      strict.config.webhookAllowPrivate = true;
      await subscribe(strict, cookie, { endpoint, keys: sub.keys }).expect(201);
      strict.config.webhookAllowPrivate = false;
      await expectStatus(createStepUp(strict, h), 201);
      const rows = () => strict.app.get(DataSource).query(`SELECT delivery_status, last_error FROM outbox WHERE app_id = ${usingPostgres() ? '$1' : '?'} AND type = 'push.notification'`, [h.tenant.appId]);
      await expect.poll(rows, { timeout: 10_000 }).toEqual([{ delivery_status: 'push_failed', last_error: 'endpoint must be an https URL' }]);
      expect(ps.to(endpoint)).toHaveLength(0);
    } finally {
      await strict.close();
    }
  });

  it("another user's subscription is 404 on DELETE (and stays); malformed ids are 404", async () => {
    const h = await human(t);
    const mine = await subscribed(h);
    const otherUser = await createUser(t, h.tenant);
    const otherCookie = await sessionOf(t, h.tenant.appId, otherUser);
    const otherTenant = await createTenant(t);
    const stranger = await sessionOf(t, otherTenant.appId, await createUser(t, otherTenant));
    for (const cookie of [otherCookie, stranger]) {
      const res = await t.http.delete(`/v1/me/push-subscriptions/${mine.id}`).set('Cookie', cookie).set(CSRF).expect(404);
      expect(res.body).toMatchObject({ status: 404, code: 'not_found' });
    }
    for (const id of ['psb_x', 'usr_AAAAAAAAAAAAAAAAAAAAAA', 'a'.repeat(300)]) await t.http.delete(`/v1/me/push-subscriptions/${id}`).set('Cookie', mine.cookie).set(CSRF).expect(404);
    expect((await subscriptionRows(h.tenant.appId)).map((r) => r.id)).toEqual([mine.id]);
    await t.http.delete(`/v1/me/push-subscriptions/${mine.id}`).set('Cookie', mine.cookie).set(CSRF).expect(204);
    await t.http.delete(`/v1/me/push-subscriptions/${mine.id}`).set('Cookie', mine.cookie).set(CSRF).expect(404);
  });

  it('the same endpoint again is the same subscription with new keys; registered by another user it moves to them', async () => {
    const h = await human(t);
    const first = await subscribed(h);
    const fresh = pushSubscriber();
    const again = await subscribe(t, first.cookie, { endpoint: first.endpoint, keys: fresh.keys }).expect(201);
    expect(again.body.id).toBe(first.id);
    await expectStatus(createStepUp(t, h), 201);
    await expect.poll(() => ps.to(first.endpoint).length, { timeout: 10_000 }).toBe(1);
    expect(JSON.parse(fresh.decrypt(ps.to(first.endpoint)[0].body)).type).toBe('step_up.created');

    const otherUser = await createUser(t, h.tenant);
    const otherCookie = await sessionOf(t, h.tenant.appId, otherUser);
    const moved = await subscribe(t, otherCookie, { endpoint: first.endpoint, keys: fresh.keys }).expect(201);
    expect(moved.body.id).not.toBe(first.id);
    const rows = await subscriptionRows(h.tenant.appId);
    expect(rows.map((r) => [r.id, r.user_id])).toEqual([[moved.body.id, otherUser]]);
  });

  it('bounds the subscriptions of one user (409), and deleting the user deletes them', async () => {
    const tenant = await createTenant(t);
    const userId = await createUser(t, tenant);
    const cookie = await sessionOf(t, tenant.appId, userId);
    for (let i = 0; i < 10; i++) await subscribe(t, cookie, { endpoint: ps.endpoint(), keys: pushSubscriber().keys }).expect(201);
    const over = await subscribe(t, cookie, { endpoint: ps.endpoint(), keys: pushSubscriber().keys }).expect(409);
    expect(over.body).toMatchObject({ status: 409, code: 'conflict', detail: 'at most 10 push subscriptions per user: delete one first' });
    expect(await subscriptionRows(tenant.appId)).toHaveLength(10);
    await t.http.delete(`/v1/users/${userId}`).set(bearer(tenant.apiKey)).expect(204);
    expect(await subscriptionRows(tenant.appId)).toHaveLength(0);
  });
});

describe('the dashboard scripts', () => {
  it('serves the service worker at /me/sw.js with Service-Worker-Allowed and the pages’ CSP, and the client helper at /me/push.js', async () => {
    const sw = await t.http.get('/me/sw.js').expect(200);
    expect(sw.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(sw.headers['service-worker-allowed']).toBe('/me');
    expect(sw.headers['content-security-policy']).toContain("default-src 'none'");
    expect(sw.headers['x-content-type-options']).toBe('nosniff');
    expect(sw.text).toContain("addEventListener('push'");
    expect(sw.text).toContain("addEventListener('notificationclick'");
    const client = await t.http.get('/me/push.js').expect(200);
    expect(client.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(client.text).toContain('pushManager.subscribe({ userVisibleOnly: true, applicationServerKey');
    expect(client.text).toContain("'X-Requested-With': 'mfa-proxy'");
  });
});

describe.runIf(usingPostgres())('two instances on one PostgreSQL (the outbox is shared)', () => {
  it('each push is delivered once, whichever instance claims it', async () => {
    const second = await startApp(env);
    try {
      const h = await human(t);
      const a = await subscribed(h);
      for (let i = 0; i < 4; i++) await expectStatus(createStepUp(t, h, { action: `files:op${i}` }), 201);
      await expect.poll(() => ps.to(a.endpoint).length, { timeout: 10_000 }).toBe(4);
      await new Promise((r) => setTimeout(r, 1_500));
      const ids = ps.to(a.endpoint).map((p) => JSON.parse(a.sub.decrypt(p.body)).stepUpId);
      expect(new Set(ids).size).toBe(4);
    } finally {
      await second.close();
    }
  });
});

describe.runIf(browserAvailable)('the service worker in Chromium', () => {
  it('shows a step-up push as a notification naming app, agent, action and binding code, opening only a page of this origin', async () => {
    const port = await freePort();
    const origin = `http://localhost:${port}`;
    const app = await startApp({ ...env, PUBLIC_URL: origin });
    await app.app.listen({ port, host: '127.0.0.1' });
    const browser = await launchBrowser();
    try {
      await browser.grantPermissions(['notifications'], { origin });
      const page = await browser.newPage();
      await page.goto(`${origin}/v1/push/vapid-public-key`);
      const cdp = await browser.newCDPSession(page);
      const registrationId = new Promise<string>((resolve) =>
        cdp.on('ServiceWorker.workerVersionUpdated', (e) => {
          const v = e.versions.find((x) => x.scriptURL === `${origin}/me/sw.js` && x.status === 'activated');
          if (v) resolve(v.registrationId);
        }),
      );
      await cdp.send('ServiceWorker.enable');
      // Browser-side code (this project's TS has no DOM lib): typed loosely.
      await page.evaluate(async () => {
        await (globalThis as unknown as { navigator: { serviceWorker: { register(url: string, o: { scope: string }): Promise<unknown> } } }).navigator.serviceWorker.register('/me/sw.js', { scope: '/me' });
      });
      const id = await registrationId;
      const worker = browser.serviceWorkers().find((w) => w.url() === `${origin}/me/sw.js`) ?? (await browser.waitForEvent('serviceworker'));
      // Running and past its activate handler (clients.claim) before the first push.
      await expect.poll(() => worker.evaluate(() => (globalThis as unknown as { registration: { active: { state: string } | null } }).registration.active?.state), { timeout: 5_000 }).toBe('activated');
      const notifications = () =>
        worker.evaluate(async () => {
          type Shown = { title: string; body: string; tag: string; data: { url: string } };
          const sw = globalThis as unknown as { registration: { getNotifications(): Promise<Shown[]> } };
          return (await sw.registration.getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag, url: n.data.url }));
        });
      // CDP's synthetic push is now and then dropped right after activation: delivered again until
      // its notification shows (same tag: a repeat replaces, never duplicates).
      const pushUntilShown = async (data: { stepUpId: string } & Record<string, unknown>) => {
        await expect.poll(async () => {
          const shown = (await notifications()).find((n) => n.tag === `step-up:${data.stepUpId}`);
          if (!shown) await cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId: id, data: JSON.stringify(data) });
          return shown !== undefined;
        }, { timeout: 10_000, interval: 500 }).toBe(true);
      };

      // An invisible right-to-left override in the agent's name is shown, not obeyed.
      await pushUntilShown({ type: 'step_up.created', stepUpId: 'stp_one', app: 'Acme Books', agent: 'research\u202Ebot', action: 'files:delete', bindingCode: 'K7P2QX', url: `${origin}/me?stepUp=stp_one` });
      expect(await notifications()).toEqual([
        { title: 'research[U+202E]bot asks for your approval', body: 'files:delete\nAcme Books · code K7P2QX', tag: 'step-up:stp_one', url: `${origin}/me?stepUp=stp_one` },
      ]);
      // A payload naming another origin opens the dashboard instead.
      await pushUntilShown({ type: 'step_up.created', stepUpId: 'stp_two', app: 'Acme Books', agent: 'bot', action: 'files:write', bindingCode: 'AB23CD', url: 'https://evil.example/phish' });
      expect((await notifications()).find((n) => n.tag === 'step-up:stp_two')?.url).toBe(`${origin}/me`);
    } finally {
      await browser.close();
      await app.close();
    }
  });
});
