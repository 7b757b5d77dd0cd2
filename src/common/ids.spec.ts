import { describe, expect, it } from 'vitest';
import { isId, newEventId, newId } from './ids.js';

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

describe('newEventId', () => {
  it('gives well-formed event ids, none repeated, that sort as text in the order of their times', () => {
    // Digit carries (63 → 64, 4095 → 4096), today, and random times up to 2^48 ms, each id made twice.
    const times = [0, 1, 63, 64, 4095, 4096, 1_764_633_600_000, 1_764_633_600_001, ...Array.from({ length: 2_000 }, () => Math.floor(Math.random() * 2 ** 48))];
    const made = times.flatMap((t) => [{ t, id: newEventId(t) }, { t, id: newEventId(t) }]);
    for (const { id } of made) expect(isId('event', id), id).toBe(true);
    expect(new Set(made.map((m) => m.id)).size).toBe(made.length);
    const byText = [...made].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (let i = 1; i < byText.length; i++) expect(byText[i].t, `${byText[i - 1].id} < ${byText[i].id}`).toBeGreaterThanOrEqual(byText[i - 1].t);
  });

  it('numbers the ids of one millisecond in the order they are made, in decimal digits, with 66 random bits after', () => {
    const ids = Array.from({ length: 500 }, () => newEventId(1_764_633_600_000));
    expect(new Set(ids.map((id) => id.slice(4, 12))).size).toBe(1);
    const numbers = ids.map((id) => Number(id.slice(12, 15)));
    expect(numbers[0]).toBeLessThan(500);
    expect(numbers).toEqual(numbers.map((_, i) => numbers[0] + i));
    expect([...ids].sort()).toEqual(ids);
    // Under a collation that ignores case and punctuation, as under bytes.
    const collator = new Intl.Collator('en', { sensitivity: 'base', ignorePunctuation: true });
    expect([...ids].reverse().sort(collator.compare)).toEqual(ids);
    expect(new Set(ids.map((id) => id.slice(15))).size).toBe(ids.length);
    // The next millisecond sorts after, whatever number it starts at.
    const next = newEventId(1_764_633_600_001);
    expect(Number(next.slice(12, 15))).toBeLessThan(500);
    expect(next > ids[ids.length - 1]).toBe(true);
  });

  it('starts each millisecond at a random number below 500: an id does not count the events before it', () => {
    const firsts = Array.from({ length: 200 }, (_, i) => Number(newEventId(1_764_633_700_000 + i).slice(12, 15)));
    expect(firsts.every((n) => n >= 0 && n < 500)).toBe(true);
    expect(new Set(firsts).size).toBeGreaterThan(100);
  });

  it('past number 999 in one millisecond, the rest are still well formed and distinct (in random order)', () => {
    const ids = Array.from({ length: 3_000 }, () => newEventId(1_764_633_600_002));
    for (const id of ids) expect(isId('event', id), id).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.slice(999).every((id) => id.slice(12, 15) === '999')).toBe(true);
  });
});
