import { describe, expect, it } from 'vitest';
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
