import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENTITIES } from '../../database/entities.js';
import { ENCRYPTED_COLUMNS } from './encrypted-columns.js';

describe('ENCRYPTED_COLUMNS', () => {
  let ds: DataSource;
  beforeAll(async () => {
    ds = await new DataSource({ type: 'better-sqlite3', database: ':memory:', entities: ENTITIES, synchronize: false }).initialize();
  });
  afterAll(async () => {
    await ds?.destroy();
  });

  it('lists every `*_enc` column of every entity, and nothing else (rekey would forget a missing one)', () => {
    const fromEntities = ds.entityMetadatas.flatMap((m) => m.columns.filter((c) => c.databaseName.endsWith('_enc')).map((c) => `${m.tableName}.${c.databaseName}`));
    const fromTable = ENCRYPTED_COLUMNS.flatMap((t) => t.columns.map((c) => `${t.table}.${c}`));
    expect(fromEntities.length).toBeGreaterThan(0);
    expect([...fromTable].sort()).toEqual([...fromEntities].sort());
  });

  it("names each table's primary key as the id of the additional data", () => {
    for (const t of ENCRYPTED_COLUMNS) {
      const meta = ds.entityMetadatas.find((m) => m.tableName === t.table)!;
      expect(meta.primaryColumns.map((c) => c.databaseName), t.table).toEqual([t.id]);
    }
  });
});
