import { execFileSync, spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { expect, it } from 'vitest';
import { ensureBuilt, ROOT } from '../../../test/support/build.js';

it('npm run demo: service, app, agent and scripted human; one delete after the approval, the replay refused, exit 0', () => {
  ensureBuilt();
  execFileSync('npx', ['tsc', '-b', 'packages'], { cwd: ROOT, stdio: 'inherit' });
  const run = spawnSync(process.execPath, [resolve(ROOT, 'packages/demo/dist/main.js')], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  expect(run.stdout).toContain('DELETE /files/q3-report.pdf → 200');
  expect(run.stdout).toContain('the same DELETE with the spent token → 401 (already_used)');
  expect(run.stdout).toContain('Demo finished');
}, 180_000);
