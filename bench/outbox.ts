/**
 * Outbox throughput (issue 12): how many events per second one instance publishes (stream
 * position) and finishes (delivered, or no_endpoint), and whether its backlog grows at a steady
 * load.
 *
 *   tsc -p tsconfig.bench.json && node dist/bench/outbox.js [options]
 *     --db sqlite,postgres     databases (PostgreSQL: a fresh database by createdb on
 *                              BENCH_PG (default postgres://postgres@127.0.0.1:5432), Redis BENCH_REDIS
 *                              (default redis://127.0.0.1:6379))
 *     --modes none,webhook     apps without a webhookUrl / apps whose webhookUrl is a local receiver
 *                              (its own process, answers 204)
 *     --apps 1,20              number of apps the events are spread over (round robin)
 *     --events 20000           events per case, written by OutboxService.add in transactions
 *     --tx 100                 events per transaction
 *     --writers 8              transactions written concurrently (SQLite: they queue on its one connection)
 *     --sql-times              (SQLite) print where the database time went, by statement
 *     --rate 0 --seconds 30    instead of a burst: write `rate` events/s for `seconds`, sample the
 *                              backlog every second (steady load: does it grow?)
 *
 * Burst: the events are written as fast as the transactions go (the instance's background work
 * runs meanwhile); reported are the write rate and the end-to-end rate (events / time from the
 * first write until every event is published and finished).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { createApp } from '../src/bootstrap.js';
import { loadConfig } from '../src/config/config.js';
import { AppsService } from '../src/modules/apps/apps.service.js';
import { OutboxService } from '../src/modules/events/outbox.service.js';

type Db = 'sqlite' | 'postgres';
type Mode = 'none' | 'webhook';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const DBS = arg('db', 'sqlite,postgres').split(',') as Db[];
const MODES = arg('modes', 'none,webhook').split(',') as Mode[];
const APPS = arg('apps', '1,20').split(',').map(Number);
const EVENTS = Number(arg('events', '20000'));
const TX = Number(arg('tx', '100'));
const WRITERS = Number(arg('writers', '8'));
const RATE = Number(arg('rate', '0'));
const SECONDS = Number(arg('seconds', '30'));
const SQL_TIMES = process.argv.includes('--sql-times');
const PG = process.env.BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432';
const REDIS = process.env.BENCH_REDIS ?? 'redis://127.0.0.1:6379';
const RECEIVER_PORT = 4500 + Math.floor(Math.random() * 200);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A webhook receiver in its own process (so its CPU is not the instance's), answering 204. */
async function startReceiver(port: number): Promise<ChildProcess> {
  const script = `
    const http = require('node:http');
    let n = 0;
    http.createServer((req, res) => { req.resume(); req.on('end', () => { n++; res.statusCode = 204; res.end(); }); })
      .listen(${port}, '127.0.0.1', () => process.stdout.write('ready\\n'));
    process.on('message', () => process.send(n));
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`receiver exited ${code}`)));
  });
  return child;
}

interface Env {
  url: string;
  cleanup: () => void;
}

function freshDatabase(db: Db): Env {
  if (db === 'sqlite') {
    const file = join(tmpdir(), `mpx-outbox-bench-${randomBytes(6).toString('hex')}.sqlite`);
    return { url: `sqlite:${file}`, cleanup: () => ['', '-wal', '-shm'].forEach((s) => rmSync(file + s, { force: true })) };
  }
  const name = `mpx_ob_bench_${randomBytes(4).toString('hex')}`;
  const server = new URL(PG);
  const pgArgs = ['-h', server.hostname, '-p', server.port || '5432', '-U', decodeURIComponent(server.username || 'postgres')];
  execFileSync('createdb', [...pgArgs, name]);
  return { url: `${PG.replace(/\/$/, '')}/${name}`, cleanup: () => execFileSync('dropdb', [...pgArgs, '--force', name]) };
}

/** Wraps the better-sqlite3 handle's statements: total time and count per statement. */
function timeStatements(ds: DataSource): () => string {
  const handle = (ds.driver as unknown as { databaseConnection: { prepare: (sql: string) => Record<string, unknown> } }).databaseConnection;
  const times = new Map<string, { ms: number; n: number }>();
  const prepare = handle.prepare.bind(handle);
  handle.prepare = (sql: string) => {
    const stmt = prepare(sql);
    const key = sql.replace(/\s+/g, ' ').slice(0, 90);
    for (const method of ['run', 'all', 'get']) {
      const fn = stmt[method] as (...a: unknown[]) => unknown;
      stmt[method] = (...a: unknown[]) => {
        const t = performance.now();
        try {
          return fn.apply(stmt, a);
        } finally {
          const e = times.get(key) ?? { ms: 0, n: 0 };
          e.ms += performance.now() - t;
          e.n++;
          times.set(key, e);
        }
      };
    }
    return stmt;
  };
  return () => [...times].sort((a, b) => b[1].ms - a[1].ms).slice(0, 12).map(([k, v]) => `  ${v.ms.toFixed(0).padStart(6)} ms ${String(v.n).padStart(7)}x  ${k}`).join('\n');
}

/** Wraps node-postgres' Client.query: wall time (round trip and queueing) and count per statement. */
function timePgQueries(): () => string {
  const times = new Map<string, { ms: number; n: number }>();
  const proto = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
  const query = proto.query;
  proto.query = function (this: unknown, ...a: unknown[]) {
    const sql = typeof a[0] === 'string' ? a[0] : String((a[0] as { text?: string })?.text ?? '?');
    const key = sql.replace(/\s+/g, ' ').slice(0, 90);
    const t = performance.now();
    const done = () => {
      const e = times.get(key) ?? { ms: 0, n: 0 };
      e.ms += performance.now() - t;
      e.n++;
      times.set(key, e);
    };
    const r = query.apply(this, a);
    if (r && typeof (r as Promise<unknown>).then === 'function') (r as Promise<unknown>).then(done, done);
    return r;
  };
  return () => [...times].sort((x, y) => y[1].ms - x[1].ms).slice(0, 14).map(([k, v]) => `  ${v.ms.toFixed(0).padStart(6)} ms ${String(v.n).padStart(7)}x  ${k}`).join('\n');
}

interface Result {
  db: Db;
  mode: Mode;
  apps: number;
  events: number;
  writeRate: number;
  endToEnd: number;
  samples?: number[];
}

async function runCase(db: Db, mode: Mode, apps: number): Promise<Result> {
  const database = freshDatabase(db);
  const config = loadConfig({
    NODE_ENV: 'test',
    MASTER_KEY: randomBytes(32).toString('base64'),
    ADMIN_TOKEN: `mpx_adm_${randomBytes(24).toString('base64url')}`,
    PUBLIC_URL: 'http://localhost:3000',
    DATABASE_URL: database.url,
    ...(db === 'postgres' ? { REDIS_URL: REDIS, REDIS_KEY_PREFIX: `mpx-ob-bench-${randomBytes(4).toString('hex')}:` } : {}),
    WEBHOOK_ALLOW_PRIVATE: 'true',
    RETENTION_SWEEP_SECONDS: '0',
    LOG_LEVEL: 'silent',
  });
  const app = await createApp(config);
  try {
    const ds = app.get(DataSource);
    const sqlTimes = SQL_TIMES ? (db === 'sqlite' ? timeStatements(ds) : timePgQueries()) : null;
    const outbox = app.get(OutboxService);
    const appsService = app.get(AppsService);
    const appIds: string[] = [];
    for (let i = 0; i < apps; i++) {
      const created = await appsService.create({ name: `bench-${i}`, ...(mode === 'webhook' ? { webhookUrl: `http://127.0.0.1:${RECEIVER_PORT}/hook` } : {}) });
      appIds.push(created.id);
    }
    let written = 0;
    /** `n` events in one transaction; `written` counts them at the start, so concurrent writers never overshoot. */
    const writeBatch = (n: number) => {
      const first = written;
      written += n;
      return ds.transaction(async (m) => {
        for (let i = first; i < first + n; i++) {
          await outbox.add(m, appIds[i % appIds.length], 'mfa_proxy_token.consumed', { jti: `jti_${i}`, agentId: 'agt_bench', userId: 'usr_bench', stepUpId: 'stp_bench' });
        }
      });
    };
    /** WRITERS concurrent loops of transactions until `written` reaches `upTo`. */
    const writeUpTo = (upTo: number) =>
      Promise.all(Array.from({ length: WRITERS }, async () => {
        while (written < upTo) await writeBatch(Math.min(TX, upTo - written));
      }));
    const backlog = async (): Promise<number> => {
      // Two counts, each over its partial index (ix_outbox_unpublished, ix_outbox_pending_app): an OR would read the whole table.
      const [row] = await ds.query("SELECT (SELECT COUNT(*) FROM outbox WHERE stream_seq IS NULL) + (SELECT COUNT(*) FROM outbox WHERE delivery_status = 'pending') AS n");
      return Number(row.n);
    };

    const started = performance.now();
    let wroteAll = 0;
    const samples: number[] = [];
    if (RATE > 0) {
      // Steady load: `RATE` events per second, written every 20 ms, for SECONDS; backlog sampled every second.
      const total = RATE * SECONDS;
      const sampler = setInterval(() => void backlog().then((n) => samples.push(n)), 1_000);
      while (written < total) {
        const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * RATE));
        await writeUpTo(due);
        await sleep(20);
      }
      clearInterval(sampler);
    } else {
      await writeUpTo(EVENTS);
    }
    wroteAll = performance.now();
    while ((await backlog()) > 0) await sleep(20);
    const finished = performance.now();
    const [done] = await ds.query("SELECT COUNT(*) AS n FROM outbox WHERE delivery_status IN ('delivered', 'no_endpoint') AND stream_seq IS NOT NULL");
    if (sqlTimes) console.log(sqlTimes());
    if (Number(done.n) !== written) throw new Error(`expected ${written} finished events, found ${done.n}`);
    return { db, mode, apps, events: written, writeRate: written / ((wroteAll - started) / 1000), endToEnd: written / ((finished - started) / 1000), ...(RATE > 0 ? { samples } : {}) };
  } finally {
    await app.close();
    database.cleanup();
  }
}

async function main(): Promise<void> {
  const receiver = MODES.includes('webhook') ? await startReceiver(RECEIVER_PORT) : null;
  const results: Result[] = [];
  try {
    for (const db of DBS) {
      for (const mode of MODES) {
        for (const apps of APPS) {
          const r = await runCase(db, mode, apps);
          results.push(r);
          const tail = r.samples ? `  backlog each second: ${r.samples.join(' ')}` : '';
          console.log(`${db.padEnd(8)} ${mode.padEnd(8)} apps=${String(apps).padEnd(3)} events=${r.events}  written ${Math.round(r.writeRate)}/s  published+finished ${Math.round(r.endToEnd)} events/s${tail}`);
        }
      }
    }
  } finally {
    receiver?.kill();
  }
  console.log('\n| database | endpoint | apps | events/s (published and finished) |\n| --- | --- | --- | --- |');
  for (const r of results) console.log(`| ${r.db === 'sqlite' ? 'SQLite' : 'PostgreSQL + Redis'} | ${r.mode === 'webhook' ? 'webhook (204)' : 'no webhookUrl'} | ${r.apps} | ${Math.round(r.endToEnd)} |`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
