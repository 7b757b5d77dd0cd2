/**
 * What one verification costs, at a fixed request rate, so two builds can be compared on a machine
 * whose speed drifts (req/s at full load does not separate them there; the work per request does):
 *
 *   tsc -p tsconfig.bench.json && node dist/bench/verify-cost.js <service dir>[,<service dir>…] [options]
 *     --db postgres|sqlite   (default postgres, with Redis)
 *     --rate 800             verifications per second (autocannon overallRate, 50 connections)
 *     --seconds 12           per round; two rounds per build (the second on a table the first consumed in)
 *     --repeat 2             times the builds are run, alternated (A B A B …)
 *
 * Per round: the verifications that succeeded (each a fresh, valid, pre-seeded token), and per
 * success the CPU time of the service process and of every PostgreSQL process (backends, WAL
 * writer, checkpointer: all of them) from the start of the load until the service is idle again,
 * and the WAL PostgreSQL wrote. The builds' migrations decide the schema: each run starts a fresh
 * database.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDb } from './lib/db.js';
import type { DbKind } from './lib/options.js';
import { cpuTicks, settle, TICKS_PER_S } from './lib/procs.js';
import { commitOf, load, log, seedTokens, stamp, VERIFY_REQUEST } from './lib/support.js';
import { startFleet } from './lib/targets.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const dirs = (process.argv[2] ?? '').split(',').filter(Boolean);
if (dirs.length === 0 || dirs[0].startsWith('--')) throw new Error('usage: verify-cost.js <service dir>[,<service dir>…] [--db postgres|sqlite] [--rate n] [--seconds n] [--repeat n]');
const kind = arg('db', 'postgres') as DbKind;
const rate = Number(arg('rate', '800'));
const seconds = Number(arg('seconds', '12'));
const repeat = Number(arg('repeat', '2'));

/** CPU ticks of every PostgreSQL process on the machine (the bench's database is the only busy one). */
function postgresTicks(): number {
  if (kind !== 'postgres') return 0;
  let ticks = 0;
  for (const pid of execFileSync('pgrep', ['-x', 'postgres']).toString().trim().split('\n')) ticks += cpuTicks(Number(pid));
  return ticks;
}

function walBytes(): number {
  if (kind !== 'postgres') return 0;
  return Number(execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'postgres', '-Atc', "SELECT pg_current_wal_lsn() - '0/0'"]).toString().trim());
}

async function measure(serviceDir: string): Promise<void> {
  const db = await createDb(kind, stamp());
  const fleet = await startFleet(db, serviceDir, 1, 20, mkdtempSync(join(tmpdir(), 'mpx-verify-cost-')), () => undefined);
  try {
    const service = fleet.services[0].proc.pid;
    for (let round = 1; round <= 2; round++) {
      const seeded = await seedTokens({ serviceDir, env: fleet.env, appId: fleet.tenant.appId, userId: fleet.tenant.userId, agentId: fleet.agents[0].id }, [Math.ceil(rate * seconds * 1.1)], join(db.dir, `tokens-${round}`), true);
      await settle(fleet.procs.map((p) => p.pid));
      const before = { service: cpuTicks(service), pg: postgresTicks(), wal: walBytes() };
      const r = await load({
        url: `${fleet.services[0].base}/v1/mfa-proxy-tokens/verify`, method: 'POST', headers: { authorization: `Bearer ${fleet.tenant.apiKey}`, 'content-type': 'application/json' },
        verify: { tokensFiles: [seeded.files[0]], ...VERIFY_REQUEST }, expect: 'valid', connections: 50, seconds, overallRate: rate,
      });
      await settle([service]);
      const per = (ticks: number) => Math.round(((ticks / TICKS_PER_S) * 1e6) / Math.max(1, r.ok));
      const failed = r.non2xx + r.errors + r.timeouts + r.invalid;
      log(
        `${serviceDir} (${commitOf(serviceDir)}) round ${round}: ${r.ok.toLocaleString('en-US')} valid (${Math.round(r.okPerSec)}/s, p99 ${r.p99} ms${failed ? `, ${failed} failed` : ''}); per success: service ${per(cpuTicks(service) - before.service)} µs` +
          (kind === 'postgres' ? `, PostgreSQL ${per(postgresTicks() - before.pg)} µs, WAL ${((walBytes() - before.wal) / Math.max(1, r.ok) / 1024).toFixed(2)} KiB` : ''),
      );
    }
  } finally {
    await fleet.stopAll();
    await db.drop();
  }
}

log(`verify cost on ${kind}: ${rate}/s for ${seconds} s, two rounds per build, builds alternated ${repeat} times`);
for (let i = 0; i < repeat; i++) for (const dir of dirs) await measure(dir);
process.exit(0);
