import { DataSource, type QueryRunner } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataSourceOptions, runMigrations } from '../src/database/data-source.js';
import { MIGRATIONS } from '../migrations/index.js';
import { privateDatabase, startApp, usingPostgres, type TestApp } from './support/app.js';
import { bearer, createTenant } from './support/fixtures.js';

/** The PostgreSQL pool: its size and its wait are the operator's (DATABASE_POOL_MAX, DATABASE_POOL_TIMEOUT_MS). */
describe.skipIf(!usingPostgres())('the PostgreSQL connection pool', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('migrates a fresh database through a pool of one connection (the lock and the migrations share it)', async () => {
    const own = await privateDatabase();
    cleanups.push(own.drop);
    // A second connection would wait 2 s and fail, not hang.
    const ds = new DataSource(dataSourceOptions({ database: { type: 'postgres', url: own.env.DATABASE_URL, poolMax: 1, poolTimeoutMs: 2000 } }));
    await ds.initialize();
    try {
      expect(await runMigrations(ds)).toEqual(MIGRATIONS.map((m) => new m().name));
      expect(await runMigrations(ds)).toEqual([]);
    } finally {
      await ds.destroy();
    }
  }, 30_000);

  describe('with every connection taken', () => {
    let t: TestApp;
    let held: QueryRunner | null = null;
    beforeAll(async () => {
      const own = await privateDatabase();
      cleanups.push(own.drop);
      t = await startApp({ ...own.env, DATABASE_POOL_MAX: '1', DATABASE_POOL_TIMEOUT_MS: '300' });
      cleanups.push(() => t.close());
    });
    afterAll(async () => {
      await held?.release();
    });

    it('a request that needs the database answers 503 with Retry-After after the pool wait, and works again once one is free', async () => {
      const tenant = await createTenant(t);
      const list = () => t.http.get('/v1/webhook-deliveries').set(bearer(tenant.apiKey));
      expect((await list()).status).toBe(200);
      const rows = async () => ((await t.app.get(DataSource).query('SELECT count(*)::int AS n FROM apps')) as { n: number }[])[0].n;
      const apps = await rows();

      held = t.app.get(DataSource).createQueryRunner();
      await held.connect();
      try {
        const busy = await list();
        expect(busy.status).toBe(503);
        expect(busy.headers['retry-after']).toBe('1');
        expect(busy.body).toMatchObject({ code: 'service_unavailable', status: 503 });
        // An operator call that would write: refused the same way, and nothing written.
        const create = await t.http.post('/v1/apps').set(bearer(t.adminToken)).send({ name: 'while-busy' });
        expect(create.status).toBe(503);
      } finally {
        await held.release();
        held = null;
      }
      expect((await list()).status).toBe(200);
      expect(await rows()).toBe(apps);
    });
  });
});
