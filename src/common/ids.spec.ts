import { describe, expect, it } from 'vitest';
import { isId, newId } from './ids.js';

describe('newId', () => {
  it('gives well-formed ids, none repeated, across many refills of its random pool', () => {
    const ids = Array.from({ length: 5_000 }, () => newId('event'));
    for (const id of ids) expect(isId('event', id), id).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    // 128 random bits each: no two share even their first 8 characters in a sample this small.
    expect(new Set(ids.map((id) => id.slice(4, 12))).size).toBe(ids.length);
  });

  it('puts the kind prefix in front', () => {
    expect(newId('stepUp')).toMatch(/^stp_[A-Za-z0-9_-]{22}$/);
    expect(isId('agent', newId('stepUp'))).toBe(false);
  });
});
