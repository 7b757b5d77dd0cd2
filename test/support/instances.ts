import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import supertest from 'supertest';
import type { TestApp } from './app.js';
import { PUBLIC_URL, TEST_MASTER_KEY } from './app.js';
import { freePort } from './browser.js';
import { ensureBuilt, MAIN } from './build.js';

export interface Instance {
  base: string;
  port: number;
  process: ChildProcess;
  output: () => string;
  /** Enough of a TestApp for the fixtures (supertest client and operator token). */
  t: TestApp;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts the built service as its own process (`node dist/src/main.js`; `npm start` adds a V8 memory setting only),
 * on a free port. Instances given the same `shared` settings form one deployment.
 */
export async function startInstance(shared: Record<string, string>, env: Record<string, string> = {}): Promise<Instance> {
  ensureBuilt();
  const port = await freePort();
  let output = '';
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH, NODE_ENV: 'test', PORT: String(port), HOST: '127.0.0.1', PUBLIC_URL, MASTER_KEY: TEST_MASTER_KEY, LOG_LEVEL: 'warn', ...shared, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const base = `http://127.0.0.1:${port}`;
  const until = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`instance exited: ${output}`);
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > until) throw new Error(`instance did not start: ${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    port,
    process: child,
    output: () => output,
    t: { http: supertest(base), adminToken: shared.ADMIN_TOKEN } as unknown as TestApp,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Data directories of the deployments of this test file, removed after it (test/support/setup.ts). */
const deploymentDirs = new Set<string>();

/** Removes the data directories of the deployments made so far (their instances are expected stopped). */
export function removeDeploymentDirs(): void {
  for (const dir of deploymentDirs) rmSync(dir, { recursive: true, force: true });
  deploymentDirs.clear();
}

/**
 * Settings every instance of one test deployment shares. Its own data directory (and, without
 * TEST_DATABASE_URL, its own SQLite database there): never the checkout's ./data, which a
 * developer's `npm start` may have filled under another master key.
 */
export function deployment(extra: Record<string, string> = {}): Record<string, string> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mpx-deployment-'));
  deploymentDirs.add(dataDir);
  return {
    ADMIN_TOKEN: `mpx_adm_${randomBytes(24).toString('base64url')}`,
    DATA_DIR: dataDir,
    DATABASE_URL: process.env.TEST_DATABASE_URL ?? `sqlite:${join(dataDir, 'db.sqlite')}`,
    ...(process.env.TEST_REDIS_URL ? { REDIS_URL: process.env.TEST_REDIS_URL, REDIS_KEY_PREFIX: `mpx-test-${randomBytes(4).toString('hex')}:` } : {}),
    ...extra,
  };
}
