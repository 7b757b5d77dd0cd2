/**
 * The positional parameters of one PostgreSQL statement whose parts come from several modules
 * (each table's SQL from the module that owns it): each part adds its values and gets their
 * placeholders, so no part has to know the others' numbering.
 */
export class PgParams {
  readonly values: unknown[] = [];

  /** The placeholder (`$n::type`) of `value`, added after those already there. */
  add(value: unknown, type: string): string {
    this.values.push(value);
    return `$${this.values.length}::${type}`;
  }
}

/** A constant of the code (an event type, an outcome) as an SQL string literal; never for input. */
export const sqlLiteral = (value: string): string => `'${value.replace(/'/g, "''")}'`;
