/**
 * `npm run bench`: the service's three hot paths side by side with a floor and a peer, in one run
 * (issue 12). Every server and every load generator runs in its own process; each measurement is
 * the same autocannon run (BENCH_CONNECTIONS, BENCH_SECONDS) against each server, in interleaved
 * rounds whose order rotates, and the table shows medians over BENCH_ROUNDS rounds.
 *   - /oauth/token: every request authenticates for real (client_secret_basic, round robin over
 *     BENCH_AGENTS agents) and gets an ES256 JWT. Floor: bench/servers/floor.ts. Peer: oidc-provider 9.
 *   - GET /v1/whoami with an agent token. Floor: node:http + jose. Peer: minimal Nest/Fastify + jose guard.
 *   - verify-and-consume: every request consumes a fresh, valid, pre-minted token (bench/seed.ts,
 *     right before the round); only `{"valid":true}` counts, and the database's consumed count is
 *     compared with it. Floor: the same consume on the same database. Peer: oidc-provider
 *     introspection (in memory, not single use).
 * Between measurements the bench waits until every server is idle, so one server's background
 * work (sealing, dispatching) is not billed to the next. See bench/lib/options.ts for flags.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDb, postgresAndRedisReachable, Sql, type BenchDb } from './lib/db.js';
import { BENCH_DIST, parseOptions, REPO_ROOT, type BenchOptions, type DbKind, type PathName } from './lib/options.js';
import { cpuTicks, installCleanup, settle, TICKS_PER_S } from './lib/procs.js';
import { buildService, commitOf, load, log, seedTokens, stamp, VERIFY_REQUEST } from './lib/support.js';
import { markdownTable, type DbReport, type PathResults, type TargetName } from './lib/report.js';
import { agentToken, serviceCommand, TOKEN_FORM } from './lib/service.js';
import { startFleet, type Fleet } from './lib/targets.js';
import type { LoadRequest, LoadResult } from './load.js';
import { OPAQUE_RESOURCE } from './lib/peer-oidc-resources.js';

const MIN_VERIFY_RATE = 1_000;
const WARMUP_SECONDS = 2;

const cleanups: (() => Promise<void>)[] = [];
installCleanup(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

function rotate<T>(xs: T[], by: number): T[] {
  const k = by % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

/** Sums the per-instance results of one 2-instance measurement. */
function combine(a: LoadResult, b: LoadResult): LoadResult {
  const merge = (x: Record<string, number>, y: Record<string, number>) => {
    const out = { ...x };
    for (const [k, v] of Object.entries(y)) out[k] = (out[k] ?? 0) + v;
    return out;
  };
  const reasons = merge(a.reasons, b.reasons);
  const statuses = merge(a.statuses, b.statuses);
  return {
    sent: a.sent + b.sent, answered: a.answered + b.answered, ok: a.ok + b.ok, non2xx: a.non2xx + b.non2xx, errors: a.errors + b.errors, timeouts: a.timeouts + b.timeouts,
    invalid: a.invalid + b.invalid, statuses, reasons, seconds: Math.max(a.seconds, b.seconds), okPerSec: a.okPerSec + b.okPerSec,
    p50: Math.max(a.p50, b.p50), p99: Math.max(a.p99, b.p99), exhausted: a.exhausted || b.exhausted, tokensSent: a.tokensSent + b.tokensSent,
  };
}

class DbBench {
  private readonly results = new Map<PathName, PathResults>();
  /** Best verify rate seen per target, to size the next round's tokens. */
  private readonly bestVerify = new Map<TargetName, number>();
  private readonly seeded = { service: 0, floor: 0 };
  private whoamiToken = '';
  private opaqueForms: string[] = [];
  private seq = 0;

  constructor(
    private readonly o: BenchOptions,
    private readonly db: BenchDb,
    private readonly fleet: Fleet,
  ) {
    for (const p of o.paths) this.results.set(p, { path: p, rounds: {}, ...(fleet.services.length === 2 ? { perInstance: [[], []] as [LoadResult[], LoadResult[]] } : {}) });
  }

  private targets(): TargetName[] {
    return this.fleet.services.length === 2 ? ['service', 'floor', 'peer', 'service2'] : ['service', 'floor', 'peer'];
  }

  private base(t: TargetName, path: PathName, instance = 0): string {
    if (t === 'service' || t === 'service2') return this.fleet.services[instance].base;
    if (t === 'floor') return this.fleet.floor;
    return path === 'whoami' ? this.fleet.peerNest : this.fleet.peerOidc;
  }

  private async request(path: PathName, t: TargetName, instance: number, connections: number, seconds: number, tokensFile?: string): Promise<LoadRequest> {
    const base = this.base(t, path, instance);
    const common = { connections, seconds };
    if (path === 'token') {
      const url = t === 'peer' ? `${base}/token` : `${base}/oauth/token`;
      return { ...common, url, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: TOKEN_FORM, authorizations: this.fleet.agents.map((a) => a.basic), expect: 'access_token' };
    }
    if (path === 'whoami') return { ...common, url: `${base}/v1/whoami`, method: 'GET', headers: { authorization: `Bearer ${this.whoamiToken}` }, expect: 'status' };
    if (t === 'peer') {
      return { ...common, url: `${base}/token/introspection`, method: 'POST', headers: { authorization: this.fleet.introspector.basic, 'content-type': 'application/x-www-form-urlencoded' }, bodies: this.opaqueForms, expect: 'active' };
    }
    const key = t === 'floor' ? this.fleet.floorTenant.apiKey : this.fleet.tenant.apiKey;
    return { ...common, url: `${base}/v1/mfa-proxy-tokens/verify`, method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, verify: { tokensFiles: [tokensFile!], ...VERIFY_REQUEST }, expect: 'valid' };
  }

  /** Mints this round's verify tokens (service's key, approved step-ups) right before it. */
  private async seed(t: TargetName, parts: number): Promise<string[]> {
    // Enough for twice the best rate any server reached on verify so far (a server can gain a lot
    // from one round to the next: its first round pays for the cold cache after the bulk insert).
    const best = Math.max(0, ...this.bestVerify.values());
    const rate = this.bestVerify.size ? Math.min(this.o.verifyMaxRate, Math.max(MIN_VERIFY_RATE, 2 * best)) : this.o.verifyMaxRate;
    const perPart = Math.ceil((rate * this.o.seconds) / parts);
    const floor = t === 'floor';
    const tenant = floor ? this.fleet.floorTenant : this.fleet.tenant;
    const agentId = floor ? this.fleet.floorAgent.id : this.fleet.agents[0].id;
    const res = await seedTokens({ serviceDir: this.o.serviceDir, env: this.fleet.env, appId: tenant.appId, userId: tenant.userId, agentId }, Array(parts).fill(perPart), join(this.db.dir, `tokens-${this.seq++}`), true);
    this.seeded[floor ? 'floor' : 'service'] += res.minted;
    log(`    seeded ${res.minted.toLocaleString('en-US')} approved step-ups + tokens in ${(res.ms / 1000).toFixed(1)} s`);
    // Tokens live 120 s from minting: the oldest must outlast the seeding plus the round.
    if (res.ms / 1000 + this.o.seconds > 110) log('    warning: the first tokens may expire before the round ends (lower BENCH_VERIFY_MAX_RATE or BENCH_SECONDS)');
    return res.files;
  }

  /** The processes serving target `t` on `path`. */
  private pids(t: TargetName, path: PathName): number[] {
    const named = (name: string) => this.fleet.procs.filter((p) => p.name === name).map((p) => p.pid);
    if (t === 'service') return [this.fleet.services[0].proc.pid];
    if (t === 'service2') return this.fleet.services.map((s) => s.proc.pid);
    if (t === 'floor') return named('floor');
    return named(path === 'whoami' ? 'peer-nest' : 'peer-oidc');
  }

  private async settle(): Promise<void> {
    const s = await settle(this.fleet.procs.map((p) => p.pid));
    if (!s.settled) log(`    (servers still busy after ${Math.round(s.ms / 1000)} s; going on)`);
  }

  private async measure(path: PathName, t: TargetName, record: boolean, seconds = this.o.seconds): Promise<void> {
    const r = this.results.get(path)!;
    if (path === 'whoami') this.whoamiToken = await agentToken(this.fleet.services[0].base, this.fleet.agents[0]);
    const seeds = path === 'verify' && t !== 'peer' ? await this.seed(t, t === 'service2' ? 2 : 1) : [];
    if (seeds.length) await this.settle();
    const pids = this.pids(t, path);
    const ticks = () => pids.reduce((sum, pid) => sum + cpuTicks(pid), 0);
    const ticksBefore = ticks();
    let result: LoadResult;
    if (t === 'service2') {
      const half = Math.max(1, Math.floor(this.o.connections / 2));
      const [a, b] = await Promise.all([0, 1].map(async (i) => load(await this.request(path, t, i, half, seconds, seeds[i]))));
      if (record) (r.perInstance![0].push(a), r.perInstance![1].push(b));
      result = combine(a, b);
    } else {
      result = await load(await this.request(path, t, 0, this.o.connections, seconds, seeds[0]));
    }
    // CPU until the server is idle again: work it deferred (audit, outbox) belongs to this load.
    await this.settle();
    if (result.ok > 0) result.cpuUsPerOk = ((ticks() - ticksBefore) / TICKS_PER_S) * 1e6 / result.ok;
    if (record) (r.rounds[t] ??= []).push(result);
    if (path === 'verify') this.bestVerify.set(t, Math.max(this.bestVerify.get(t) ?? 0, result.okPerSec));
    const fails = result.non2xx + result.errors + result.timeouts + result.invalid;
    log(`    ${Math.round(result.okPerSec).toLocaleString('en-US')} ok/s, p50 ${result.p50} ms, p99 ${result.p99} ms, ${result.cpuUsPerOk === undefined ? '–' : Math.round(result.cpuUsPerOk)} µs CPU per success` + (fails ? `, ${result.non2xx} non-2xx ${JSON.stringify(result.statuses)} / ${result.errors + result.timeouts} errors / ${result.invalid} invalid ${JSON.stringify(result.reasons)}` : '') + (result.exhausted ? ' (tokens ran out)' : ''));
  }

  async run(): Promise<PathResults[]> {
    const peerTokens: string[] = [];
    if (this.o.paths.includes('verify')) {
      // Opaque tokens for the introspection peer (its memory adapter keeps them; reused round robin).
      for (let i = 0; i < 200; i++) {
        const res = await fetch(`${this.fleet.peerOidc}/token`, { method: 'POST', headers: { authorization: this.fleet.agents[i % this.fleet.agents.length].basic, 'content-type': 'application/x-www-form-urlencoded' }, body: `${TOKEN_FORM}&resource=${encodeURIComponent(OPAQUE_RESOURCE)}` });
        const body = (await res.json()) as { access_token?: string };
        if (!body.access_token) throw new Error(`oidc-provider opaque token: ${JSON.stringify(body)}`);
        peerTokens.push(body.access_token);
      }
      this.opaqueForms = peerTokens.map((t) => `token=${encodeURIComponent(t)}`);
    }
    for (const path of this.o.paths.filter((p) => p !== 'verify')) {
      for (const t of this.targets()) {
        log(`[${this.db.kind}] warm-up · ${path} · ${t} (${WARMUP_SECONDS} s)`);
        await this.measure(path, t, false, WARMUP_SECONDS);
      }
    }
    for (let round = 0; round < this.o.rounds; round++) {
      for (const path of rotate(this.o.paths, round)) {
        for (const t of rotate(this.targets(), round)) {
          log(`[${this.db.kind}] round ${round + 1}/${this.o.rounds} · ${path} · ${t}`);
          await this.measure(path, t, true);
        }
      }
    }
    const v = this.results.get('verify');
    if (v) {
      const sql = Sql.open(this.db.url);
      const consumed = (appId: string) => sql.count('SELECT count(*) AS n FROM step_ups WHERE app_id = $1 AND consumed_at IS NOT NULL', [appId]);
      // Every verify measurement of these targets (verify has no warm-up: all are recorded).
      const all = (ts: TargetName[]) => ts.flatMap((t) => v.rounds[t] ?? []);
      const sum = (ts: TargetName[], f: (r: LoadResult) => number) => all(ts).reduce((x, r) => x + f(r), 0);
      const tally = async (ts: TargetName[], appId: string, seeded: number, loads: number) => ({
        valid: sum(ts, (r) => r.ok), sent: sum(ts, (r) => r.tokensSent), consumed: await consumed(appId), seeded, inFlightMax: loads * this.o.connections,
      });
      const service = this.fleet.services.length === 2 ? ['service', 'service2'] as TargetName[] : ['service'] as TargetName[];
      v.consumed = {
        service: await tally(service, this.fleet.tenant.appId, this.seeded.service, this.o.rounds * service.length),
        floor: await tally(['floor'], this.fleet.floorTenant.appId, this.seeded.floor, this.o.rounds),
      };
      await sql.close();
    }
    return [...this.results.values()];
  }
}

function header(o: BenchOptions, when: Date, loadBefore: number[]): string {
  const la = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' ');
  return [
    `Command: \`${['npm run bench --', ...process.argv.slice(2)].join(' ')}\` (BENCH_CONNECTIONS=${o.connections}, BENCH_ROUNDS=${o.rounds}, BENCH_SECONDS=${o.seconds}, BENCH_AGENTS=${o.agents})`,
    `Service under test: \`${o.serviceDir}\` at ${commitOf(o.serviceDir)}, run ${serviceCommand(o.serviceDir)}; bench at ${commitOf(REPO_ROOT)}`,
    `Node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), ${when.toISOString()}; load average before ${la(loadBefore)}, after ${la(loadavg())} (anything else running on the machine shows here)`,
    '',
    'req/s counts successes only (a 2xx with an access token, a whoami answer, `{"valid":true}`, `"active":true`), median of the rounds; p50/p99 are medians of the rounds\' percentiles; failures are summed over the rounds.',
    'CPU per success: the server process\'s CPU time (user + system, all its threads) from the start of a round until it is idle again (deferred work such as audit and outbox writes included; the idle second that shows it is idle adds almost nothing), divided by its successes, median of the rounds; the database\'s and Redis\'s own CPU is not in it. It moves less than req/s with a busy neighbour on the machine, but it moves too (seen here: 182 to 510 µs for the same server within minutes).',
    'Floor: `node:http` + jose + the same database doing the same work (bench/servers/floor.ts); the floor issues tokens without an audit row, as the issue defines it. Verify peer: oidc-provider introspection of opaque tokens in memory, not single use, not durable, not audited (an upper reference).',
  ].join('\n');
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const when = new Date();
  const loadBefore = loadavg();
  const ts = stamp(when);
  const pgUp = await postgresAndRedisReachable();
  const dbs: DbKind[] = o.dbs === 'auto' ? (pgUp ? ['sqlite', 'postgres'] : ['sqlite']) : o.dbs;
  if (dbs.includes('postgres') && !pgUp) throw new Error('PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) must be reachable for --db postgres');
  if (o.seconds > 90) throw new Error('BENCH_SECONDS above 90 would outlive the MFA-proxy tokens minted for the round (120 s)');
  if (o.build) buildService(o.serviceDir);
  const logDir = mkdtempSync(join(tmpdir(), 'mpx-bench-logs-'));
  log(`mfa-proxy bench: ${dbs.join(' + ')}, paths ${o.paths.join(', ')}, ${o.connections} connections, ${o.rounds} rounds × ${o.seconds} s; logs in ${logDir}`);
  const reports: DbReport[] = [];
  for (const kind of dbs) {
    const db = await createDb(kind, ts);
    cleanups.push(db.drop);
    const instances = kind === 'postgres' ? o.instances : 1;
    const fleet = await startFleet(db, o.serviceDir, instances, o.agents, logDir, (s) => log(`[${kind}] ${s}`));
    cleanups.push(fleet.stopAll);
    try {
      const paths = await new DbBench(o, db, fleet).run();
      const label = kind === 'sqlite' ? 'SQLite' : 'PostgreSQL + Redis';
      reports.push({ db: kind, label, paths, instances: instances as 1 | 2, notes: [] });
    } finally {
      cleanups.splice(cleanups.indexOf(fleet.stopAll), 1);
      await fleet.stopAll();
      cleanups.splice(cleanups.indexOf(db.drop), 1);
      await db.drop().catch((err: unknown) => log(`could not drop the ${kind} bench database: ${String(err)}`));
    }
  }

  const dir = join(REPO_ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const head = header(o, when, loadBefore);
  const sections = reports.map((r) => `## ${r.label}\n\n${markdownTable(r)}`);
  for (const [i, r] of reports.entries()) {
    const doc = `# mfa-proxy bench: ${r.label}\n\n${head}\n\n${sections[i]}\n`;
    // A labelled run (e.g. "before") is kept under its label only, not as a dated copy.
    writeFileSync(join(dir, o.label ? `${o.label}-${r.db}.md` : `${ts}-${r.db}.md`), doc);
  }
  if (!o.label) writeFileSync(join(dir, 'latest.md'), `# mfa-proxy bench\n\n${head}\n\n${sections.join('\n\n')}\n`);
  console.log(`\n${head}\n\n${sections.join('\n\n')}\n`);
  console.log(`written: bench/results/${o.label ?? ts}-{${reports.map((r) => r.db).join(',')}}.md${o.label ? '' : ' and latest.md'}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    void Promise.all(cleanups.reverse().map((c) => c().catch(() => undefined))).finally(() => process.exit(1));
  },
);
