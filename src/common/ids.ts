import { randomFillSync, randomInt } from 'node:crypto';

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

const ID_BYTES = 16;
/**
 * Random bytes drawn from the CSPRNG 256 ids at a time, each slice handed out once (as Node's own
 * randomUUID caches its entropy): one `randomBytes(16)` call costs about 5 µs here, a slice 0.15 µs,
 * and every audit row and outbox event takes an id on the hot paths.
 */
const pool = Buffer.alloc(ID_BYTES * 256);
let next = pool.length;

/** `bytes` (at most ID_BYTES) from the pool, each handed out once. */
function randomSlice(bytes: number): string {
  if (next + bytes > pool.length) {
    randomFillSync(pool);
    next = 0;
  }
  const text = pool.toString('base64url', next, next + bytes);
  next += bytes;
  return text;
}

/** A new opaque id: the type prefix and 128 random bits, base64url. */
export function newId(kind: IdKind): string {
  return ID_PREFIX[kind] + randomSlice(ID_BYTES);
}

/** base64url's 64 characters in ascending code order: numbers written in these digits sort as text (byte order) in numeric order. */
const SORTABLE_DIGITS = '-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz';

/**
 * Event ids of one millisecond are numbered in the order they are made, up to 999; past that, their
 * order within it is random. The number is 3 decimal digits: digits sort alike under the usual
 * collations (a database whose text collation is not bytewise may compare letters without case,
 * and skip `-` and `_`; a numeric collation would not keep it). Each millisecond's numbers start
 * at a random value below 500, so an id does not tell how many events came before it in its
 * millisecond (other apps' too).
 */
const LAST_NUMBER = 999;
const FIRST_NUMBERS = 500;
/** The millisecond of this process's last event id, and that id's number within it. */
let lastMs = -1;
let numberInMs = 0;

/**
 * A new event id (audit rows, outbox events), ordered by creation time: the milliseconds since
 * 1970 in 8 sortable base64url digits (48 bits), the id's number within that millisecond in this
 * process (3 decimal digits), then 66 random bits; same form as `newId`. Callers pass the time
 * they write beside the id (`at`, `created_at`), so that (time, id) order is the order of making.
 * - Hot tables take these ids as their key: ids made close in time sort close together, so a
 *   batch of new rows lands in a few index pages instead of one page per row (random ids made a
 *   SQLite commit of 500 audit rows write hundreds of pages of the primary key index alone).
 * - Events are sealed and published in (time, id) order. The events one transaction writes in one
 *   millisecond (an agent's revocation, then its step-ups' cancellations) therefore keep the
 *   order they were written in, in the audit chain and in the event stream.
 */
export function newEventId(now = Date.now()): string {
  const ms = Math.floor(now);
  numberInMs = ms === lastMs ? Math.min(numberInMs + 1, LAST_NUMBER) : randomInt(FIRST_NUMBERS);
  lastMs = ms;
  let time = '';
  for (let i = 0, t = ms; i < 8; i++, t = Math.floor(t / 64)) time = SORTABLE_DIGITS[t % 64] + time;
  // 9 random bytes are 12 base64url characters: 11 are kept.
  return ID_PREFIX.event + time + String(numberInMs).padStart(3, '0') + randomSlice(9).slice(0, 11);
}

/** True when `value` looks like an id of this kind; anything else is answered 404 without a query. */
export function isId(kind: IdKind, value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const prefix = ID_PREFIX[kind];
  return value.startsWith(prefix) && BODY.test(value.slice(prefix.length));
}
