import { Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import { KeyedLock } from '../common/concurrency/keyed-lock.js';

/**
 * Runs "read, decide, write" as one transaction at a time per key, on every database: a
 * transaction-scoped advisory lock on PostgreSQL (across instances), and an in-process keyed lock
 * (SQLite is one instance, and TypeORM turns its concurrent transactions into nested savepoints
 * rather than isolating them). For caps that a single conditional write cannot express.
 */
@Injectable()
export class Serializer {
  private readonly local = new KeyedLock();

  constructor(private readonly ds: DataSource) {}

  run<T>(key: string, fn: (m: EntityManager) => Promise<T>): Promise<T> {
    return this.local.run(key, () =>
      this.ds.transaction(async (m) => {
        if (this.ds.options.type === 'postgres') await m.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [key]);
        return fn(m);
      }),
    );
  }
}
