import { Logger } from '@nestjs/common';
import type { DataSource, FindOperator } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clock } from '../../common/clock.js';
import type { AppConfig } from '../../config/config.schema.js';
import { RevocationList } from './revocation-list.js';

/** Counts the walks over the map: each one is a sweep of every revocation held. */
class CountingMap<K, V> extends Map<K, V> {
  walks = 0;
  override [Symbol.iterator](): MapIterator<[K, V]> {
    this.walks++;
    return super[Symbol.iterator]();
  }
}

interface Row {
  jti: string;
  expiresAt: number;
}

/** A RevocationList on a table held in memory; `fail` makes the next reading throw. */
function subject(clock: Clock) {
  const table: Row[] = [];
  const sinces: number[] = [];
  let fail = false;
  const repo = {
    find: async (options: { where: { expiresAt?: FindOperator<number>; revokedAt?: FindOperator<number> } }) => {
      if (fail) {
        fail = false;
        throw new Error('connection lost');
      }
      if (options.where.revokedAt) sinces.push(options.where.revokedAt.value as number);
      return table.map((r) => ({ ...r }));
    },
  };
  const ds = { getRepository: () => repo } as unknown as DataSource;
  const list = new RevocationList(ds, clock, null as never, null as never, null as never, { principalCacheSeconds: 1 } as AppConfig);
  const map = new CountingMap<string, number>();
  Object.assign(list, { revoked: map });
  const internals = list as unknown as { load(): Promise<void>; sync(): Promise<void> };
  return { list, table, map, sinces, load: () => internals.load(), sync: () => internals.sync(), failNext: () => void (fail = true) };
}

const rows = (n: number, expiresAt: number, prefix = 'j') => Array.from({ length: n }, (_, i) => ({ jti: `${prefix}${i}`, expiresAt }));

describe(RevocationList.name, () => {
  beforeAll(() => Logger.overrideLogger(false));
  afterAll(() => Logger.overrideLogger(['log', 'error', 'warn']));

  it('a re-reading of revocations already held walks the map no more (the readings overlap by 60 s: the same rows come back every time)', async () => {
    const clock = new Clock();
    const s = subject(clock);
    s.table.push(...rows(3000, clock.now() + 3_600_000));
    await s.load();
    expect(s.map.size).toBe(3000);
    const walksAtLoad = s.map.walks; // one sweep per thousand new entries
    expect(walksAtLoad).toBe(3);
    for (let i = 0; i < 5; i++) await s.sync();
    expect(s.map.walks).toBe(walksAtLoad);
    expect(s.list.isRevoked('j0') && s.list.isRevoked('j2999')).toBe(true);
  });

  it('a revocation made since the last reading is picked up by the next one', async () => {
    const clock = new Clock();
    const s = subject(clock);
    await s.load();
    expect(s.list.isRevoked('late')).toBe(false);
    s.table.push({ jti: 'late', expiresAt: clock.now() + 60_000 });
    await s.sync();
    expect(s.list.isRevoked('late')).toBe(true);
  });

  it('each reading looks 60 s before the start of the last one that succeeded; a failed one moves nothing and the next retries it', async () => {
    const clock = new Clock();
    const s = subject(clock);
    const loadedAt = clock.now();
    await s.load();
    clock.advance(10_000);
    s.failNext();
    await s.sync();
    clock.advance(10_000);
    const secondAt = clock.now();
    await s.sync();
    clock.advance(10_000);
    await s.sync();
    expect(s.sinces).toHaveLength(2);
    expect(s.sinces[0]).toBeGreaterThanOrEqual(loadedAt - 60_000);
    expect(s.sinces[0]).toBeLessThan(loadedAt - 60_000 + 1_000);
    expect(s.sinces[1]).toBeGreaterThanOrEqual(secondAt - 60_000);
    expect(s.sinces[1]).toBeLessThan(secondAt - 60_000 + 1_000);
  });

  it('expired revocations are swept as the map grows, and never count as revoked', async () => {
    const clock = new Clock();
    const s = subject(clock);
    s.table.push(...rows(999, clock.now() + 1_000, 'old'));
    await s.load();
    expect(s.map.size).toBe(999);
    clock.advance(2_000);
    expect(s.list.isRevoked('old0')).toBe(false);
    s.table.push({ jti: 'new', expiresAt: clock.now() + 60_000 });
    await s.sync(); // the thousandth entry: the expired 999 go
    expect([...s.map.keys()]).toEqual(['new']);
    expect(s.list.isRevoked('new')).toBe(true);
  });
});
