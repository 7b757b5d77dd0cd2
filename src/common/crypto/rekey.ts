import type { DataSource } from 'typeorm';
import { Cipher, DecryptionError } from './cipher.js';
import { ENCRYPTED_COLUMNS, type EncryptedTable } from './encrypted-columns.js';

export interface RekeyTableReport {
  table: string;
  /** Rows with at least one value re-encrypted under the current key. */
  rows: number;
  values: number;
  /** Values another writer changed between our read and our write: left as they are (a re-run sees them). */
  concurrent: number;
  failed: number;
}

export interface RekeyFailure {
  table: string;
  column: string;
  id: string;
  reason: string;
}

export interface RekeyReport {
  keyId: string;
  tables: RekeyTableReport[];
  failures: RekeyFailure[];
  /** Values still not sealed under the current key when the run ended (0 means MASTER_KEY_PREVIOUS can go). */
  remaining: number;
}

export interface RekeyOptions {
  batchSize?: number;
  /** Called after each batch with the table's running totals. */
  onProgress?: (progress: RekeyTableReport) => void;
  /** Called for each value that could not be decrypted (unknown key, or bound to another row). */
  onFailure?: (failure: RekeyFailure) => void;
  tables?: readonly EncryptedTable[];
}

type Row = Record<string, string | null>;

/**
 * Re-encrypts every encrypted column under the current master key, while instances keep serving:
 * - bounded batches in primary-key order (keyset pagination, no long transaction, no OFFSET);
 * - only values not already under the current key are read, so a re-run has nothing to do;
 * - each value is written with a conditional update (`WHERE id = :id AND col = :old`), so a value
 *   another instance changed meanwhile is not overwritten with the stale plaintext;
 * - the value is decrypted and encrypted with the same `{ table, column, id }` additional data, so
 *   a ciphertext moved to another row fails and is reported, never re-bound to the row it sits in.
 */
export async function rekey(ds: DataSource, cipher: Cipher, options: RekeyOptions = {}): Promise<RekeyReport> {
  const batchSize = options.batchSize ?? 500;
  const sql = new Sql(ds);
  const report: RekeyReport = { keyId: cipher.currentKeyId, tables: [], failures: [], remaining: 0 };
  for (const t of options.tables ?? ENCRYPTED_COLUMNS) {
    const totals: RekeyTableReport = { table: t.table, rows: 0, values: 0, concurrent: 0, failed: 0 };
    let after: string | null = null;
    for (;;) {
      const rows = await sql.staleBatch(t, cipher.currentKeyId, after, batchSize);
      for (const row of rows) {
        let changed = false;
        for (const column of t.columns) {
          const old = row[column];
          if (old === null || cipher.isCurrent(old)) continue;
          const ctx = { table: t.table, column, id: String(row.id) };
          let next: string;
          try {
            next = cipher.reencrypt(old, ctx);
          } catch (err) {
            if (!(err instanceof DecryptionError)) throw err;
            totals.failed++;
            const failure = { ...ctx, reason: err.reason };
            report.failures.push(failure);
            options.onFailure?.(failure);
            continue;
          }
          if (await sql.replaceIfUnchanged(t, column, ctx.id, old, next)) {
            totals.values++;
            changed = true;
          } else {
            totals.concurrent++;
          }
        }
        if (changed) totals.rows++;
      }
      if (rows.length) options.onProgress?.({ ...totals });
      if (rows.length < batchSize) break;
      after = String(rows[rows.length - 1].id);
    }
    report.tables.push(totals);
  }
  for (const t of options.tables ?? ENCRYPTED_COLUMNS) report.remaining += await sql.countStale(t, cipher.currentKeyId);
  return report;
}

/** The few statements rekey needs, on SQLite and PostgreSQL (identifiers come from ENCRYPTED_COLUMNS only). */
class Sql {
  private readonly pg: boolean;

  constructor(private readonly ds: DataSource) {
    this.pg = ds.options.type === 'postgres';
  }

  private q(name: string): string {
    return `"${name}"`;
  }

  /** The `n`th (1-based) placeholder: numbered on PostgreSQL, positional on SQLite. */
  private p(n: number): string {
    return this.pg ? `$${n}` : '?';
  }

  /** `(a IS NOT NULL AND a NOT LIKE 'v1.<kid>.%') OR ...`: values not sealed under the current key. */
  private stale(t: EncryptedTable, first: number): string {
    return t.columns.map((c) => `(${this.q(c)} IS NOT NULL AND ${this.q(c)} NOT LIKE ${this.p(first)})`).join(' OR ');
  }

  private prefix(keyId: string): string {
    return `v1.${keyId}.%`;
  }

  async staleBatch(t: EncryptedTable, keyId: string, after: string | null, limit: number): Promise<Row[]> {
    const cols = [`${this.q(t.id)} AS ${this.q('id')}`, ...t.columns.map((c) => this.q(c))].join(', ');
    // Parameters in the order they appear: SQLite binds `?` by position, once per column's LIKE;
    // PostgreSQL numbers the prefix once.
    const params: unknown[] = this.pg ? [this.prefix(keyId)] : t.columns.map(() => this.prefix(keyId));
    let where = `(${this.stale(t, 1)})`;
    if (after !== null) {
      params.push(after);
      where += ` AND ${this.q(t.id)} > ${this.p(params.length)}`;
    }
    params.push(limit);
    return this.ds.query(`SELECT ${cols} FROM ${this.q(t.table)} WHERE ${where} ORDER BY ${this.q(t.id)} LIMIT ${this.p(params.length)}`, params);
  }

  /** The conditional write: the row count is the verdict (0: someone else changed the value). */
  async replaceIfUnchanged(t: EncryptedTable, column: string, id: string, old: string, next: string): Promise<boolean> {
    const text = `UPDATE ${this.q(t.table)} SET ${this.q(column)} = ${this.p(1)} WHERE ${this.q(t.id)} = ${this.p(2)} AND ${this.q(column)} = ${this.p(3)}`;
    const runner = this.ds.createQueryRunner();
    try {
      return ((await runner.query(text, [next, id, old], true)).affected ?? 0) > 0;
    } finally {
      await runner.release();
    }
  }

  async countStale(t: EncryptedTable, keyId: string): Promise<number> {
    let total = 0;
    for (const c of t.columns) {
      const [row] = await this.ds.query(`SELECT COUNT(*) AS n FROM ${this.q(t.table)} WHERE ${this.q(c)} IS NOT NULL AND ${this.q(c)} NOT LIKE ${this.p(1)}`, [this.prefix(keyId)]);
      total += Number(row.n);
    }
    return total;
  }
}
