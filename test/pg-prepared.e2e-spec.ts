import { randomBytes } from 'node:crypto';
import { DataSource, QueryFailedError, type Logger } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryPrepared } from '../src/database/pg-prepared.js';
import { privateDatabase, startApp, usingPostgres, type TestApp } from './support/app.js';
import { bearer } from './support/fixtures.js';
import { approveWithPasskey, createStepUp, expectStatus, human, type Human } from './support/step-up.js';

/** The hot statements of PostgreSQL (the consume, the outbox and audit work) run as named prepared statements. */
describe.skipIf(!usingPostgres())('queryPrepared (PostgreSQL)', () => {
  const table = `t_prepared_${randomBytes(4).toString('hex')}`;
  const logged: string[] = [];
  const logger: Logger = {
    logQuery: (q) => void logged.push(q),
    logQueryError: () => undefined,
    logQuerySlow: () => undefined,
    logSchemaBuild: () => undefined,
    logMigration: () => undefined,
    log: () => undefined,
  };
  // One pooled connection, so the session whose prepared statements are read is the one that ran them.
  const ds = new DataSource({ type: 'postgres', url: process.env.TEST_DATABASE_URL, extra: { max: 1 }, logger });

  beforeAll(async () => {
    await ds.initialize();
    await ds.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v varchar NOT NULL)`);
  });
  afterAll(async () => {
    await ds.query(`DROP TABLE IF EXISTS ${table}`);
    await ds.destroy();
  });

  const prepared = async () =>
    (await ds.query('SELECT name, statement FROM pg_prepared_statements WHERE statement LIKE $1 ORDER BY name', [`%${table}%`])) as { name: string; statement: string }[];

  it('runs each text as one named statement of the connection, parsed once, however often it runs, and returns its rows', async () => {
    const insert = `INSERT INTO ${table} (id, v) SELECT * FROM unnest($1::int[], $2::varchar[]) RETURNING id, v`;
    expect(await queryPrepared(ds, insert, [[1, 2], ['a', 'b']])).toEqual([{ id: 1, v: 'a' }, { id: 2, v: 'b' }]);
    expect(await queryPrepared(ds, insert, [[3], ['c']])).toEqual([{ id: 3, v: 'c' }]);
    const select = `SELECT id, v FROM ${table} WHERE id = ANY($1::int[]) ORDER BY id`;
    for (let i = 0; i < 7; i++) expect(await queryPrepared(ds, select, [[1, 3]])).toEqual([{ id: 1, v: 'a' }, { id: 3, v: 'c' }]);

    const statements = await prepared();
    expect(statements.map((s) => s.statement).sort()).toEqual([insert, select].sort());
    expect(new Set(statements.map((s) => s.name)).size).toBe(2);
    for (const s of statements) expect(s.name).toMatch(/^mpx_[0-9a-f]{24}_\d+$/);
    // Logged like TypeORM's own queries, once per call.
    expect(logged.filter((q) => q === select)).toHaveLength(7);
  });

  it("on a transaction's manager, is part of that transaction: rolled back with it, seen by its other statements", async () => {
    const boom = new Error('roll back');
    await expect(
      ds.transaction(async (m) => {
        await queryPrepared(m, `INSERT INTO ${table} (id, v) VALUES ($1, $2)`, [10, 'inside']);
        expect(await m.query(`SELECT v FROM ${table} WHERE id = 10`)).toEqual([{ v: 'inside' }]);
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(await ds.query(`SELECT v FROM ${table} WHERE id = 10`)).toEqual([]);

    await ds.transaction((m) => queryPrepared(m, `INSERT INTO ${table} (id, v) VALUES ($1, $2)`, [11, 'committed']));
    expect(await ds.query(`SELECT v FROM ${table} WHERE id = 11`)).toEqual([{ v: 'committed' }]);
  });

  it('keeps working when a column is added after it was prepared (its columns are named, never *)', async () => {
    const select = `SELECT id, v FROM ${table} WHERE id = $1`;
    expect(await queryPrepared(ds, select, [1])).toEqual([{ id: 1, v: 'a' }]);
    await ds.query(`ALTER TABLE ${table} ADD COLUMN extra int`);
    expect(await queryPrepared(ds, select, [1])).toEqual([{ id: 1, v: 'a' }]);
  });

  it("fails as TypeORM's queries fail: QueryFailedError with the driver's code (the error filter's 4xx for a NUL byte reads it)", async () => {
    const insert = `INSERT INTO ${table} (id, v) VALUES ($1, $2)`;
    const duplicate = await queryPrepared(ds, insert, [1, 'again']).catch((err: unknown) => err);
    expect(duplicate).toBeInstanceOf(QueryFailedError);
    expect((duplicate as QueryFailedError & { driverError: { code: string } }).driverError.code).toBe('23505');
    const nul = await queryPrepared(ds, insert, [30, 'a\u0000b']).catch((err: unknown) => err);
    expect((nul as QueryFailedError & { driverError: { code: string } }).driverError.code).toBe('22021');
    expect(await ds.query(`SELECT count(*)::int AS n FROM ${table} WHERE id = 30`)).toEqual([{ n: 0 }]);
  });

  it('recovers when a migration changes the type of a column a prepared statement returns (instances running across a deploy)', async () => {
    const pooled = `SELECT id, v FROM ${table} WHERE id = $1 AND $2::int = 1`;
    const inTransaction = `SELECT id, v FROM ${table} WHERE id = $1 AND $2::int = 2`;
    expect(await queryPrepared(ds, pooled, [1, 1])).toEqual([{ id: 1, v: 'a' }]);
    expect(await queryPrepared(ds, inTransaction, [1, 2])).toEqual([{ id: 1, v: 'a' }]);
    expect((await prepared()).map((s) => s.statement)).toEqual(expect.arrayContaining([pooled, inTransaction]));
    // PostgreSQL refuses both on this connection from now on: "cached plan must not change result type".
    await ds.query(`ALTER TABLE ${table} ALTER COLUMN v TYPE text`);

    // In a transaction (aborted by the error): the call fails as any query would, and the next one,
    // on the same connection (the pool's only one), succeeds under a new name.
    const stale = await ds.transaction((m) => queryPrepared(m, inTransaction, [1, 2])).catch((err: unknown) => err);
    expect(stale).toBeInstanceOf(QueryFailedError);
    expect((stale as QueryFailedError & { driverError: { code: string } }).driverError.code).toBe('0A000');
    expect(await ds.transaction((m) => queryPrepared(m, inTransaction, [1, 2]))).toEqual([{ id: 1, v: 'a' }]);
    // On a pooled connection: prepared again under a new name within the call, which succeeds.
    expect(await queryPrepared(ds, pooled, [1, 1])).toEqual([{ id: 1, v: 'a' }]);
    expect(await queryPrepared(ds, pooled, [1, 1])).toEqual([{ id: 1, v: 'a' }]);
  });

  it('passes input only as values: a value that reads as SQL is stored as it is', async () => {
    const evil = `x'); DROP TABLE ${table}; --`;
    await queryPrepared(ds, `INSERT INTO ${table} (id, v) VALUES ($1, $2)`, [20, evil]);
    expect(await ds.query(`SELECT v FROM ${table} WHERE id = 20`)).toEqual([{ v: evil }]);
  });
});

/**
 * The service end to end across a deploy's migration: with a pool of one connection
 * (DATABASE_POOL_MAX=1) every statement of the instance runs on the connection where the consume
 * was prepared, so the verify after the migration meets the stale statement for certain.
 */
describe.skipIf(!usingPostgres())('verify-and-consume across a migration that changes a returned column (PostgreSQL)', () => {
  let own: Awaited<ReturnType<typeof privateDatabase>>;
  let t: TestApp;
  beforeAll(async () => {
    own = await privateDatabase();
    t = await startApp({ ...own.env, DATABASE_POOL_MAX: '1' });
  });
  afterAll(async () => {
    await t?.close();
    await own?.drop();
  });

  async function approvedToken(h: Human): Promise<string> {
    const created = await createStepUp(t, h).expect(201);
    await expectStatus(approveWithPasskey(t, h, created.body.approvalUrl), 200);
    return (await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(200)).body.mfaProxyToken as string;
  }
  const verify = (h: Human, token: string) =>
    t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send({ token, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 } });

  /** The name under which the instance's one connection holds the consume statement (read on that connection). */
  const consumeStatement = async (): Promise<string[]> =>
    ((await t.app.get(DataSource).query("SELECT name FROM pg_prepared_statements WHERE statement LIKE 'WITH asked AS%'")) as { name: string }[]).map((r) => r.name);

  it('a column added to the tables it writes changes nothing; a returned column of another type gets it prepared anew; each token is consumed once', async () => {
    const h = await human(t);
    const [first, second, third] = [await approvedToken(h), await approvedToken(h), await approvedToken(h)];
    expect((await verify(h, first).expect(200)).body).toMatchObject({ valid: true });
    const prepared = await consumeStatement();
    expect(prepared).toHaveLength(1);

    const admin = new DataSource({ type: 'postgres', url: own.env.DATABASE_URL, extra: { max: 1 } });
    await admin.initialize();
    const migrate = async (sql: string) => {
      // The instance holds one connection to its database, and on it the consume is prepared.
      const sessions = await admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`);
      expect(sessions).toEqual([{ n: 1 }]);
      await admin.query(sql);
    };
    try {
      // A deploy's migration adds columns: the statements name their columns, so they stay valid.
      await migrate('ALTER TABLE step_ups ADD COLUMN later_a int; ALTER TABLE audit_events ADD COLUMN later_b int; ALTER TABLE outbox ADD COLUMN later_c int');
      expect((await verify(h, second).expect(200)).body).toMatchObject({ valid: true });
      expect(await consumeStatement()).toEqual(prepared);
      // Another changes the type of a column the consume returns: the statement is stale on that connection.
      await migrate('ALTER TABLE step_ups ALTER COLUMN model TYPE text');
    } finally {
      await admin.destroy();
    }

    expect((await verify(h, third).expect(200)).body).toMatchObject({ valid: true });
    // Under a new name (pg's pool replaces a connection whose query failed; the other connections of a larger pool never run the stale name again).
    const renamed = await consumeStatement();
    expect(renamed).toHaveLength(1);
    expect(renamed[0]).not.toBe(prepared[0]);
    for (const token of [first, second, third]) expect((await verify(h, token).expect(200)).body).toMatchObject({ valid: false });
    const consumed = (await t.http.get('/v1/audit-events?type=mfa_proxy_token.consumed').set(bearer(h.tenant.apiKey)).expect(200)).body.events;
    expect(consumed).toHaveLength(3);
  });
});
