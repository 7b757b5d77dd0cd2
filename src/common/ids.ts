import { randomBytes } from 'node:crypto';

export const ID_PREFIX = {
  app: 'app_',
  apiKey: 'key_',
  user: 'usr_',
  agent: 'agt_',
  factor: 'fac_',
  stepUp: 'stp_',
  task: 'tsk_',
  event: 'evt_',
  connection: 'con_',
  enrollment: 'enr_',
  userConnection: 'ucn_',
  signInLink: 'sil_',
  session: 'ses_',
  pushSubscription: 'psb_',
} as const;

export type IdKind = keyof typeof ID_PREFIX;

const BODY = /^[A-Za-z0-9_-]{22}$/;

/** A new opaque id: the type prefix and 128 random bits, base64url. */
export function newId(kind: IdKind): string {
  return ID_PREFIX[kind] + randomBytes(16).toString('base64url');
}

/** True when `value` looks like an id of this kind; anything else is answered 404 without a query. */
export function isId(kind: IdKind, value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const prefix = ID_PREFIX[kind];
  return value.startsWith(prefix) && BODY.test(value.slice(prefix.length));
}
