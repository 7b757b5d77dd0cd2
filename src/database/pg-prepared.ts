import { createHash } from 'node:crypto';
import type { Pool, PoolClient, QueryResultRow } from 'pg';
import { DataSource, QueryFailedError, type EntityManager } from 'typeorm';

/** Statement names by SQL text: the same text gets the same name until that name is retired (retire). */
const names = new Map<string, string>();
let retired = 0;

function nameOf(sql: string): string {
  let name = names.get(sql);
  if (!name) names.set(sql, (name = `mpx_${createHash('sha256').update(sql).digest('hex').slice(0, 24)}_${retired}`));
  return name;
}

/**
 * Errors of a prepared statement that a fresh one does not have, raised before it runs (nothing
 * was done): a migration changed the type of a column it returns since the connection prepared it
 * (0A000, "cached plan must not change result type": PostgreSQL never re-prepares it), or the
 * statement is gone from the session (26000, e.g. a pooler's DISCARD ALL).
 */
const STALE = new Set(['0A000', '26000']);

/** The text gets a new name (so every connection prepares it again), unless another failed call already renamed it. */
function retire(sql: string, name: string): void {
  if (names.get(sql) !== name) return;
  retired++;
  names.delete(sql);
}

/**
 * PostgreSQL: runs one of the code's own statements as a named prepared statement of the
 * connection it runs on, and returns its rows (RETURNING rows included), logged like TypeORM's
 * own queries. On a DataSource, a pooled connection (the statement is its own transaction); on a
 * transaction's EntityManager, that transaction.
 *
 * TypeORM sends every query as an unnamed statement, which PostgreSQL parses, analyses and plans
 * on every call: for the long statements of the hot paths (the batched consume, the outbox and
 * audit background work) that cost about as much as running them (1 ms of planning per consume
 * batch, measured with pg_stat_statements). A named statement is parsed once per connection, and
 * after five calls PostgreSQL keeps a generic plan when it costs no more than the custom ones.
 *
 * Only for a text of the code that takes a bounded number of forms (a name per form, kept by each
 * connection for its life): never text built from input, whose values go in `params`. A statement
 * a migration has made stale on a connection (STALE) is renamed and prepared again, so instances
 * still running across a deploy's migration recover by themselves.
 */
export async function queryPrepared<T extends QueryResultRow>(on: DataSource | EntityManager, sql: string, params: unknown[]): Promise<T[]> {
  const ds = on instanceof DataSource ? on : on.connection;
  ds.logger.logQuery(sql, params);
  const runner = on instanceof DataSource ? undefined : on.queryRunner;
  const client: Pool | PoolClient = runner ? await (runner as unknown as { connect(): Promise<PoolClient> }).connect() : (ds.driver as unknown as { master: Pool }).master;
  for (let attempt = 0; ; attempt++) {
    const name = nameOf(sql);
    try {
      return (await client.query<T>({ name, text: sql, values: params })).rows;
    } catch (err) {
      const stale = STALE.has((err as { code?: string }).code ?? '');
      if (stale) retire(sql, name);
      // Outside a transaction, once more under the new name (a pooled connection; nothing ran). In
      // one, the transaction is aborted: its caller fails this once, and its next call prepares anew.
      if (stale && !runner && attempt === 0) continue;
      // As TypeORM's own queries fail: the driver's error (its code) under QueryFailedError's driverError.
      ds.logger.logQueryError(err instanceof Error ? err : String(err), sql, params);
      throw new QueryFailedError(sql, params, err as Error);
    }
  }
}
