import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const main = join(root, 'dist/src/main.js');

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

async function waitFor(url: string, ms: number): Promise<Response> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await fetch(url);
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

describe('a fresh start with no environment', () => {
  let child: ChildProcess;
  let output = '';
  let port: number;
  let cwd: string;

  beforeAll(async () => {
    // `npm start` builds first; here the build is made once if the run has not made it yet.
    if (!existsSync(main) || statSync(main).mtimeMs < statSync(join(root, 'src/main.ts')).mtimeMs) {
      execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
    }
    cwd = mkdtempSync(join(tmpdir(), 'mpx-fresh-'));
    port = await freePort();
    // Only PATH and PORT: no MASTER_KEY, no ADMIN_TOKEN, no DATABASE_URL.
    child = spawn(process.execPath, [main], { cwd, env: { PATH: process.env.PATH, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
  }, 120_000);

  afterAll(() => {
    child?.kill('SIGTERM');
  });

  it('answers /healthz and /readyz on embedded SQLite, with generated dev secrets', async () => {
    const health = await waitFor(`http://127.0.0.1:${port}/healthz`, 30_000);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ok', checks: { database: 'ok' } });
    expect(existsSync(join(cwd, 'data/mfa-proxy.sqlite'))).toBe(true);
    expect(statSync(join(cwd, 'data/master.key')).mode & 0o777).toBe(0o600);
    // Logs reach stdout through a buffer flushed at least every second: the notices may trail /healthz.
    await expect.poll(() => output, { timeout: 5_000 }).toMatch(/MASTER_KEY not set/);
    await expect.poll(() => output, { timeout: 5_000 }).toMatch(/generated an operator token/);
  });
});

describe('production without its secrets', () => {
  it('refuses to start and names what is missing', () => {
    let stderr = '';
    try {
      execFileSync(process.execPath, [main], { env: { PATH: process.env.PATH, NODE_ENV: 'production' }, stdio: 'pipe', timeout: 20_000 });
    } catch (err) {
      stderr = String((err as { stderr: Buffer }).stderr);
      expect((err as { status: number }).status).toBe(78);
    }
    expect(stderr).toMatch(/NODE_ENV=production requires MASTER_KEY and PUBLIC_URL/);
  });
});

describe('a TRUST_PROXY that would trust everyone', () => {
  it('refuses to start (exit 78), says why, and writes nothing', () => {
    const refused: [string, RegExp][] = [
      ['0.0.0.0/1', /TRUST_PROXY: "0\.0\.0\.0\/1" holds more than a \/8 of IPv4 addresses/],
      ['::/1', /TRUST_PROXY: "::\/1" holds more than a \/16 of IPv6 addresses/],
      // Every IPv4 client, spelled as IPv6.
      ['::ffff:0:0/96', /TRUST_PROXY: "::ffff:0:0\/96" holds more than a \/8 of IPv4 addresses/],
      ['0.0.0.0/0', /TRUST_PROXY: "0\.0\.0\.0\/0": the prefix must be a number from 1 to 32/],
      ['10.0.0.1, nonsense', /TRUST_PROXY: "nonsense" is not an address/],
    ];
    for (const [value, reason] of refused) {
      const cwd = mkdtempSync(join(tmpdir(), 'mpx-proxy-'));
      try {
        let stderr = '';
        let status: number | null = 0;
        try {
          execFileSync(process.execPath, [main], { cwd, env: { PATH: process.env.PATH, TRUST_PROXY: value }, stdio: 'pipe', timeout: 20_000 });
        } catch (err) {
          stderr = String((err as { stderr: Buffer }).stderr);
          status = (err as { status: number | null }).status;
        }
        expect(status, value).toBe(78);
        expect(stderr, value).toMatch(/^mfa-proxy: invalid configuration:/);
        expect(stderr, value).toMatch(reason);
        // No data directory, database or generated key: the working directory (where they would go) is as it was.
        expect(readdirSync(cwd), value).toEqual([]);
      } finally {
        rmSync(cwd, { recursive: true, force: true });
      }
    }
  });
});
