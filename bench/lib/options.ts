/**
 * Command line and environment of `npm run bench` (one place reads them).
 *   --service-dir <path>   the build to measure (default: this repository); its dist/ is used
 *   --db sqlite|postgres|both   (default: both when PostgreSQL and Redis answer, else sqlite)
 *   --instances 1|2        2: also run two service processes on PostgreSQL + Redis
 *   --paths token,whoami,verify   a subset (default: all three)
 *   --label <name>         write bench/results/<name>-<db>.md (e.g. "before") instead of the dated
 *                          files and latest.md
 *   --no-build             do not run `tsc -p tsconfig.build.json` in the service dir first
 * BENCH_CONNECTIONS (50), BENCH_ROUNDS (3), BENCH_SECONDS (10), BENCH_AGENTS (200),
 * BENCH_VERIFY_MAX_RATE (12000 verifies/s: tokens minted per verify round = this × seconds at first).
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type DbKind = 'sqlite' | 'postgres';
export type PathName = 'token' | 'whoami' | 'verify';
export const ALL_PATHS: PathName[] = ['token', 'whoami', 'verify'];

/** The repository this bench lives in (dist/bench/lib → three levels up). */
export const REPO_ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
/** Compiled bench scripts (dist/bench). */
export const BENCH_DIST = resolve(fileURLToPath(new URL('..', import.meta.url)));

export interface BenchOptions {
  serviceDir: string;
  dbs: DbKind[] | 'auto';
  instances: 1 | 2;
  paths: PathName[];
  label: string | null;
  build: boolean;
  connections: number;
  rounds: number;
  seconds: number;
  agents: number;
  verifyMaxRate: number;
}

function int(name: string, fallback: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer ≥ ${min}`);
  return n;
}

export function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
  return v;
}

export function parseOptions(argv: string[]): BenchOptions {
  const db = flag(argv, 'db') ?? 'auto';
  if (!['sqlite', 'postgres', 'both', 'auto'].includes(db)) throw new Error('--db must be sqlite, postgres or both');
  const instances = Number(flag(argv, 'instances') ?? 1);
  if (instances !== 1 && instances !== 2) throw new Error('--instances must be 1 or 2');
  const paths = (flag(argv, 'paths') ?? ALL_PATHS.join(',')).split(',') as PathName[];
  if (paths.some((p) => !ALL_PATHS.includes(p))) throw new Error(`--paths: one or more of ${ALL_PATHS.join(',')}`);
  return {
    serviceDir: resolve(flag(argv, 'service-dir') ?? REPO_ROOT),
    dbs: db === 'auto' ? 'auto' : db === 'both' ? ['sqlite', 'postgres'] : [db as DbKind],
    instances,
    paths,
    label: flag(argv, 'label') ?? null,
    build: !argv.includes('--no-build'),
    connections: int('BENCH_CONNECTIONS', 50),
    rounds: int('BENCH_ROUNDS', 3),
    seconds: int('BENCH_SECONDS', 10),
    agents: int('BENCH_AGENTS', 200),
    verifyMaxRate: int('BENCH_VERIFY_MAX_RATE', 12_000),
  };
}
