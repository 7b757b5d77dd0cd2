/**
 * Every column that holds a ciphertext of `Cipher`, in one table: `npm run rekey` walks it to
 * re-encrypt everything under the current master key. Each value is sealed with
 * `{ table, column, id: <the row's id column> }` as additional data, so `id` names the primary-key
 * column whose value the services pass as `CipherContext.id`.
 *
 * A new encrypted column goes here too: `encrypted-columns.spec.ts` compares this table with the
 * entities' `*_enc` columns and fails if one is missing, so it cannot be forgotten silently.
 */
export interface EncryptedTable {
  table: string;
  /** The primary-key column: its value is the `id` of the additional data. */
  id: string;
  columns: readonly string[];
}

export const ENCRYPTED_COLUMNS: readonly EncryptedTable[] = [
  { table: 'apps', id: 'id', columns: ['webhook_secret_enc', 'webhook_secret_prev_enc'] },
  { table: 'signing_keys', id: 'kid', columns: ['private_jwk_enc'] },
  { table: 'totp_secrets', id: 'factor_id', columns: ['secret_enc'] },
  { table: 'step_ups', id: 'id', columns: ['approval_token_enc'] },
  { table: 'tasks', id: 'id', columns: ['credential_enc'] },
  { table: 'connections', id: 'id', columns: ['client_secret_enc'] },
  { table: 'user_connections', id: 'id', columns: ['refresh_token_enc', 'access_token_enc'] },
];
