import { DataSource } from 'typeorm';
import { vi } from 'vitest';
import { usingPostgres } from './app.js';

export interface Statement {
  sql: string;
  params: unknown[];
}

/** Every statement the DataSource runs while `fn` runs (read from TypeORM's query log hook). */
export async function statementsDuring(ds: DataSource, fn: () => Promise<unknown>): Promise<Statement[]> {
  const seen: Statement[] = [];
  const spy = vi.spyOn(ds.logger, 'logQuery').mockImplementation((sql: string, params?: unknown) => void seen.push({ sql, params: (params as unknown[] | undefined) ?? [] }));
  try {
    await fn();
  } finally {
    spy.mockRestore();
  }
  return seen;
}

export interface Access {
  /** How the row source is read: a full scan (of the table or a whole index) or an index search. */
  kind: 'scan' | 'search';
  index: string | null;
  /** The index condition (PostgreSQL) or the plan line (SQLite). */
  detail: string;
}

/** How `table` is read by one statement: EXPLAIN QUERY PLAN (SQLite) or EXPLAIN (PostgreSQL). */
export async function tableAccesses(ds: DataSource, s: Statement, table = 'audit_events'): Promise<Access[]> {
  if (ds.options.type === 'postgres') {
    const [row] = await ds.query(`EXPLAIN (FORMAT JSON) ${s.sql}`, s.params);
    const out: Access[] = [];
    const walk = (node: Record<string, unknown>, underAudit: boolean) => {
      const onAudit = node['Relation Name'] === table;
      const type = String(node['Node Type']);
      if (onAudit && type === 'Seq Scan') out.push({ kind: 'scan', index: null, detail: type });
      // An index read without a condition walks the whole index (as SQLite's `SCAN … USING INDEX`): a scan.
      const viaIndex = () => out.push({ kind: node['Index Cond'] ? 'search' : 'scan', index: String(node['Index Name']), detail: String(node['Index Cond'] ?? '') });
      if (onAudit && /Index/.test(type)) viaIndex();
      // A bitmap heap scan names the table; its children name the index.
      if (type === 'Bitmap Index Scan' && underAudit) viaIndex();
      for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child, onAudit || (underAudit && type !== 'Bitmap Heap Scan'));
    };
    walk((row['QUERY PLAN'] as { Plan: Record<string, unknown> }[])[0].Plan, false);
    return out;
  }
  const aliases = new Set([table, ...[...s.sql.matchAll(new RegExp(`"${table}"\\s+(?:AS\\s+)?"(\\w+)"`, 'gi'))].map((m) => m[1])]);
  const rows: { detail: string }[] = await ds.query(`EXPLAIN QUERY PLAN ${s.sql}`, s.params);
  const out: Access[] = [];
  for (const { detail } of rows) {
    const m = /^(SCAN|SEARCH) (\S+)(?: USING (?:COVERING )?INDEX (\S+))?/.exec(detail);
    if (m && aliases.has(m[2])) out.push({ kind: m[1] === 'SCAN' ? 'scan' : 'search', index: m[3] ?? null, detail });
  }
  return out;
}

/** Whether one statement's plan sorts rows (a sort node, SQLite's temporary B-tree): its cost then grows with every row it sorts. */
export async function sorts(ds: DataSource, s: Statement): Promise<boolean> {
  if (ds.options.type === 'postgres') return /"Node Type": "(Incremental )?Sort"/.test(JSON.stringify((await ds.query(`EXPLAIN (FORMAT JSON) ${s.sql}`, s.params))[0]['QUERY PLAN'], null, 1));
  return ((await ds.query(`EXPLAIN QUERY PLAN ${s.sql}`, s.params)) as { detail: string }[]).some((r) => /TEMP B-TREE/.test(r.detail));
}

/** One line per access, for an assertion's message. */
export const planOf = (s: Statement, accesses: Access[]) => `${s.sql}\n→ ${accesses.map((a) => `${a.kind} ${a.index ?? '(table)'} ${a.detail}`).join(' | ')}`;

/** A FROM item of the integers 1..n, as `n(i)`, on either database: synthetic history in one INSERT ... SELECT. */
export const integers = (n: number) => (usingPostgres() ? `generate_series(1, ${n}) AS n(i)` : `(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ${n}) SELECT i FROM s) AS n`);
