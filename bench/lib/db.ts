/**
 * The databases of a bench run: a fresh SQLite file, or a fresh PostgreSQL database created for
 * the run and dropped after it (plus a Redis key prefix of its own, whose keys are deleted), and a
 * small read/write handle the bench uses to count what the servers did (consumed tokens, backlog).
 */
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { DbKind } from './options.js';

export const PG_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_BASE_URL = 'redis://127.0.0.1:6379';

export interface BenchDb {
  kind: DbKind;
  /** DATABASE_URL for the service, the floor and the seeder. */
  url: string;
  redisUrl?: string;
  redisPrefix?: string;
  /** A scratch directory for this database's run (service DATA_DIR, token files, logs). */
  dir: string;
  drop(): Promise<void>;
}

function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, timeout: 1_000 });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
    s.once('timeout', () => (s.destroy(), resolve(false)));
  });
}

export async function postgresAndRedisReachable(): Promise<boolean> {
  return (await reachable(5432)) && (await reachable(6379));
}

export async function createDb(kind: DbKind, stamp: string): Promise<BenchDb> {
  const dir = mkdtempSync(join(tmpdir(), `mpx-bench-${kind}-`));
  if (kind === 'sqlite') {
    return { kind, url: `sqlite:${join(dir, 'bench.sqlite')}`, dir, drop: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const name = `mpx_bench_${stamp.replace(/\D/g, '')}_${process.pid}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const redisPrefix = `mpxbench${stamp.replace(/\D/g, '')}${process.pid}:`;
  return {
    kind,
    url: `postgres://postgres@127.0.0.1:5432/${name}`,
    redisUrl: REDIS_BASE_URL,
    redisPrefix,
    dir,
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
      const redis = new Redis(REDIS_BASE_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await redis.connect();
      try {
        let cursor = '0';
        do {
          const [next, keys] = await redis.scan(cursor, 'MATCH', `${redisPrefix}*`, 'COUNT', 1000);
          if (keys.length) await redis.del(...keys);
          cursor = next;
        } while (cursor !== '0');
      } finally {
        redis.disconnect();
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A few queries on the bench database, written with `$1…` placeholders for both dialects. */
export class Sql {
  private constructor(
    private readonly sqlite: Database.Database | null,
    private readonly pool: pg.Pool | null,
  ) {}

  static open(url: string): Sql {
    if (url.startsWith('sqlite:')) {
      const db = new Database(url.slice('sqlite:'.length));
      db.pragma('busy_timeout = 5000');
      return new Sql(db, null);
    }
    return new Sql(null, new pg.Pool({ connectionString: url, max: 2 }));
  }

  async rows<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    if (this.sqlite) return this.sqlite.prepare(sql.replace(/\$\d+/g, '?')).all(...params) as T[];
    return (await this.pool!.query(sql, params)).rows as T[];
  }

  async one<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T> {
    return (await this.rows<T>(sql, params))[0];
  }

  async count(sql: string, params: unknown[] = []): Promise<number> {
    const row = await this.one<Record<string, unknown>>(sql, params);
    return Number(Object.values(row)[0] ?? 0);
  }

  async close(): Promise<void> {
    this.sqlite?.close();
    await this.pool?.end();
  }
}
