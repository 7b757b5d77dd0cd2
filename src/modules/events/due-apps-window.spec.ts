import { describe, expect, it } from 'vitest';
import { DueAppsWindow } from './due-apps-window.js';

/** The repository's contract over a fixed set of due apps: sorted, after `after`, at most `limit`. */
function apps(ids: string[]) {
  const calls: { after: string; limit: number }[] = [];
  const sorted = [...ids].sort();
  const query = async (after: string, limit: number) => {
    calls.push({ after, limit });
    return sorted.filter((id) => id > after).slice(0, limit);
  };
  return { query, calls };
}

describe(DueAppsWindow.name, () => {
  it('with fewer due apps than the limit, every claim sees all of them in one query from the first', async () => {
    const { query, calls } = apps(['app_c', 'app_a', 'app_b']);
    const w = new DueAppsWindow();
    for (let i = 0; i < 3; i++) expect(await w.next(1000, query)).toEqual(['app_a', 'app_b', 'app_c']);
    expect(calls).toEqual(Array(3).fill({ after: '', limit: 1000 }));
  });

  it('with more due apps than the limit, the window moves on and wraps: no app waits for the first ones to drain', async () => {
    const ids = ['app_1', 'app_2', 'app_3', 'app_4', 'app_5'];
    const { query } = apps(ids);
    const w = new DueAppsWindow();
    const windows: string[][] = [];
    for (let i = 0; i < 5; i++) windows.push(await w.next(2, query));
    expect(windows).toEqual([
      ['app_1', 'app_2'],
      ['app_3', 'app_4'],
      ['app_5', 'app_1'],
      ['app_2', 'app_3'],
      ['app_4', 'app_5'],
    ]);
    // Every app within ⌈5 / 2⌉ + 1 = 4 claims, from any starting point.
    for (let start = 0; start < 2; start++) expect(new Set(windows.slice(start, start + 4).flat())).toEqual(new Set(ids));
  });

  it('a window that wraps with fewer apps than the limit starts again from the first app next time', async () => {
    const due = ['app_1', 'app_2', 'app_3'];
    const w = new DueAppsWindow();
    const query = async (after: string, limit: number) => due.filter((id) => id > after).slice(0, limit);
    expect(await w.next(2, query)).toEqual(['app_1', 'app_2']);
    due.splice(0, 3, 'app_3'); // app_1 and app_2 drained meanwhile
    expect(await w.next(2, query)).toEqual(['app_3']);
    due.push('app_4');
    expect(await w.next(2, query)).toEqual(['app_3', 'app_4']);
    expect(await w.next(2, query)).toEqual(['app_3', 'app_4']);
  });
});
