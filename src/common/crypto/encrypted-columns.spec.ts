import 'reflect-metadata';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENTITIES } from '../../database/entities.js';
import { SEALED_FIELDS } from '../../modules/events/outbox-payload.js';
import { ENCRYPTED_COLUMNS, encryptedContexts } from './encrypted-columns.js';

const SRC = join(import.meta.dirname, '../..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.spec.ts') ? [join(dir, e.name)] : [],
  );
}

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
    const fromTable = ENCRYPTED_COLUMNS.flatMap((t) => (t.kind === 'columns' ? t.columns.map((c) => `${t.table}.${c}`) : []));
    expect(fromEntities.length).toBeGreaterThan(0);
    expect([...fromTable].sort()).toEqual([...fromEntities].sort());
  });

  it('covers every cipher context written in the source: a value sealed elsewhere would stay under the old master key', () => {
    // `{ table: 'x', column: 'y'` (or a computed column) is how the services build a CipherContext.
    const contexts = sourceFiles(SRC).flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(/table:\s*'([a-z_]+)',\s*column:\s*(?:'([a-z_]+)'|`([^`]*)`)/g)].map((m) => ({
        where: relative(SRC, file),
        table: m[1],
        column: m[2] ?? `\`${m[3]}\``,
      })),
    );
    expect(contexts.length).toBeGreaterThan(5);
    const listed = encryptedContexts();
    // A computed column (`payload.data.${field}`) is covered by the listed paths under its fixed prefix.
    const covered = (c: { table: string; column: string }) =>
      c.column.startsWith('`') ? listed.some((l) => l.startsWith(`${c.table}.${c.column.slice(1).split('${')[0]}`)) : listed.includes(`${c.table}.${c.column}`);
    const unlisted = contexts.filter((c) => !covered(c)).map((c) => `${c.where}: ${c.table}.${c.column}`);
    expect(unlisted, 'add them to ENCRYPTED_COLUMNS (and teach rekey their shape) or `npm run rekey` leaves them under the old key').toEqual([]);
  });

  it("names each table's primary key as the id of the additional data, and existing columns", () => {
    for (const t of ENCRYPTED_COLUMNS) {
      const meta = ds.entityMetadatas.find((m) => m.tableName === t.table);
      expect(meta, t.table).toBeDefined();
      expect(meta!.primaryColumns.map((c) => c.databaseName), t.table).toEqual([t.id]);
      for (const column of t.kind === 'columns' ? t.columns : [t.column]) expect(meta!.columns.map((c) => c.databaseName), t.table).toContain(column);
    }
  });

  it('covers every field the outbox seals inside an event payload (CIBA ping body and bearer too)', () => {
    for (const field of SEALED_FIELDS) expect(encryptedContexts(), field).toContain(`outbox.payload.data.${field}`);
  });
});
