import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import supertest from 'supertest';
import { createApp } from '../../src/bootstrap.js';
import { Clock } from '../../src/common/clock.js';
import { loadConfig } from '../../src/config/config.js';
import type { AppConfig } from '../../src/config/config.schema.js';

/** One fixed test master key: on PostgreSQL every test file shares the signing_keys table. */
export const TEST_MASTER_KEY = Buffer.alloc(32, 7).toString('base64');
export const PUBLIC_URL = 'http://localhost:3000';

export interface TestApp {
  app: NestFastifyApplication;
  http: ReturnType<typeof supertest>;
  config: AppConfig;
  clock: Clock;
  adminToken: string;
  close(): Promise<void>;
}

/**
 * The whole service in-process, on the database the run chose: TEST_DATABASE_URL (PostgreSQL in
 * CI's second pass) or a fresh SQLite file; Redis when TEST_REDIS_URL is set.
 */
export async function startApp(env: Record<string, string> = {}, options: { logs?: string[] } = {}): Promise<TestApp> {
  const adminToken = `mpx_adm_${randomBytes(24).toString('base64url')}`;
  // Its own data directory (dev VAPID keys): never the checkout's ./data.
  const dataDir = mkdtempSync(join(tmpdir(), 'mfa-proxy-test-data-'));
  const config = loadConfig({
    NODE_ENV: 'test',
    DATA_DIR: dataDir,
    MASTER_KEY: TEST_MASTER_KEY,
    ADMIN_TOKEN: adminToken,
    PUBLIC_URL,
    DATABASE_URL: process.env.TEST_DATABASE_URL || `sqlite:${join(tmpdir(), `mfa-proxy-test-${randomBytes(6).toString('hex')}.sqlite`)}`,
    ...(process.env.TEST_REDIS_URL ? { REDIS_URL: process.env.TEST_REDIS_URL, REDIS_KEY_PREFIX: `mpx-test-${randomBytes(4).toString('hex')}:` } : {}),
    LOG_LEVEL: process.env.TEST_LOG_LEVEL || 'silent',
    ...env,
  });
  const clock = new Clock();
  const logs = options.logs;
  const app = await createApp(config, { clock, ...(logs ? { logDestination: { write: (line: string) => void logs.push(line) } } : {}) });
  return {
    app,
    http: supertest(app.getHttpServer()),
    config,
    clock,
    adminToken,
    close: async () => {
      try {
        await app.close();
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

export const usingPostgres = () => (process.env.TEST_DATABASE_URL ?? '').startsWith('postgres');

/**
 * A database of its own (PostgreSQL: a new database, dropped afterwards; SQLite: startApp's new
 * file), for work that reaches every app (bulk rows, purges, the audit sealer) and must neither
 * disturb nor be disturbed by the test files running in parallel on the shared PostgreSQL.
 * Pass `env` to startApp.
 */
export async function privateDatabase(): Promise<{ env: Record<string, string>; drop(): Promise<void> }> {
  if (!usingPostgres()) return { env: {}, drop: async () => undefined };
  const { default: pg } = await import('pg');
  const base = process.env.TEST_DATABASE_URL!;
  const name = `mpx_private_${randomBytes(6).toString('hex')}`;
  const run = async (sql: string) => {
    const c = new pg.Client({ connectionString: base });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await run(`CREATE DATABASE ${name}`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  return { env: { DATABASE_URL: url.toString() }, drop: () => run(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}
