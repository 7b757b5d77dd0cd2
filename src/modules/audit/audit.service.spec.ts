import type { HttpAdapterHost } from '@nestjs/core';
import { describe, expect, it } from 'vitest';
import { Clock } from '../../common/clock.js';
import type { AuditEventEntity } from './audit-event.entity.js';
import type { AuditRepository } from './audit.repository.js';
import { RequestContext, type RequestFields } from '../../common/request-context.js';
import { AuditService, safeText } from './audit.service.js';

/** A repository whose inserts wait until the test lets them finish. */
function slowRepository() {
  const written: Partial<AuditEventEntity>[] = [];
  const waiting: (() => void)[] = [];
  const write = async (take: () => Partial<AuditEventEntity>[]) => {
    const rows = take();
    await new Promise<void>((resolve) => waiting.push(resolve));
    written.push(...rows);
  };
  const repo = { insertBatch: write } as unknown as AuditRepository;
  return { repo, written, finishWrites: () => waiting.splice(0).forEach((r) => r()) };
}

/** An HTTP adapter host whose server records the hooks it is given. */
function httpServer() {
  const hooks: Record<string, () => Promise<void>> = {};
  const host = { httpAdapter: { getInstance: () => ({ addHook: (name: string, fn: () => Promise<void>) => (hooks[name] = fn) }) } } as unknown as HttpAdapterHost;
  return { host, hooks };
}

const settled = () => new Promise((resolve) => setImmediate(resolve));
const ctx = { appId: 'app_1', requestId: 'req_1', actorType: 'agent' as const };

describe(AuditService.name, () => {
  describe('flushRequests', () => {
    it('does not return while an event queued before the call is still being written', async () => {
      const { repo, written, finishWrites } = slowRepository();
      const sut = new AuditService(repo, new Clock());
      sut.recordRequest(ctx, '/v1/whoami', 'GET', 200);
      sut.writeDue(); // the timer's write: takes the event, write in progress
      let returned = false;
      const shutdownFlush = sut.flushRequests().then(() => (returned = true));
      await settled();
      expect(returned).toBe(false);
      finishWrites();
      await shutdownFlush;
      expect(written.map((e) => e.requestId)).toEqual(['req_1']);
    });

    it("runs the shared write in the service's own context, not in that of the request that started it (its log lines must not name that request)", async () => {
      const seen: RequestFields[] = [];
      const repo = {
        insertBatch: async (take: () => unknown[]) => {
          take();
          seen.push({ ...RequestContext.get() });
        },
      } as unknown as AuditRepository;
      const sut = new AuditService(repo, new Clock());
      sut.recordRequest(ctx, '/v1/whoami', 'GET', 200);
      await RequestContext.run({ requestId: 'req_other', appId: 'app_other' }, () => sut.flushRequests());
      expect(seen).toEqual([{}]);
    });

    it('returns once the events queued before the call are written, though events go on arriving (sealing and audit reads do not wait for the load to stop)', async () => {
      const { repo, written, finishWrites } = slowRepository();
      const sut = new AuditService(repo, new Clock());
      sut.writeDue(); // nothing queued: no write
      sut.recordRequest(ctx, '/v1/whoami', 'GET', 200);
      sut.writeDue(); // the timer's write takes req_1
      sut.recordRequest({ ...ctx, requestId: 'req_2' }, '/v1/whoami', 'GET', 200);
      let returned = false;
      const flushed = sut.flushRequests().then(() => (returned = true));
      // Every write is followed by a new request's event, as under steady load.
      for (let i = 3; i < 8 && !returned; i++) {
        await settled();
        sut.recordRequest({ ...ctx, requestId: `req_${i}` }, '/v1/whoami', 'GET', 200);
        finishWrites();
        for (let j = 0; j < 3; j++) await settled();
      }
      expect(returned).toBe(true);
      await flushed;
      expect(written.map((e) => e.requestId).slice(0, 2)).toEqual(['req_1', 'req_2']);
      expect(written.length).toBeLessThan(6);
    });

    it('returns once the batches holding its events are written, while the write goes on with later full batches (overload)', async () => {
      const { repo, written, finishWrites } = slowRepository();
      const sut = new AuditService(repo, new Clock());
      for (let i = 0; i < 600; i++) sut.recordRequest({ ...ctx, requestId: `req_${i}` }, '/v1/whoami', 'GET', 200);
      sut.writeDue(); // takes the first 500
      let returned = false;
      const flushed = sut.flushRequests().then(() => (returned = true));
      // More than a batch keeps arriving: the write goes on batch after batch.
      for (let round = 0; round < 4; round++) {
        for (let i = 0; i < 600; i++) sut.recordRequest({ ...ctx, requestId: `late_${round}_${i}` }, '/v1/whoami', 'GET', 200);
        finishWrites();
        for (let j = 0; j < 5; j++) await settled();
        if (round === 0) expect(returned, 'after the first batch only 500 of its 600 are written').toBe(false);
      }
      expect(returned).toBe(true);
      await flushed;
      expect(written.filter((e) => e.requestId!.startsWith('req_'))).toHaveLength(600);
      // The write was still going (a full batch waiting) when the flush returned.
      expect(written.length).toBeGreaterThan(1000);
      finishWrites();
    });

    it('returns when a write fails before taking anything (the next flush retries), instead of retrying forever', async () => {
      let calls = 0;
      const repo = { insertBatch: async () => (calls++, Promise.reject(new Error('database unavailable'))) } as unknown as AuditRepository;
      const sut = new AuditService(repo, new Clock());
      sut.recordRequest(ctx, '/v1/whoami', 'GET', 200);
      await sut.flushRequests();
      expect(calls).toBe(1);
    });
  });

  describe('writeDue (the timer)', () => {
    it('writes the events queued when it starts, once: events queued meanwhile wait for the next tick, not a write right behind it', async () => {
      const { repo, written, finishWrites } = slowRepository();
      const calls = { n: 0 };
      const counting = { insertBatch: (take: () => Partial<AuditEventEntity>[]) => (calls.n++, repo.insertBatch(take)) } as unknown as AuditRepository;
      const sut = new AuditService(counting, new Clock());
      sut.recordRequest(ctx, '/v1/whoami', 'GET', 200);
      sut.writeDue();
      sut.recordRequest({ ...ctx, requestId: 'req_2' }, '/v1/whoami', 'GET', 200);
      sut.writeDue(); // a tick while the write is in progress: nothing more
      finishWrites();
      for (let i = 0; i < 3; i++) await settled();
      expect(calls.n).toBe(1);
      expect(written.map((e) => e.requestId)).toEqual(['req_1']);
      sut.writeDue(); // the next tick
      await settled();
      finishWrites();
      for (let i = 0; i < 3; i++) await settled();
      expect(calls.n).toBe(2);
      expect(written.map((e) => e.requestId)).toEqual(['req_1', 'req_2']);
    });

    it('goes on while a full batch is queued (it keeps up with any rate)', async () => {
      const { repo, written, finishWrites } = slowRepository();
      const sut = new AuditService(repo, new Clock());
      sut.recordRequest(ctx, '/v1/whoami', 'GET', 200);
      sut.writeDue();
      for (let i = 0; i < 1200; i++) sut.recordRequest({ ...ctx, requestId: `req_more_${i}` }, '/v1/whoami', 'GET', 200);
      for (let i = 0; i < 4; i++) {
        finishWrites();
        for (let j = 0; j < 3; j++) await settled();
      }
      // 1 + 500 + 500 written; the last 200 (less than a batch) wait for the next tick.
      expect(written).toHaveLength(1001);
    });

    it("a flush asked for during the timer's write returns only once the events queued before it are written too", async () => {
      const { repo, written, finishWrites } = slowRepository();
      const sut = new AuditService(repo, new Clock());
      sut.recordRequest(ctx, '/v1/whoami', 'GET', 200);
      sut.writeDue();
      sut.recordRequest({ ...ctx, requestId: 'req_2' }, '/v1/whoami', 'GET', 200);
      let returned = false;
      const flushed = sut.flushRequests().then(() => (returned = true));
      for (let i = 0; i < 3; i++) {
        finishWrites();
        for (let j = 0; j < 3; j++) await settled();
        if (i === 0) expect(returned).toBe(false);
      }
      await flushed;
      expect(written.map((e) => e.requestId)).toEqual(['req_1', 'req_2']);
    });
  });

  describe('graceful stop', () => {
    it('writes the events of requests answered while the HTTP server closes, when it has closed (before the database closes)', async () => {
      const { repo, written, finishWrites } = slowRepository();
      const { host, hooks } = httpServer();
      const sut = new AuditService(repo, new Clock(), host);
      sut.onApplicationBootstrap();
      try {
        await sut.beforeApplicationShutdown();
        // A long-poll answered by shutdown, after beforeApplicationShutdown.
        sut.recordRequest({ ...ctx, requestId: 'req_late' }, '/v1/step-ups/:id', 'GET', 200);
        expect(hooks.onClose, 'an onClose hook on the HTTP server').toBeTypeOf('function');
        const closed = hooks.onClose();
        await settled();
        finishWrites();
        await closed;
        expect(written.map((e) => e.requestId)).toEqual(['req_late']);
      } finally {
        await sut.onApplicationShutdown();
      }
    });
  });

  describe('sealAll', () => {
    it('starts each full pass after the last app of the previous one, so apps that cannot be sealed do not keep the others waiting', async () => {
      const all = Array.from({ length: 150 }, (_, i) => `app_${String(i).padStart(3, '0')}`);
      const asked: string[] = [];
      const tried = new Set<string>();
      const repo = {
        insertBatch: async () => undefined,
        appsWithUnsealed: async (limit: number, after = '') => {
          asked.push(after);
          return all.filter((a) => a > after).slice(0, limit);
        },
        seal: async (appId: string) => {
          tried.add(appId);
          throw new Error('damaged row'); // none of them can be sealed: each stays in the list
        },
      } as unknown as AuditRepository;
      const sut = new AuditService(repo, new Clock());
      for (let pass = 0; pass < 3; pass++) await sut.sealAll();
      expect(asked).toEqual(['', 'app_099', '']);
      expect(tried.size).toBe(150);
    });

    it('passes over an app whose events cannot be sealed, and seals the apps after it', async () => {
      const sealed: string[] = [];
      const repo = {
        insertBatch: async () => undefined,
        appsWithUnsealed: async () => ['app_damaged', 'app_ok'],
        seal: async (appId: string) => {
          if (appId === 'app_damaged') throw new Error('Lone surrogate is not allowed');
          sealed.push(appId);
          return 0;
        },
      } as unknown as AuditRepository;
      await new AuditService(repo, new Clock()).sealAll();
      expect(sealed).toEqual(['app_ok']);
    });

    it('stops at the first batch that is not full: rows written meanwhile wait for the next pass (or a flush), the pass does not chase them', async () => {
      const calls: string[] = [];
      const repo = {
        insertBatch: async () => undefined,
        appsWithUnsealed: async () => ['app_1', 'app_2'],
        // Under steady load every batch finds a few new rows.
        seal: async (appId: string) => (calls.push(appId), 3),
      } as unknown as AuditRepository;
      const sut = new AuditService(repo, new Clock());
      await sut.sealAll();
      expect(calls).toEqual(['app_1', 'app_2']);
      await sut.seal('app_1');
      expect(calls).toEqual(['app_1', 'app_2', 'app_1']);
    });

    it('lets the event loop turn between batches, so a backlog never stalls requests for its whole length', async () => {
      // SQLite's sealing batches are synchronous: each settles in a microtask, without a turn of the loop between them.
      let turns = 0;
      let sealing = true;
      const tick = () => {
        turns++;
        if (sealing) setImmediate(tick);
      };
      const turnsAtBatch: number[] = [];
      const repo = {
        insertBatch: async () => undefined,
        appsWithUnsealed: async () => ['app_1'],
        sealBatchSize: 128,
        seal: async () => {
          turnsAtBatch.push(turns);
          return turnsAtBatch.length <= 4 ? 128 : 0;
        },
      } as unknown as AuditRepository;
      const sut = new AuditService(repo, new Clock());
      setImmediate(tick);
      await sut.sealAll();
      sealing = false;
      expect(turnsAtBatch).toHaveLength(5);
      // Other callbacks (requests' I/O) ran between every two batches.
      for (let i = 1; i < turnsAtBatch.length; i++) expect(turnsAtBatch[i], `batch ${i + 1}`).toBeGreaterThan(turnsAtBatch[i - 1]);
    });
  });
});

describe(safeText.name, () => {
  it('cuts to whole characters: a surrogate pair cut in two loses its first half, other lone surrogates become U+FFFD', () => {
    expect(safeText('a'.repeat(511) + '\u{1F600}', 512)).toBe('a'.repeat(511));
    expect(safeText('a'.repeat(510) + '\u{1F600}', 512)).toBe('a'.repeat(510) + '\u{1F600}');
    expect(safeText('x\uD800y\uDC00z', 64)).toBe('x\uFFFDy\uFFFDz');
    expect(safeText('ok \u202E\u0007 done', 64)).toBe('ok    done');
  });
});
