import { readFileSync } from 'node:fs';
import { expect, it, vi } from 'vitest';
import { approveWithPasskey } from '../../../test/support/step-up.js';
import { approveDeletion } from '../examples/quickstart.js';
import { eventually, human, useService } from '../../test/service.js';

const s = useService();

it('the README example is the file the test runs, and it resolves with a token once the human approves', async () => {
  expect(readFileSync(new URL('../README.md', import.meta.url), 'utf8')).toContain(readFileSync(new URL('../examples/quickstart.ts', import.meta.url), 'utf8'));
  const h = await human(s);
  const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
  try {
    const token = approveDeletion(s.issuer, h.agent.id, h.agent.clientSecret);
    const line = await eventually(() => log.mock.calls.map((c) => String(c[0])).find((l) => l.includes('/approve/')));
    await approveWithPasskey(s.t, h, line.split(' ')[3]!);
    expect(await token).toMatch(/^eyJ/);
  } finally {
    log.mockRestore();
  }
});
