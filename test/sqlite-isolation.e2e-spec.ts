import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from './support/app.js';
import { bearer, createTenant, type Tenant } from './support/fixtures.js';

/**
 * Issue 11 item 11: on SQLite every transaction shared one connection, so a transaction that rolled
 * back took with it whatever other requests had committed while it was open. Here one transaction
 * stays open (and then fails) while another request commits a user: that user must survive.
 * (On PostgreSQL each transaction has its own connection: the same test holds there too.)
 */
let t: TestApp;
let tenant: Tenant;
beforeAll(async () => {
  t = await startApp();
  tenant = await createTenant(t);
});
afterAll(async () => {
  await t?.close();
});

describe('transactions do not take other requests’ work with them', () => {
  it('a user committed while another transaction is open survives that transaction’s rollback', async () => {
    const ds = t.app.get(DataSource);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let opened!: () => void;
    const isOpen = new Promise<void>((r) => (opened = r));
    const failing = ds
      .transaction(async (m) => {
        await m.query('SELECT 1');
        opened();
        await gate;
        throw new Error('roll back');
      })
      .catch((err: Error) => err.message);
    await isOpen;
    const created = t.http.post('/v1/users').set(bearer(tenant.apiKey)).send({ externalId: `survivor-${Date.now()}`, displayName: 'Survivor' }).then((r) => r);
    // Let the second request run as far as it can while the first transaction is open.
    await new Promise((r) => setTimeout(r, 200));
    release();
    expect(await failing).toBe('roll back');
    const res = await created;
    expect(res.status).toBe(201);
    await t.http.get(`/v1/users/${res.body.id}`).set(bearer(tenant.apiKey)).expect(200);
  });
});
