import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from './support/app.js';
import { bearer, createTenant, world } from './support/fixtures.js';

let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

describe('tenant isolation', () => {
  it('app B cannot read, change or delete anything of app A (404, nothing changed)', async () => {
    const a = await world(t);
    const b = await createTenant(t);
    const asB = bearer(b.apiKey);

    const attempts = [
      t.http.get(`/v1/users/${a.userId}`).set(asB),
      t.http.delete(`/v1/users/${a.userId}`).set(asB),
      t.http.get(`/v1/agents/${a.agent.id}`).set(asB),
      t.http.patch(`/v1/agents/${a.agent.id}`).set(asB).send({ status: 'suspended' }),
      t.http.patch(`/v1/agents/${a.agent.id}`).set(asB).send({ permissionBoundaries: ['x:y'] }),
      t.http.post(`/v1/agents/${a.agent.id}/secret`).set(asB),
      t.http.delete(`/v1/agents/${a.agent.id}`).set(asB),
      t.http.post('/v1/agents').set(asB).send({ userId: a.userId, name: 'intruder', model: 'm', permissionBoundaries: ['research:read'] }),
    ];
    for (const attempt of attempts) {
      const res = await attempt;
      expect(res.status).toBe(404);
      expect(res.body).toMatchObject({ status: 404, code: 'not_found' });
    }
    const listed = await t.http.get('/v1/agents').query({ userId: a.userId }).set(asB).expect(200);
    expect(listed.body).toEqual([]);

    // Nothing changed for A.
    const agent = await t.http.get(`/v1/agents/${a.agent.id}`).set(bearer(a.tenant.apiKey)).expect(200);
    expect(agent.body).toMatchObject({ status: 'active', permissionBoundaries: ['research:read', 'files:*'] });
    await t.http.get(`/v1/users/${a.userId}`).set(bearer(a.tenant.apiKey)).expect(200);
    await t.http.get('/v1/whoami').set(bearer(a.token)).expect(200);
    await t.http.post('/oauth/token').auth(a.agent.id, a.agent.clientSecret).type('form').send({ grant_type: 'client_credentials' }).expect(200);
  });

  it('app B cannot introspect app A’s agent token', async () => {
    const a = await world(t);
    const b = await createTenant(t);
    const res = await t.http.post('/oauth/introspect').set(bearer(b.apiKey)).type('form').send({ token: a.token }).expect(200);
    expect(res.body).toEqual({ active: false });
  });

  it('the same externalId may exist in two apps, but not twice in one', async () => {
    const a = await createTenant(t);
    const b = await createTenant(t);
    await t.http.post('/v1/users').set(bearer(a.apiKey)).send({ externalId: 'same', displayName: 'A' }).expect(201);
    await t.http.post('/v1/users').set(bearer(b.apiKey)).send({ externalId: 'same', displayName: 'B' }).expect(201);
    const dup = await t.http.post('/v1/users').set(bearer(a.apiKey)).send({ externalId: 'same', displayName: 'A2' }).expect(409);
    expect(dup.body).toMatchObject({ status: 409, code: 'conflict' });
  });

  it('an app key cannot use operator endpoints and the operator token is not an app key', async () => {
    const a = await createTenant(t);
    await t.http.get(`/v1/apps/${a.appId}`).set(bearer(a.apiKey)).expect(401);
    await t.http.post('/v1/users').set(bearer(t.adminToken)).send({ externalId: 'x', displayName: 'x' }).expect(401);
  });
});

describe('operator: apps and API keys', () => {
  it('rotates API keys: a new key works, a deleted key stops at once', async () => {
    const a = await createTenant(t);
    const admin = bearer(t.adminToken);
    const created = await t.http.post(`/v1/apps/${a.appId}/api-keys`).set(admin).expect(201);
    expect(created.body.apiKey).toMatch(/^mpx_app_/);
    await t.http.post('/v1/users').set(bearer(created.body.apiKey)).send({ externalId: 'k2', displayName: 'x' }).expect(201);
    const app = await t.http.get(`/v1/apps/${a.appId}`).set(admin).expect(200);
    expect(app.body.apiKeys).toHaveLength(2);
    expect(JSON.stringify(app.body)).not.toContain(a.apiKey);
    expect(JSON.stringify(app.body)).not.toContain(a.webhookSecret);
    const oldKeyId = app.body.apiKeys.find((k: { id: string }) => k.id !== created.body.id).id;
    // Warm the cache, then delete: the key must stop at once.
    await t.http.post('/v1/users').set(bearer(a.apiKey)).send({ externalId: 'k3', displayName: 'x' }).expect(201);
    await t.http.delete(`/v1/apps/${a.appId}/api-keys/${oldKeyId}`).set(admin).expect(204);
    await t.http.post('/v1/users').set(bearer(a.apiKey)).send({ externalId: 'k4', displayName: 'x' }).expect(401);
    await t.http.delete(`/v1/apps/${a.appId}/api-keys/${oldKeyId}`).set(admin).expect(404);
    await t.http.post('/v1/users').set(bearer(created.body.apiKey)).send({ externalId: 'k5', displayName: 'x' }).expect(201);
  });

  it('patches name and webhookUrl', async () => {
    const a = await createTenant(t);
    const res = await t.http.patch(`/v1/apps/${a.appId}`).set(bearer(t.adminToken)).send({ name: 'Renamed', webhookUrl: 'https://hooks.example/x' }).expect(200);
    expect(res.body).toMatchObject({ id: a.appId, name: 'Renamed', webhookUrl: 'https://hooks.example/x' });
  });

  it('needs the operator token', async () => {
    const res = await t.http.post('/v1/apps').send({ name: 'x' }).expect(401);
    expect(res.body.code).toBe('unauthorized');
    await t.http.post('/v1/apps').set(bearer('mpx_adm_wrong')).send({ name: 'x' }).expect(401);
  });
});
