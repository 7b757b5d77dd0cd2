import { execFileSync, spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { browserAvailable } from '../../../test/support/browser.js';
import { ensureBuilt, ROOT } from '../../../test/support/build.js';

/** What `npm run demo [-- --browser]` runs after its build. */
const demo = (...args: string[]) => spawnSync(process.execPath, [resolve(ROOT, 'packages/demo/dist/main.js'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 150_000 });

beforeAll(() => {
  ensureBuilt();
  execFileSync('npx', ['tsc', '-b', 'packages'], { cwd: ROOT, stdio: 'inherit' });
}, 180_000);

it('npm run demo: service, app, agent and scripted human; one delete after the approval, the replay refused, exit 0', () => {
  const run = demo();
  expect(run.stderr).toBe('');
  expect(run.status, run.stdout).toBe(0);
  expect(run.stdout).toMatch(/DELETE \/files\/q3-report\.pdf → 200 .*"method":"totp"/);
  expect(run.stdout).toContain('the same DELETE with the spent token → 401 (already_used)');
  expect(run.stdout).toContain('Demo finished');
}, 180_000);

// CI installs Chromium and sets REQUIRE_BROWSER=1: there a missing browser fails this test instead of skipping it.
it.runIf(browserAvailable)('npm run demo -- --browser: Chromium with a virtual passkey enrolls on the enrollment page and approves on the approval page; exit 0', () => {
  const run = demo('--browser');
  expect(run.stderr).toBe('');
  expect(run.status, run.stdout).toBe(0);
  expect(run.stdout).toContain('Passkey “Demo passkey” added.');
  expect(run.stdout).toContain('factors ["webauthn:Demo passkey"]');
  expect(run.stdout).toMatch(/approval page shows: .*files:delete files:\/\/q3-report\.pdf/);
  expect(run.stdout).toContain('page: Approved');
  // the app's consumed approval says how the human approved: with the passkey, in the browser
  expect(run.stdout).toMatch(/DELETE \/files\/q3-report\.pdf → 200 .*"method":"webauthn"/);
  expect(run.stdout).toContain('the same DELETE with the spent token → 401 (already_used)');
  expect(run.stdout).toContain('Demo finished: one approval (passkey in Chromium)');
}, 180_000);
