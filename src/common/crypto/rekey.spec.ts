import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Cipher, sealedKeyId } from './cipher.js';
import type { EncryptedTable } from './encrypted-columns.js';
import { rekey, type RekeyTableReport } from './rekey.js';

const table: EncryptedTable = { kind: 'columns', table: 'secrets', id: 'id', columns: ['a_enc', 'b_enc'] };
const events: EncryptedTable = { kind: 'json', table: 'events', id: 'id', column: 'payload', paths: ['data.url', 'data.other'] };
const keyA = randomBytes(32);
const keyB = randomBytes(32);
const underA = new Cipher(keyA);
const ctx = (column: string, id: string) => ({ table: 'secrets', column, id });

describe(rekey.name, () => {
  let ds: DataSource;
  const sut = (cipher = new Cipher(keyB, [keyA]), options: Parameters<typeof rekey>[2] = {}) => rekey(ds, cipher, { tables: [table], ...options });
  const values = async () => (await ds.query('SELECT id, a_enc, b_enc FROM secrets ORDER BY id')) as { id: string; a_enc: string | null; b_enc: string | null }[];

  beforeEach(async () => {
    ds = await new DataSource({ type: 'better-sqlite3', database: ':memory:' }).initialize();
    await ds.query('CREATE TABLE secrets (id varchar(40) PRIMARY KEY, a_enc text NOT NULL, b_enc text)');
    for (let i = 0; i < 7; i++) {
      const id = `row_${i}`;
      await ds.query('INSERT INTO secrets (id, a_enc, b_enc) VALUES (?, ?, ?)', [id, underA.encrypt(`a${i}`, ctx('a_enc', id)), i % 2 ? underA.encrypt(`b${i}`, ctx('b_enc', id)) : null]);
    }
  });
  afterEach(async () => {
    await ds.destroy();
  });

  it('re-encrypts every value under the current key, for the same row, in batches', async () => {
    const progress: RekeyTableReport[] = [];
    const report = await sut(undefined, { batchSize: 3, onProgress: (p) => progress.push(p) });
    expect(report.tables).toEqual([{ table: 'secrets', rows: 7, values: 10, concurrent: 0, failed: 0 }]);
    expect(report.remaining).toBe(0);
    expect(progress.map((p) => p.rows)).toEqual([3, 6, 7]);
    const onlyB = new Cipher(keyB);
    for (const [i, row] of (await values()).entries()) {
      expect(sealedKeyId(row.a_enc!)).toBe(onlyB.currentKeyId);
      expect(onlyB.decryptString(row.a_enc!, ctx('a_enc', row.id))).toBe(`a${i}`);
      if (row.b_enc) expect(onlyB.decryptString(row.b_enc, ctx('b_enc', row.id))).toBe(`b${i}`);
      else expect(i % 2).toBe(0);
    }
  });

  it('is idempotent: a second run reads nothing and writes nothing', async () => {
    await sut();
    const before = await values();
    const query = vi.spyOn(ds, 'query');
    const second = await sut();
    expect(second.tables[0]).toEqual({ table: 'secrets', rows: 0, values: 0, concurrent: 0, failed: 0 });
    expect(await values()).toEqual(before);
    expect(query.mock.calls.filter(([sql]) => String(sql).startsWith('UPDATE'))).toHaveLength(0);
  });

  it('does not overwrite a value another writer changed between read and write', async () => {
    const cipher = new Cipher(keyB, [keyA]);
    const written = cipher.encrypt('changed by an instance', ctx('a_enc', 'row_3'));
    const query = ds.query.bind(ds);
    let raced = false;
    vi.spyOn(ds, 'query').mockImplementation(async (sql, params) => {
      const result = await query(sql, params);
      if (!raced && sql.startsWith('SELECT')) {
        raced = true;
        await query('UPDATE secrets SET a_enc = ? WHERE id = ?', [written, 'row_3']);
      }
      return result;
    });
    const report = await sut(cipher);
    expect(report.tables[0]).toMatchObject({ values: 9, concurrent: 1, failed: 0 });
    expect(report.remaining).toBe(0);
    expect((await values()).find((r) => r.id === 'row_3')!.a_enc).toBe(written);
  });

  it('reports a value moved to another row and leaves it as it is (never re-bound to its new row)', async () => {
    const [first] = await values();
    await ds.query('UPDATE secrets SET a_enc = ? WHERE id = ?', [first.a_enc, 'row_2']);
    const failures: unknown[] = [];
    const report = await sut(undefined, { onFailure: (f) => failures.push(f) });
    expect(failures).toEqual([{ table: 'secrets', column: 'a_enc', id: 'row_2', reason: 'authentication failed' }]);
    expect(report.tables[0]).toMatchObject({ values: 9, failed: 1 });
    expect(report.remaining).toBe(1);
    expect((await values()).find((r) => r.id === 'row_2')!.a_enc).toBe(first.a_enc);
  });

  it('without the former key, reports every value as sealed under an unknown key and changes nothing', async () => {
    const before = await values();
    const report = await sut(new Cipher(keyB));
    expect(report.tables[0]).toMatchObject({ rows: 0, values: 0, failed: 10 });
    expect(report.failures[0].reason).toMatch(/sealed under master key id [0-9a-f]{16}, which is neither MASTER_KEY/);
    expect(report.remaining).toBe(10);
    expect(await values()).toEqual(before);
  });

  describe('sealed values inside a JSON column', () => {
    const payload = (id: string, cipher: Cipher, url = `https://x/approve/${id}`) =>
      JSON.stringify({ id, type: 't', data: { before: 1, url: { $sealed: cipher.encrypt(url, { table: 'events', column: 'payload.data.url', id }) }, after: [2] } });
    const rows = async () => (await ds.query('SELECT id, payload FROM events ORDER BY id')) as { id: string; payload: string }[];

    beforeEach(async () => {
      await ds.query('CREATE TABLE events (id varchar(40) PRIMARY KEY, payload text NOT NULL)');
      for (let i = 0; i < 5; i++) await ds.query('INSERT INTO events (id, payload) VALUES (?, ?)', [`evt_${i}`, payload(`evt_${i}`, underA)]);
      await ds.query('INSERT INTO events (id, payload) VALUES (?, ?)', ['evt_plain', JSON.stringify({ id: 'evt_plain', data: { url: 'not sealed' } })]);
    });

    it('re-encrypts each sealed field for its row and keeps the rest of the document as it was', async () => {
      const report = await rekey(ds, new Cipher(keyB, [keyA]), { tables: [events], batchSize: 2 });
      expect(report.tables).toEqual([{ table: 'events', rows: 5, values: 5, concurrent: 0, failed: 0 }]);
      expect(report.remaining).toBe(0);
      const onlyB = new Cipher(keyB);
      for (const row of await rows()) {
        const doc = JSON.parse(row.payload);
        if (row.id === 'evt_plain') {
          expect(doc.data.url).toBe('not sealed');
          continue;
        }
        expect(doc).toMatchObject({ id: row.id, type: 't', data: { before: 1, after: [2] } });
        expect(Object.keys(doc.data)).toEqual(['before', 'url', 'after']);
        expect(onlyB.decryptString(doc.data.url.$sealed, { table: 'events', column: 'payload.data.url', id: row.id })).toBe(`https://x/approve/${row.id}`);
      }
      const again = await rekey(ds, new Cipher(keyB, [keyA]), { tables: [events] });
      expect(again.tables[0]).toMatchObject({ rows: 0, values: 0 });
    });

    it('refuses a sealed field moved to another event', async () => {
      const [first] = await rows();
      await ds.query('UPDATE events SET payload = ? WHERE id = ?', [first.payload.replace('"evt_0"', '"evt_1"'), 'evt_1']);
      const report = await rekey(ds, new Cipher(keyB, [keyA]), { tables: [events] });
      expect(report.failures).toEqual([{ table: 'events', column: 'payload.data.url', id: 'evt_1', reason: 'authentication failed' }]);
      expect(report.remaining).toBe(1);
    });
  });
});
