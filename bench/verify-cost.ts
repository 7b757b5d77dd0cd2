/**
 * What one verification (or one token issuance) costs, at a fixed request rate, so two builds can
 * be compared on a machine whose speed drifts (req/s at full load does not separate them there; the
 * work per request does):
 *
 *   tsc -p tsconfig.bench.json && node dist/bench/verify-cost.js <service dir>[,<service dir>…] [options]
 *     --db postgres|sqlite   (default postgres, with Redis)
 *     --path verify|token    (default verify; token: POST /oauth/token, client_secret_basic round robin over 20 agents)
 *     --rate 800             requests per second (autocannon overallRate, 50 connections)
 *     --seconds 12           per round; two rounds per build (the second on a table the first consumed in)
 *     --repeat 2             times the builds are run, alternated (A B A B …)
 *
 * Per round: the requests that succeeded (each verification a fresh, valid, pre-seeded token; each
 * token request an access token), and per success the CPU time of the service process, of every
 * PostgreSQL process (backends, WAL writer, checkpointer: all of them) and of Redis, from the start
 * of the load until the service is idle again, and the WAL PostgreSQL wrote. The builds' migrations
 * decide the schema: each run starts a fresh database.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDb } from './lib/db.js';
import type { DbKind } from './lib/options.js';
import { cpuTicks, settle, TICKS_PER_S } from './lib/procs.js';
import { commitOf, load, log, seedTokens, stamp, VERIFY_REQUEST } from './lib/support.js';
import { TOKEN_FORM } from './lib/service.js';
import { startFleet } from './lib/targets.js';
import type { LoadRequest } from './load.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const dirs = (process.argv[2] ?? '').split(',').filter(Boolean);
if (dirs.length === 0 || dirs[0].startsWith('--')) throw new Error('usage: verify-cost.js <service dir>[,<service dir>…] [--db postgres|sqlite] [--path verify|token] [--rate n] [--seconds n] [--repeat n]');
const kind = arg('db', 'postgres') as DbKind;
const path = arg('path', 'verify');
if (path !== 'verify' && path !== 'token') throw new Error('--path is verify or token');
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

/**
 * CPU ticks of the local Redis server processes (PostgreSQL runs use Redis for rate limits and
 * coordination); null when none runs here under that name (a remote Redis, a container, Valkey).
 */
function redisTicks(): number | null {
  if (kind !== 'postgres') return null;
  let pids: string[];
  try {
    pids = execFileSync('pgrep', ['-x', 'redis-server']).toString().trim().split('\n');
  } catch {
    return null; // pgrep exits 1 when nothing matches
  }
  return pids.reduce((t, pid) => t + cpuTicks(Number(pid)), 0);
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
    /** A file of fresh, valid verify tokens for one round (a few more than the rate sends). */
    const freshTokens = async (round: number) => {
      const target = { serviceDir, env: fleet.env, appId: fleet.tenant.appId, userId: fleet.tenant.userId, agentId: fleet.agents[0].id };
      return (await seedTokens(target, [Math.ceil(rate * seconds * 1.1)], join(db.dir, `tokens-${round}`), true)).files[0];
    };
    const fixed = { connections: 50, seconds, overallRate: rate };
    for (let round = 1; round <= 2; round++) {
      const request: LoadRequest =
        path === 'token'
          ? {
              ...fixed, url: `${fleet.services[0].base}/oauth/token`, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: TOKEN_FORM,
              authorizations: fleet.agents.map((a) => a.basic), expect: 'access_token',
            }
          : {
              ...fixed, url: `${fleet.services[0].base}/v1/mfa-proxy-tokens/verify`, method: 'POST', headers: { authorization: `Bearer ${fleet.tenant.apiKey}`, 'content-type': 'application/json' },
              verify: { tokensFiles: [await freshTokens(round)], ...VERIFY_REQUEST }, expect: 'valid',
            };
      await settle(fleet.procs.map((p) => p.pid));
      const before = { service: cpuTicks(service), pg: postgresTicks(), redis: redisTicks(), wal: walBytes() };
      const r = await load(request);
      await settle([service]);
      const per = (ticks: number) => Math.round(((ticks / TICKS_PER_S) * 1e6) / Math.max(1, r.ok));
      const failed = r.non2xx + r.errors + r.timeouts + r.invalid;
      log(
        `${serviceDir} (${commitOf(serviceDir)}) round ${round}: ${r.ok.toLocaleString('en-US')} ${path === 'token' ? 'tokens' : 'valid'} (${Math.round(r.okPerSec)}/s, p99 ${r.p99} ms${failed ? `, ${failed} failed: ${JSON.stringify({ ...r.statuses, ...r.reasons, errors: r.errors, timeouts: r.timeouts })}` : ''}); per success: service ${per(cpuTicks(service) - before.service)} µs` +
          (kind === 'postgres' ? `, PostgreSQL ${per(postgresTicks() - before.pg)} µs, Redis ${before.redis === null ? '– (no local redis-server)' : `${per((redisTicks() ?? before.redis) - before.redis)} µs`}, WAL ${((walBytes() - before.wal) / Math.max(1, r.ok) / 1024).toFixed(2)} KiB` : ''),
      );
    }
  } finally {
    await fleet.stopAll();
    await db.drop();
  }
}

log(`${path} cost on ${kind}: ${rate}/s for ${seconds} s, two rounds per build, builds alternated ${repeat} times`);
for (let i = 0; i < repeat; i++) for (const dir of dirs) await measure(dir);
process.exit(0);
