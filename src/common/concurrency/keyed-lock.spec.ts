import { describe, expect, it } from 'vitest';
import { KeyedLock } from './keyed-lock.js';

const tick = () => new Promise((r) => setTimeout(r, 1));

describe(KeyedLock.name, () => {
  it('runs sections of one key one at a time, in arrival order', async () => {
    const sut = new KeyedLock();
    const log: string[] = [];
    let inside = 0;
    let maxInside = 0;
    const section = (name: string) => sut.run('k', async () => {
      inside++;
      maxInside = Math.max(maxInside, inside);
      log.push(`${name}:in`);
      await tick();
      log.push(`${name}:out`);
      inside--;
      return name;
    });
    expect(await Promise.all([section('a'), section('b'), section('c')])).toEqual(['a', 'b', 'c']);
    expect(maxInside).toBe(1);
    expect(log).toEqual(['a:in', 'a:out', 'b:in', 'b:out', 'c:in', 'c:out']);
    expect(sut.size).toBe(0);
  });

  it('lets different keys run at the same time', async () => {
    const sut = new KeyedLock();
    let inside = 0;
    let maxInside = 0;
    const section = (key: string) => sut.run(key, async () => {
      inside++;
      maxInside = Math.max(maxInside, inside);
      await tick();
      inside--;
    });
    await Promise.all([section('a'), section('b')]);
    expect(maxInside).toBe(2);
  });

  it('releases the key when a section throws', async () => {
    const sut = new KeyedLock();
    await expect(sut.run('k', async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    expect(await sut.run('k', async () => 'next')).toBe('next');
    expect(sut.size).toBe(0);
  });
});
