/**
 * Every place that holds a ciphertext of `Cipher`, in one table: `npm run rekey` walks it to
 * re-encrypt everything under the current master key. Each value is sealed with
 * `{ table, column, id: <the row's id column> }` as additional data, so `id` names the primary-key
 * column whose value the services pass as `CipherContext.id`.
 *
 * A new encrypted column goes here too: `encrypted-columns.spec.ts` compares this table with the
 * entities' `*_enc` columns and with every cipher context in the source, and fails if one is
 * missing, so it cannot be forgotten silently.
 */
export type EncryptedTable = EncryptedColumns | EncryptedJsonFields;

/** Text columns that each hold one sealed value (`*_enc`); the context column is the column's name. */
export interface EncryptedColumns {
  kind: 'columns';
  table: string;
  /** The primary-key column: its value is the `id` of the additional data. */
  id: string;
  columns: readonly string[];
}

/**
 * Sealed values inside a JSON text column, each stored as `{ "$sealed": "<ciphertext>" }` at a dot
 * path; the context column is `<column>.<path>` (e.g. `payload.data.approvalUrl`).
 */
export interface EncryptedJsonFields {
  kind: 'json';
  table: string;
  id: string;
  column: string;
  paths: readonly string[];
}

export const ENCRYPTED_COLUMNS: readonly EncryptedTable[] = [
  { kind: 'columns', table: 'apps', id: 'id', columns: ['webhook_secret_enc', 'webhook_secret_prev_enc'] },
  { kind: 'columns', table: 'signing_keys', id: 'kid', columns: ['private_jwk_enc'] },
  { kind: 'columns', table: 'totp_secrets', id: 'factor_id', columns: ['secret_enc'] },
  // The approval token; CIBA/TAC: the poll handle (to answer an identical request) and the client's ping bearer token.
  { kind: 'columns', table: 'step_ups', id: 'id', columns: ['approval_token_enc', 'backchannel_enc', 'notification_token_enc'] },
  { kind: 'columns', table: 'tasks', id: 'id', columns: ['credential_enc'] },
  { kind: 'columns', table: 'connections', id: 'id', columns: ['client_secret_enc'] },
  { kind: 'columns', table: 'user_connections', id: 'id', columns: ['refresh_token_enc', 'access_token_enc'] },
  // Web Push subscriptions (issue 15): the endpoint (a capability) and the user agent's RFC 8291 keys.
  { kind: 'columns', table: 'push_subscriptions', id: 'id', columns: ['endpoint_enc', 'p256dh_enc', 'auth_enc'] },
  // The approval URL in an event's payload, sealed while the event waits in the outbox (issue 11 item 10),
  // and a CIBA ping's body (the auth_req_id) and bearer token (events/outbox-payload.ts SEALED_FIELDS).
  { kind: 'json', table: 'outbox', id: 'id', column: 'payload', paths: ['data.approvalUrl', 'data.pingBody', 'data.pingBearer'] },
];

/** `table.column` of every context this table covers (for JSON fields: `table.column.path`). */
export function encryptedContexts(tables: readonly EncryptedTable[] = ENCRYPTED_COLUMNS): string[] {
  return tables.flatMap((t) => (t.kind === 'columns' ? t.columns.map((c) => `${t.table}.${c}`) : t.paths.map((p) => `${t.table}.${t.column}.${p}`)));
}
