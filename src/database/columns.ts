import { Column, type ColumnOptions } from 'typeorm';

/**
 * Times are stored as epoch milliseconds in a `bigint` column: the same migration, the same
 * comparisons (`expires_at > :now`) and the same values on SQLite and PostgreSQL, no time zones.
 * node-postgres returns bigint as a string; the transformer turns it back into a number.
 */
const epochMs = {
  to: (v: number | null | undefined) => v,
  from: (v: string | number | null) => (v === null || v === undefined ? null : Number(v)),
};

export const TimeColumn = (name: string, options: Omit<ColumnOptions, 'type' | 'name' | 'transformer'> = {}) =>
  Column({ type: 'bigint', name, transformer: epochMs, ...options });

/** A JSON value stored as text (portable across both databases). */
const jsonText = {
  to: (v: unknown) => (v === undefined ? undefined : v === null ? null : JSON.stringify(v)),
  from: (v: string | null) => (v === null || v === undefined ? null : JSON.parse(v)),
};

export const JsonColumn = (name: string, options: Omit<ColumnOptions, 'type' | 'name' | 'transformer'> = {}) =>
  Column({ type: 'text', name, transformer: jsonText, ...options });
