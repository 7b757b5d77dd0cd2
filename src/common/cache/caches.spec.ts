import { describe, expect, it } from 'vitest';
import { JOIN_WINDOW_MS, LoadingCache } from './loading-cache.js';
import { MemoryReplayCache } from './replay-cache.js';
import { TtlCache } from './ttl-cache.js';

describe(MemoryReplayCache.name, () => {
  it('accepts a key once until it expires', async () => {
    let now = 1_000_000;
    const sut = new MemoryReplayCache(() => now);
    expect(await sut.claim('a', 60)).toBe(true);
    expect(await sut.claim('a', 60)).toBe(false);
    expect(await sut.claim('b', 60)).toBe(true);
    now += 61_000;
    expect(await sut.claim('a', 60)).toBe(true);
  });
});

describe(TtlCache.name, () => {
  it('expires entries and evicts the oldest past its bound', () => {
    let now = 0;
    const sut = new TtlCache<number>(1000, 2, () => now);
    sut.set('a', 1);
    sut.set('b', 2);
    sut.set('c', 3);
    expect(sut.get('a')).toBeUndefined();
    expect(sut.get('b')).toBe(2);
    now = 1001;
    expect(sut.get('c')).toBeUndefined();
  });

  it('caches nothing with a zero ttl', () => {
    const sut = new TtlCache<number>(0);
    sut.set('a', 1);
    expect(sut.get('a')).toBeUndefined();
  });
});

/** A loader whose loads the test settles: `loads[i]` is the i-th load started. */
function controlledLoader<V>() {
  const loads: { key: string; resolve(value: V): void; reject(error: Error): void }[] = [];
  const load = (key: string) =>
    new Promise<V>((resolve, reject) => {
      loads.push({ key, resolve, reject });
    });
  return { loads, load };
}

describe(LoadingCache.name, () => {
  describe('get', () => {
    it('shares one load among concurrent misses of a key, then serves the value without loading', async () => {
      const { loads, load } = controlledLoader<string>();
      const sut = new LoadingCache<string>(load, 1000);
      const waiting = Array.from({ length: 50 }, () => sut.get('a'));
      const other = sut.get('b');
      expect(loads.map((l) => l.key)).toEqual(['a', 'b']);
      loads[0].resolve('A');
      loads[1].resolve('B');
      expect(await Promise.all(waiting)).toEqual(Array(50).fill('A'));
      expect(await other).toBe('B');
      expect(sut.get('a')).toBe('A');
      expect(loads).toHaveLength(2);
    });

    it('loads again once the value expires', async () => {
      let now = 0;
      const { loads, load } = controlledLoader<string>();
      const sut = new LoadingCache<string>(load, 1000, 10, () => now);
      const first = sut.get('a');
      loads[0].resolve('old');
      await first;
      now = 1000;
      const second = sut.get('a');
      expect(loads).toHaveLength(2);
      loads[1].resolve('new');
      expect(await second).toBe('new');
    });

    it('caches neither a null (nothing found) nor a failure, and shares neither once settled', async () => {
      const { loads, load } = controlledLoader<string | null>();
      const sut = new LoadingCache<string, null>(load, 1000);
      const missing = [sut.get('a'), sut.get('a')];
      loads[0].resolve(null);
      expect(await Promise.all(missing)).toEqual([null, null]);
      const failing = [sut.get('a'), sut.get('a')];
      expect(loads).toHaveLength(2);
      loads[1].reject(new Error('connection lost'));
      for (const f of failing) await expect(f).rejects.toThrow('connection lost');
      const found = sut.get('a');
      expect(loads).toHaveLength(3);
      loads[2].resolve('A');
      expect(await found).toBe('A');
      expect(sut.get('a')).toBe('A');
    });

    it('joins a load for JOIN_WINDOW_MS only: a later caller loads anew, and the old load, settling last, is not cached', async () => {
      let now = 0;
      const { loads, load } = controlledLoader<string>();
      const sut = new LoadingCache<string>(load, 60_000, 10, () => now);
      const stuck = sut.get('a');
      now = JOIN_WINDOW_MS - 1;
      expect(sut.get('a')).toBe(stuck);
      expect(loads).toHaveLength(1);
      now = JOIN_WINDOW_MS;
      const fresh = sut.get('a');
      expect(fresh).not.toBe(stuck);
      expect(sut.get('a')).toBe(fresh);
      expect(loads).toHaveLength(2);
      loads[1].resolve('new');
      expect(await fresh).toBe('new');
      loads[0].resolve('old');
      expect(await stuck).toBe('old');
      expect(sut.get('a')).toBe('new');
    });

    it('with a zero lifetime caches nothing but still shares a load in flight', async () => {
      const { loads, load } = controlledLoader<string>();
      const sut = new LoadingCache<string>(load, 0);
      const both = [sut.get('a'), sut.get('a')];
      loads[0].resolve('A');
      expect(await Promise.all(both)).toEqual(['A', 'A']);
      void sut.get('a');
      expect(loads).toHaveLength(2);
    });
  });

  describe('invalidation during a load', () => {
    const invalidations: [string, (sut: LoadingCache<string>) => void][] = [
      ['delete of the key', (sut) => sut.delete('a')],
      ['deleteWhere (whatever it selects)', (sut) => sut.deleteWhere(() => false)],
      ['clear', (sut) => sut.clear()],
    ];
    it.each(invalidations)('%s: the waiting callers get the old reading, it is not cached, a later caller loads anew and its value stays', async (_, invalidate) => {
      const { loads, load } = controlledLoader<string>();
      const sut = new LoadingCache<string>(load, 1000);
      const before = sut.get('a');
      invalidate(sut);
      const after = sut.get('a');
      expect(loads).toHaveLength(2);
      // The new reading settles first, the old one last: the old one must not replace it.
      loads[1].resolve('revoked');
      expect(await after).toBe('revoked');
      loads[0].resolve('active');
      expect(await before).toBe('active');
      expect(sut.get('a')).toBe('revoked');
      expect(loads).toHaveLength(2);
    });

    it('an old reading settling before the new one caches nothing either', async () => {
      const { loads, load } = controlledLoader<string>();
      const sut = new LoadingCache<string>(load, 1000);
      const before = sut.get('a');
      sut.delete('a');
      loads[0].resolve('active');
      expect(await before).toBe('active');
      const after = sut.get('a');
      expect(loads).toHaveLength(2);
      loads[1].resolve('revoked');
      expect(await after).toBe('revoked');
    });

    it('an old reading settling while the new load is still in flight caches nothing and leaves the new load shared', async () => {
      const { loads, load } = controlledLoader<string>();
      const sut = new LoadingCache<string>(load, 1000);
      const before = sut.get('a');
      sut.delete('a');
      const after = sut.get('a');
      loads[0].resolve('active');
      expect(await before).toBe('active');
      expect(sut.peek('a')).toBeUndefined();
      expect(sut.get('a')).toBe(after);
      loads[1].resolve('revoked');
      expect(await after).toBe('revoked');
      expect(sut.get('a')).toBe('revoked');
      expect(loads).toHaveLength(2);
    });

    it('a load replaced past the join window, settling while its replacement is in flight, caches nothing', async () => {
      let now = 0;
      const { loads, load } = controlledLoader<string>();
      const sut = new LoadingCache<string>(load, 60_000, 10, () => now);
      const old = sut.get('a');
      now = JOIN_WINDOW_MS;
      const replacement = sut.get('a');
      loads[0].resolve('old');
      expect(await old).toBe('old');
      expect(sut.peek('a')).toBeUndefined();
      loads[1].resolve('new');
      expect(await replacement).toBe('new');
      expect(sut.get('a')).toBe('new');
    });

    it('a delete of another key leaves a load in flight alone', async () => {
      const { loads, load } = controlledLoader<string>();
      const sut = new LoadingCache<string>(load, 1000);
      const a = sut.get('a');
      sut.delete('b');
      expect(sut.get('a')).toBe(a);
      loads[0].resolve('A');
      await a;
      expect(sut.get('a')).toBe('A');
      expect(loads).toHaveLength(1);
    });
  });

  it('peek answers from the cache alone', async () => {
    const { loads, load } = controlledLoader<string>();
    const sut = new LoadingCache<string>(load, 1000);
    expect(sut.peek('a')).toBeUndefined();
    expect(loads).toHaveLength(0);
    const a = sut.get('a');
    expect(sut.peek('a')).toBeUndefined();
    loads[0].resolve('A');
    await a;
    expect(sut.peek('a')).toBe('A');
  });
});
