import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DataSource, MigrationExecutor, type DataSourceOptions } from 'typeorm';
import type { AppConfig } from '../config/config.schema.js';
import { MIGRATIONS } from '../../migrations/index.js';
import { ENTITIES } from './entities.js';

export function dataSourceOptions(config: Pick<AppConfig, 'database'>): DataSourceOptions {
  const common = { entities: ENTITIES, migrations: MIGRATIONS, synchronize: false, migrationsRun: false, logging: false } as const;
  if (config.database.type === 'sqlite') {
    if (config.database.path !== ':memory:') mkdirSync(dirname(config.database.path), { recursive: true });
    return {
      ...common,
      type: 'better-sqlite3',
      database: config.database.path,
      // WAL lets readers proceed during a write; a busy writer waits instead of failing.
      prepareDatabase: (db: { pragma(s: string): unknown }) => {
        db.pragma('journal_mode = WAL');
        db.pragma('busy_timeout = 5000');
        // WAL + NORMAL: a commit survives a process crash; only an OS crash can lose the last commits.
        db.pragma('synchronous = NORMAL');
        db.pragma('foreign_keys = ON');
      },
    };
  }
  // A caller that finds every connection taken waits at most poolTimeoutMs (then fails: a request answers 503), never forever.
  return { ...common, type: 'postgres', url: config.database.url, extra: { max: config.database.poolMax, connectionTimeoutMillis: config.database.poolTimeoutMs } };
}

/** Arbitrary constant: the PostgreSQL advisory lock that serialises migrations of several instances. */
const MIGRATION_LOCK = 727_001;

/** Runs pending migrations; on PostgreSQL under an advisory lock so N instances can start at once. */
export async function runMigrations(ds: DataSource): Promise<string[]> {
  if (ds.options.type !== 'postgres') {
    return (await ds.runMigrations({ transaction: 'all' })).map((m) => m.name);
  }
  const runner = ds.createQueryRunner();
  await runner.connect();
  try {
    await runner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    // On the connection that holds the lock: no second connection (a pool of one would wait forever).
    const executor = new MigrationExecutor(ds, runner);
    executor.transaction = 'all';
    return (await executor.executePendingMigrations()).map((m) => m.name);
  } finally {
    await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    await runner.release();
  }
}
