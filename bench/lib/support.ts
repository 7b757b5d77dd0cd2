/** Small helpers shared by `npm run bench` and `npm run bench:soak`. */
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { BENCH_DIST } from './options.js';
import { runIpc } from './procs.js';
import type { LoadRequest, LoadResult } from '../load.js';
import type { SeedBatch, SeedRequest, SeedResult } from '../seed.js';

/** The exact request every measured verify makes (the seeded step-ups approve exactly this). */
export const VERIFY_REQUEST = { action: 'files:delete', resource: 'reports/2026-q4.pdf', details: { reason: 'bench', bytes: 1024 } };

export const log = (s: string): void => console.log(`${new Date().toISOString().slice(11, 19)} ${s}`);

/** `YYYY-MM-DD-HHMM`, local time (the results' file names). */
export function stamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}`;
}

export function commitOf(dir: string): string {
  try {
    const sha = execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['-C', dir, 'status', '--porcelain', '--', 'src', 'migrations', 'bench', ':!bench/results', 'package.json'], { encoding: 'utf8' }).trim();
    return dirty ? `${sha} + uncommitted changes in src/, migrations/, bench/ (results aside) or package.json` : sha;
  } catch {
    return 'unknown';
  }
}

/** `tsc -p tsconfig.build.json` in the service dir, so the bench measures the code as it is. */
export function buildService(dir: string): void {
  log(`building the service in ${dir} (tsc -p tsconfig.build.json)`);
  const r = spawnSync(process.execPath, [join(dir, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: dir, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`the service in ${dir} does not build (tsc exit ${r.status}); use --no-build to measure its existing dist/`);
}

/** One load-generator process (bench/load.ts) for one measurement. */
export function load(req: LoadRequest): Promise<LoadResult> {
  return runIpc<LoadResult>('load', join(BENCH_DIST, 'load.js'), req);
}

export interface SeedTarget {
  serviceDir: string;
  env: Record<string, string>;
  appId: string;
  userId: string;
  agentId: string;
}

/** Mints `counts.length` files of fresh verify tokens (bench/seed.ts, one child process), returns their paths. */
export async function seedTokens(t: SeedTarget, counts: number[], fileBase: string, settle = false): Promise<{ files: string[]; minted: number; ms: number }> {
  const batches: SeedBatch[] = counts.map((count, i) => ({ appId: t.appId, userId: t.userId, agentId: t.agentId, count, out: `${fileBase}-${i}.txt` }));
  const req: SeedRequest = { serviceDir: t.serviceDir, env: t.env, ...VERIFY_REQUEST, batches, settle };
  const res = await runIpc<SeedResult>('seed', join(BENCH_DIST, 'seed.js'), req);
  return { files: batches.map((b) => b.out), ...res };
}
