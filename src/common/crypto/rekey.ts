import type { DataSource } from 'typeorm';
import { Cipher, DecryptionError, type CipherContext } from './cipher.js';
import { ENCRYPTED_COLUMNS, type EncryptedColumns, type EncryptedJsonFields, type EncryptedTable } from './encrypted-columns.js';

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
 * Re-encrypts every encrypted value under the current master key, while instances keep serving:
 * - bounded batches in primary-key order (keyset pagination, no long transaction, no OFFSET);
 * - only values not already under the current key are rewritten, so a re-run writes nothing;
 * - each value is written with a conditional update (`WHERE id = :id AND col = :old`), so a value
 *   another instance changed meanwhile is not overwritten with the stale plaintext;
 * - the value is decrypted and encrypted with the same `{ table, column, id }` additional data, so
 *   a ciphertext moved to another row fails and is reported, never re-bound to the row it sits in.
 */
export async function rekey(ds: DataSource, cipher: Cipher, options: RekeyOptions = {}): Promise<RekeyReport> {
  const tables = options.tables ?? ENCRYPTED_COLUMNS;
  const run = new Rekeying(new Sql(ds), cipher, options.batchSize ?? 500, options);
  for (const t of tables) run.report.tables.push(t.kind === 'columns' ? await run.columns(t) : await run.json(t));
  for (const t of tables) run.report.remaining += t.kind === 'columns' ? await run.countStaleColumns(t) : await run.countStaleJson(t);
  return run.report;
}

interface Sealed {
  $sealed: string;
}

const isSealed = (v: unknown): v is Sealed => typeof v === 'object' && v !== null && typeof (v as Sealed).$sealed === 'string';

/** The object holding the last segment of `path`, and that segment; null if the path is absent. */
function slot(root: unknown, path: string): { parent: Record<string, unknown>; key: string } | null {
  const keys = path.split('.');
  let node = root;
  for (const k of keys.slice(0, -1)) {
    if (typeof node !== 'object' || node === null) return null;
    node = (node as Record<string, unknown>)[k];
  }
  return typeof node === 'object' && node !== null ? { parent: node as Record<string, unknown>, key: keys[keys.length - 1] } : null;
}

/** JSON text that holds a sealed value somewhere (our JSON columns are written by JSON.stringify). */
const SEALED_JSON = '%"$sealed":%';

class Rekeying {
  readonly report: RekeyReport;

  constructor(
    private readonly sql: Sql,
    private readonly cipher: Cipher,
    private readonly batchSize: number,
    private readonly options: RekeyOptions,
  ) {
    this.report = { keyId: cipher.currentKeyId, tables: [], failures: [], remaining: 0 };
  }

  async columns(t: EncryptedColumns): Promise<RekeyTableReport> {
    const totals = this.totals(t);
    await this.batches(t, [t.id, ...t.columns], this.sql.staleColumns(t.columns, this.cipher.currentKeyId), async (row) => {
      let changed = false;
      for (const column of t.columns) {
        const old = row[column];
        if (old === null || this.cipher.isCurrent(old)) continue;
        const next = this.reencrypt(old, { table: t.table, column, id: String(row.id) }, totals);
        if (next === null) continue;
        if (await this.sql.replaceIfUnchanged(t, column, String(row.id), old, next)) {
          totals.values++;
          changed = true;
        } else {
          totals.concurrent++;
        }
      }
      if (changed) totals.rows++;
    }, totals);
    return totals;
  }

  async json(t: EncryptedJsonFields): Promise<RekeyTableReport> {
    const totals = this.totals(t);
    await this.batches(t, [t.id, t.column], this.sql.likeFilter(t.column, SEALED_JSON), async (row) => {
      const old = row[t.column];
      if (old === null) return;
      const doc: unknown = JSON.parse(old);
      let rewritten = 0;
      for (const path of t.paths) {
        const at = slot(doc, path);
        const value = at?.parent[at.key];
        if (!at || !isSealed(value) || this.cipher.isCurrent(value.$sealed)) continue;
        const next = this.reencrypt(value.$sealed, { table: t.table, column: `${t.column}.${path}`, id: String(row.id) }, totals);
        if (next === null) continue;
        at.parent[at.key] = { ...value, $sealed: next };
        rewritten++;
      }
      if (!rewritten) return;
      if (await this.sql.replaceIfUnchanged(t, t.column, String(row.id), old, JSON.stringify(doc))) {
        totals.values += rewritten;
        totals.rows++;
      } else {
        totals.concurrent += rewritten;
      }
    }, totals);
    return totals;
  }

  countStaleColumns(t: EncryptedColumns): Promise<number> {
    return this.sql.countStale(t, this.cipher.currentKeyId);
  }

  async countStaleJson(t: EncryptedJsonFields): Promise<number> {
    let stale = 0;
    await this.batches(t, [t.id, t.column], this.sql.likeFilter(t.column, SEALED_JSON), async (row) => {
      const doc: unknown = row[t.column] === null ? null : JSON.parse(row[t.column]!);
      for (const path of t.paths) {
        const at = slot(doc, path);
        const value = at?.parent[at.key];
        if (at && isSealed(value) && !this.cipher.isCurrent(value.$sealed)) stale++;
      }
    });
    return stale;
  }

  private totals(t: EncryptedTable): RekeyTableReport {
    return { table: t.table, rows: 0, values: 0, concurrent: 0, failed: 0 };
  }

  /** The sealed value under the current key, or null (reported) when it does not open for this row. */
  private reencrypt(sealed: string, ctx: CipherContext, totals: RekeyTableReport): string | null {
    try {
      return this.cipher.reencrypt(sealed, ctx);
    } catch (err) {
      if (!(err instanceof DecryptionError)) throw err;
      totals.failed++;
      const failure = { ...ctx, reason: err.reason };
      this.report.failures.push(failure);
      this.options.onFailure?.(failure);
      return null;
    }
  }

  /** Every row matching `filter`, `batchSize` at a time in primary-key order. */
  private async batches(t: EncryptedTable, columns: string[], filter: Filter, each: (row: Row) => Promise<void>, totals?: RekeyTableReport): Promise<void> {
    let after: string | null = null;
    for (;;) {
      const rows = await this.sql.batch(t.table, t.id, columns, filter, after, this.batchSize);
      for (const row of rows) await each(row);
      if (rows.length && totals) this.options.onProgress?.({ ...totals });
      if (rows.length < this.batchSize) return;
      after = String(rows[rows.length - 1].id);
    }
  }
}

/** A WHERE condition with `?` placeholders and its parameters, in order. */
interface Filter {
  text: string;
  params: unknown[];
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

  /** Numbers `?` placeholders for PostgreSQL; SQLite binds them by position. */
  private numbered(text: string): string {
    let n = 0;
    return this.pg ? text.replace(/\?/g, () => `$${++n}`) : text;
  }

  private prefix(keyId: string): string {
    return `v1.${keyId}.%`;
  }

  /** Rows with a value in one of `columns` not sealed under the current key. */
  staleColumns(columns: readonly string[], keyId: string): Filter {
    return {
      text: columns.map((c) => `(${this.q(c)} IS NOT NULL AND ${this.q(c)} NOT LIKE ?)`).join(' OR '),
      params: columns.map(() => this.prefix(keyId)),
    };
  }

  likeFilter(column: string, pattern: string): Filter {
    return { text: `${this.q(column)} LIKE ?`, params: [pattern] };
  }

  batch(table: string, id: string, columns: string[], filter: Filter, after: string | null, limit: number): Promise<Row[]> {
    const select = columns.map((c) => (c === id ? `${this.q(id)} AS ${this.q('id')}` : this.q(c))).join(', ');
    const params = [...filter.params];
    let where = `(${filter.text})`;
    if (after !== null) {
      where += ` AND ${this.q(id)} > ?`;
      params.push(after);
    }
    params.push(limit);
    return this.ds.query(this.numbered(`SELECT ${select} FROM ${this.q(table)} WHERE ${where} ORDER BY ${this.q(id)} LIMIT ?`), params);
  }

  /** The conditional write: the row count is the verdict (0: someone else changed the value). */
  async replaceIfUnchanged(t: EncryptedTable, column: string, id: string, old: string, next: string): Promise<boolean> {
    const text = this.numbered(`UPDATE ${this.q(t.table)} SET ${this.q(column)} = ? WHERE ${this.q(t.id)} = ? AND ${this.q(column)} = ?`);
    const runner = this.ds.createQueryRunner();
    try {
      return ((await runner.query(text, [next, id, old], true)).affected ?? 0) > 0;
    } finally {
      await runner.release();
    }
  }

  async countStale(t: EncryptedColumns, keyId: string): Promise<number> {
    let total = 0;
    for (const c of t.columns) {
      const filter = this.staleColumns([c], keyId);
      const [row] = await this.ds.query(this.numbered(`SELECT COUNT(*) AS n FROM ${this.q(t.table)} WHERE ${filter.text}`), filter.params);
      total += Number(row.n);
    }
    return total;
  }
}
