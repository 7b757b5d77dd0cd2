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

  it('keeps 84 random bits after the time: ids of one millisecond differ', () => {
    const ids = Array.from({ length: 1_000 }, () => newEventId(1_764_633_600_000));
    expect(new Set(ids.map((id) => id.slice(4, 12))).size).toBe(1);
    expect(new Set(ids.map((id) => id.slice(12, 20))).size).toBe(ids.length);
  });
});
