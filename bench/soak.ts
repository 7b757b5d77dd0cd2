/**
 * `npm run bench:soak`: does background work keep up with sustained load? One service instance
 * (SQLite by default, `--db postgres` for PostgreSQL + Redis), an app whose webhookUrl is a local
 * receiver answering 204 (bench/servers/receiver.ts), and for SOAK_SECONDS (600) verify-and-consume
 * at a fixed SOAK_RATE (2000/s, every request a fresh valid token, seeded in batches as it goes:
 * tokens live 120 s) plus whoami at SOAK_WHOAMI_RATE (500/s). Every 10 s it samples the database
 * and the receiver: the outbox backlog (rows pending delivery, rows without stream_seq), the audit
 * sealer's lag (rows with seq null and the age of the oldest), deliveries/s and verifies/s; the
 * samples go to bench/results/soak-<db>-<date>.md. A healthy build holds every backlog flat.
 * Flags: --db sqlite|postgres, --service-dir <path>, --no-build. Env: SOAK_SECONDS, SOAK_RATE,
 * SOAK_WHOAMI_RATE, SOAK_CONNECTIONS (50), SOAK_SEGMENT_SECONDS (30: one load process and one
 * token batch per segment).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDb, postgresAndRedisReachable, Sql } from './lib/db.js';
import { BENCH_DIST, flag, REPO_ROOT, type DbKind } from './lib/options.js';
import { installCleanup, startNode, stop, waitForHttp, type Started } from './lib/procs.js';
import { agentToken, createAgents, createTenant, newSecrets, serviceEnv, startService } from './lib/service.js';
import { buildService, commitOf, load, log, seedTokens, stamp, VERIFY_REQUEST } from './lib/support.js';
import { PORTS } from './lib/targets.js';
import type { LoadResult } from './load.js';

const SAMPLE_EVERY_MS = 10_000;
/** Rows per seeding transaction: small enough not to hold SQLite's single writer for long. */
const SEED_CHUNK = 5_000;

function int(name: string, fallback: number): number {
  const n = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer`);
  return n;
}

interface Sample {
  t: number;
  pending: number;
  unsequenced: number;
  unsealed: number;
  oldestUnsealedS: number;
  deliveredPerS: number;
  verifiesPerS: number;
}

/** Least-squares slope of y over t, per minute (how fast a backlog grows). */
function slopePerMinute(points: { t: number; y: number }[]): number {
  if (points.length < 2) return 0;
  const n = points.length;
  const mt = points.reduce((s, p) => s + p.t, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  const num = points.reduce((s, p) => s + (p.t - mt) * (p.y - my), 0);
  const den = points.reduce((s, p) => s + (p.t - mt) ** 2, 0);
  return den ? (num / den) * 60 : 0;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const kind = (flag(argv, 'db') ?? 'sqlite') as DbKind;
  if (kind !== 'sqlite' && kind !== 'postgres') throw new Error('--db must be sqlite or postgres');
  if (kind === 'postgres' && !(await postgresAndRedisReachable())) throw new Error('PostgreSQL and Redis must be reachable for --db postgres');
  const serviceDir = flag(argv, 'service-dir') ?? REPO_ROOT;
  const seconds = int('SOAK_SECONDS', 600);
  const rate = int('SOAK_RATE', 2000);
  const whoamiRate = int('SOAK_WHOAMI_RATE', 500);
  const connections = int('SOAK_CONNECTIONS', 50);
  const segment = Math.min(int('SOAK_SEGMENT_SECONDS', 30), seconds);
  if (segment > 50) throw new Error('SOAK_SEGMENT_SECONDS above 50: tokens seeded one segment ahead would expire (120 s)');
  if (!argv.includes('--no-build')) buildService(serviceDir);

  const when = new Date();
  const ts = stamp(when);
  const logDir = mkdtempSync(join(tmpdir(), 'mpx-soak-logs-'));
  const procs: Started[] = [];
  const db = await createDb(kind, ts);
  let sql: Sql | null = null;
  const cleanup = async () => {
    await sql?.close().catch(() => undefined);
    for (const p of [...procs].reverse()) await stop(p);
    await db.drop();
  };
  installCleanup(cleanup);
  try {
    log(`soak: ${kind}, ${seconds} s, verify ${rate}/s + whoami ${whoamiRate}/s, ${connections} connections each; logs in ${logDir}`);
    const receiver = startNode('receiver', join(BENCH_DIST, 'servers/receiver.js'), [String(PORTS.receiver)], {}, join(logDir, 'receiver.log'));
    procs.push(receiver);
    const receiverUrl = `http://127.0.0.1:${PORTS.receiver}`;
    await waitForHttp(`${receiverUrl}/count`, receiver);
    const { masterKey, adminToken } = newSecrets();
    const env = serviceEnv({ db, masterKey, adminToken, port: PORTS.service, extra: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
    const service = await startService(serviceDir, 'mfa-proxy', env, join(logDir, 'service.log'));
    procs.push(service.proc);
    const tenant = await createTenant(service.base, adminToken, 'soak', `${receiverUrl}/hook`);
    const [agent] = await createAgents(service.base, tenant, 1, 'soak');
    sql = Sql.open(db.url);

    const segments = Math.ceil(seconds / segment);
    let fileSeq = 0;
    const seedFor = async (secs: number) => {
      const total = Math.ceil(rate * secs * 1.05);
      const counts = Array.from({ length: Math.ceil(total / SEED_CHUNK) }, (_, i) => Math.min(SEED_CHUNK, total - i * SEED_CHUNK));
      const r = await seedTokens({ serviceDir, env, appId: tenant.appId, userId: tenant.userId, agentId: agent.id }, counts, join(db.dir, `soak-${fileSeq++}`));
      log(`  seeded ${r.minted.toLocaleString('en-US')} tokens in ${(r.ms / 1000).toFixed(1)} s`);
      return r.files;
    };

    const samples: Sample[] = [];
    let started = Date.now();
    let last = { at: started, received: 0, consumed: 0 };
    const received = async () => ((await (await fetch(`${receiverUrl}/count`)).json()) as { received: number }).received;
    const consumed = () => sql!.count('SELECT count(*) AS n FROM step_ups WHERE app_id = $1 AND consumed_at IS NOT NULL', [tenant.appId]);
    const sample = async () => {
      const now = Date.now();
      const [rc, cc, pending, unsequenced, unsealed] = await Promise.all([
        received(),
        consumed(),
        sql!.count("SELECT count(*) AS n FROM outbox WHERE delivery_status = 'pending'"),
        sql!.count('SELECT count(*) AS n FROM outbox WHERE stream_seq IS NULL'),
        sql!.one<{ n: unknown; oldest: unknown }>('SELECT count(*) AS n, min(at) AS oldest FROM audit_events WHERE seq IS NULL'),
      ]);
      const dt = (now - last.at) / 1000;
      const s: Sample = {
        t: Math.round((now - started) / 1000),
        pending,
        unsequenced,
        unsealed: Number(unsealed.n),
        oldestUnsealedS: unsealed.oldest === null ? 0 : Math.max(0, (now - Number(unsealed.oldest)) / 1000),
        deliveredPerS: (rc - last.received) / dt,
        verifiesPerS: (cc - last.consumed) / dt,
      };
      last = { at: now, received: rc, consumed: cc };
      samples.push(s);
      log(`  t=${s.t}s outbox pending ${s.pending}, without stream_seq ${s.unsequenced}; audit unsealed ${s.unsealed} (oldest ${s.oldestUnsealedS.toFixed(1)} s); delivered ${Math.round(s.deliveredPerS)}/s; verifies ${Math.round(s.verifiesPerS)}/s`);
    };

    let next = await seedFor(segment);
    started = Date.now();
    last = { at: started, received: await received(), consumed: await consumed() };
    const timer = setInterval(() => void sample().catch((err: unknown) => log(`  sample failed: ${String(err)}`)), SAMPLE_EVERY_MS);
    const verifyResults: LoadResult[] = [];
    const whoamiResults: LoadResult[] = [];
    try {
      for (let i = 0; i < segments; i++) {
        const secs = Math.min(segment, seconds - i * segment);
        const files = next;
        const token = await agentToken(service.base, agent);
        const [v, w, seeded] = await Promise.all([
          load({ url: `${service.base}/v1/mfa-proxy-tokens/verify`, method: 'POST', headers: { authorization: `Bearer ${tenant.apiKey}`, 'content-type': 'application/json' }, connections, seconds: secs, overallRate: rate, verify: { tokensFiles: files, ...VERIFY_REQUEST }, expect: 'valid' }),
          load({ url: `${service.base}/v1/whoami`, method: 'GET', headers: { authorization: `Bearer ${token}` }, connections, seconds: secs, overallRate: whoamiRate, expect: 'status' }),
          i + 1 < segments ? seedFor(Math.min(segment, seconds - (i + 1) * segment)) : Promise.resolve([]),
        ]);
        next = seeded;
        verifyResults.push(v);
        whoamiResults.push(w);
        log(`  segment ${i + 1}/${segments}: verify ${Math.round(v.okPerSec)} ok/s (p99 ${v.p99} ms, ${v.non2xx + v.errors + v.timeouts + v.invalid} failed${v.exhausted ? ', tokens ran out' : ''}), whoami ${Math.round(w.okPerSec)} ok/s (p99 ${w.p99} ms)`);
      }
    } finally {
      clearInterval(timer);
    }
    await sample();

    const sum = (rs: LoadResult[], f: (r: LoadResult) => number) => rs.reduce((s, r) => s + f(r), 0);
    const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
    const pendingSlope = slopePerMinute(samples.map((s) => ({ t: s.t, y: s.pending })));
    const unsealedSlope = slopePerMinute(samples.map((s) => ({ t: s.t, y: s.unsealed })));
    const rows = samples.map((s) => `| ${s.t} | ${fmt(s.pending)} | ${fmt(s.unsequenced)} | ${fmt(s.unsealed)} | ${s.oldestUnsealedS.toFixed(1)} | ${fmt(s.deliveredPerS)} | ${fmt(s.verifiesPerS)} |`);
    const doc = [
      `# mfa-proxy soak: ${kind === 'sqlite' ? 'SQLite' : 'PostgreSQL + Redis'}`,
      '',
      `Command: \`${['npm run bench:soak --', ...argv].join(' ')}\` (SOAK_SECONDS=${seconds}, SOAK_RATE=${rate}, SOAK_WHOAMI_RATE=${whoamiRate}, SOAK_CONNECTIONS=${connections}, SOAK_SEGMENT_SECONDS=${segment})`,
      `Service: \`${serviceDir}\` at ${commitOf(serviceDir)}; Node ${process.version}, ${cpus().length} CPUs, ${when.toISOString()}, load average at the end ${loadavg().map((x) => x.toFixed(2)).join(' ')}`,
      '',
      `Verify: ${fmt(sum(verifyResults, (r) => r.ok))} valid of ${fmt(sum(verifyResults, (r) => r.tokensSent))} tokens sent (${fmt(sum(verifyResults, (r) => r.non2xx))} non-2xx, ${fmt(sum(verifyResults, (r) => r.errors + r.timeouts))} errors, ${fmt(sum(verifyResults, (r) => r.invalid))} invalid), ` +
        `whoami: ${fmt(sum(whoamiResults, (r) => r.ok))} successes of ${fmt(sum(whoamiResults, (r) => r.answered))} answered (${fmt(sum(whoamiResults, (r) => r.non2xx))} non-2xx, ${fmt(sum(whoamiResults, (r) => r.errors))} errors, ${fmt(sum(whoamiResults, (r) => r.timeouts))} timeouts). Webhooks received: ${fmt(last.received)}.`,
      `Trend (least squares over the samples): outbox pending ${pendingSlope >= 0 ? '+' : ''}${fmt(pendingSlope)} rows/min, audit unsealed ${unsealedSlope >= 0 ? '+' : ''}${fmt(unsealedSlope)} rows/min; at the end ${fmt(samples.at(-1)?.pending ?? 0)} pending, ${fmt(samples.at(-1)?.unsealed ?? 0)} unsealed.`,
      'Tokens are seeded one segment ahead by a separate process while the load runs (its CPU is part of the machine\'s load, as a real mint path would be).',
      '',
      '| t (s) | outbox pending | outbox without stream_seq | audit unsealed (seq null) | oldest unsealed (s) | delivered/s | verifies/s |',
      '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...rows,
      '',
    ].join('\n');
    const dir = join(REPO_ROOT, 'bench/results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `soak-${kind}-${ts}.md`);
    writeFileSync(file, doc);
    console.log(`\n${doc}\nwritten: ${file}`);
  } finally {
    await cleanup();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  },
);
