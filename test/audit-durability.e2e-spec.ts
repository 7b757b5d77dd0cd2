import { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { bearer } from './support/fixtures.js';
import { deployment, startInstance, type Instance } from './support/instances.js';
import { createStepUp, human } from './support/step-up.js';

/** The request ids among `ids` that have an `http.request` audit row, read straight from the database. */
async function auditedRequestIds(databaseUrl: string, appId: string, ids: string[]): Promise<Set<string>> {
  const ds = new DataSource(
    databaseUrl.startsWith('postgres') ? { type: 'postgres', url: databaseUrl } : { type: 'better-sqlite3', database: databaseUrl.slice('sqlite:'.length), readonly: true },
  );
  await ds.initialize();
  try {
    const p = ds.options.type === 'postgres' ? '$1' : '?';
    const rows: { request_id: string }[] = await ds.query(`SELECT request_id FROM audit_events WHERE app_id = ${p} AND type = 'http.request'`, [appId]);
    const wanted = new Set(ids);
    return new Set(rows.map((r) => r.request_id).filter((id) => wanted.has(id)));
  } finally {
    await ds.destroy();
  }
}

describe('request audit across a graceful stop (real process, real SIGTERM)', () => {
  it('every request answered before or during SIGTERM has its http.request row once the process has exited', async () => {
    const settings = deployment();
    const databaseUrl = settings.DATABASE_URL!;
    let instance: Instance | null = await startInstance(settings);
    try {
      const h = await human(instance.t);
      // Long-polls in flight when SIGTERM arrives: shutdown answers them, and their rows too must be kept.
      const waiting: Promise<Response>[] = [];
      for (let i = 0; i < 4; i++) {
        const created = await createStepUp(instance.t, h, { resource: `drive://term-${i}` }).expect(201);
        waiting.push(fetch(`${instance.base}/v1/step-ups/${created.body.id}?wait=25`, { headers: bearer(h.token) }));
      }
      // Give the long-polls time to reach their handlers (each is audited only once answered).
      await new Promise((r) => setTimeout(r, 300));

      const N = 60;
      const answered = await Promise.all(Array.from({ length: N }, () => fetch(`${instance!.base}/v1/whoami`, { headers: bearer(h.token) })));
      expect(answered.map((r) => r.status)).toEqual(Array(N).fill(200));
      // SIGTERM right after the responses, before the 100 ms request-audit flush.
      const exited = instance.stop('SIGTERM');
      const polls = await Promise.all(waiting);
      expect(polls.map((r) => r.status)).toEqual([200, 200, 200, 200]);
      const outcome = await Promise.race([exited.then(() => 'exited'), new Promise((r) => setTimeout(() => r('still running'), 15_000))]);
      expect(outcome).toBe('exited');
      const output = instance.output();
      instance = null;

      const ids = [...answered, ...polls].map((r) => r.headers.get('x-request-id')!);
      expect(new Set(ids).size).toBe(N + 4);
      const present = await auditedRequestIds(databaseUrl, h.tenant.appId, ids);
      const missing = ids.filter((id) => !present.has(id));
      expect(missing, `${missing.length} of ${ids.length} request audit rows lost; process output:\n${output}`).toEqual([]);
    } finally {
      await instance?.stop('SIGKILL');
    }
  }, 90_000);
});
