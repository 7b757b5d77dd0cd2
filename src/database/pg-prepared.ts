import { createHash } from 'node:crypto';
import type { Pool, PoolClient, QueryResultRow } from 'pg';
import { DataSource, QueryFailedError, type EntityManager } from 'typeorm';

/** Statement names by SQL text: the same text always gets the same name, another text another name. */
const names = new Map<string, string>();

function nameOf(sql: string): string {
  let name = names.get(sql);
  if (!name) names.set(sql, (name = `mpx_${createHash('sha256').update(sql).digest('hex').slice(0, 24)}`));
  return name;
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
 * connection for its life): never text built from input, whose values go in `params`.
 */
export async function queryPrepared<T extends QueryResultRow>(on: DataSource | EntityManager, sql: string, params: unknown[]): Promise<T[]> {
  const ds = on instanceof DataSource ? on : on.connection;
  ds.logger.logQuery(sql, params);
  const runner = on instanceof DataSource ? undefined : on.queryRunner;
  const client: Pool | PoolClient = runner ? await (runner as unknown as { connect(): Promise<PoolClient> }).connect() : (ds.driver as unknown as { master: Pool }).master;
  try {
    return (await client.query<T>({ name: nameOf(sql), text: sql, values: params })).rows;
  } catch (err) {
    // As TypeORM's own queries fail: the driver's error (its code) under QueryFailedError's driverError.
    ds.logger.logQueryError(err instanceof Error ? err : String(err), sql, params);
    throw new QueryFailedError(sql, params, err as Error);
  }
}
