import { importJWK, type JSONWebKeySet, type JWK } from 'jose';
import { isIP } from 'node:net';
import { PRIVATE_JWK_MEMBERS } from '../../common/crypto/jwk-members.js';
import { AppError } from '../../common/errors/app-error.js';

/**
 * JWS algorithms accepted for transaction challenges (draft-rosomakho-oauth-txn-challenge-00
 * §4.2.1: asymmetric only, never `none`, never a MAC). Also what an app advertises as
 * `txn_challenge_signing_alg_values_supported` (§4.3).
 */
export const TXN_CHALLENGE_ALGS = ['ES256', 'EdDSA', 'Ed25519', 'RS256', 'PS256'] as const;

const MAX_KEYS = 10;
const MAX_JWKS_BYTES = 16 * 1024;
const MAX_KID = 128;
/** Which algorithms each key type may sign challenges with. */
const ALGS_BY_KTY: Record<string, readonly string[]> = { EC: ['ES256'], OKP: ['EdDSA', 'Ed25519'], RSA: ['RS256', 'PS256'] };

const invalid = (detail: string) => new AppError('validation_failed', detail);
const isLoopback = (host: string) => host === 'localhost' || host.endsWith('.localhost') || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));

/**
 * Why an app's `resource` is refused, or null. It is an absolute URL (RFC 8707 §2: no fragment;
 * no query either, as RFC 9728 §1.2 resource identifiers), https, or http on loopback when
 * private targets are allowed (development), without credentials, and not on this service's own
 * origin (tokens whose audience is this service are agent tokens, never a resource's).
 */
/**
 * The spellings of one resource identifier: its WHATWG serialization, and for an empty path also
 * the origin without the slash (RFC 9728 identifiers are often written so). Two apps never hold two
 * spellings of one resource.
 */
export function resourceSpellings(url: URL): string[] {
  return url.pathname === '/' && !url.search && !url.hash ? [url.href, url.href.slice(0, -1)] : [url.href];
}

/** A percent-encoded unreserved character (RFC 3986 §2.3): equivalent to the character itself. */
const UNRESERVED_ENCODED = /%(?:[46][1-9A-F]|[57][0-9A]|3[0-9]|2D|2E|5F|7E)/i;

export function resourceProblem(raw: string, allowPrivate: boolean, issuer: string): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'resource must be an absolute URL';
  }
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && allowPrivate && isLoopback(host))) {
    return allowPrivate ? 'resource must be an https URL (or http on a loopback address)' : 'resource must be an https URL';
  }
  if (url.username || url.password) return 'resource must not carry credentials';
  if (raw.includes('#') || raw.includes('?')) return 'resource must not have a query or fragment';
  // One spelling per resource, so no second app can register an equivalent one (RFC 3986 §6.2.2:
  // case, dot segments, percent-encoded unreserved characters; and no surrounding whitespace).
  if (!resourceSpellings(url).includes(raw) || UNRESERVED_ENCODED.test(raw)) return 'resource must be written in normal form (lower-case scheme and host, no dot segments, no percent-encoded letters, digits or -._~, no whitespace)';
  if (url.origin === new URL(issuer).origin) return "resource must not be on this service's origin";
  return null;
}

/**
 * The app's challenge-signing keys, checked at the door: a JWK Set of 1..10 public keys (EC P-256,
 * Ed25519 or RSA of at least 2048 bits) for the algorithms above, each importable; a private or
 * symmetric key is refused, never stored. Only the public members are kept.
 */
export async function validateChallengeJwksOrThrow(input: unknown): Promise<JSONWebKeySet> {
  if (!input || typeof input !== 'object' || Array.isArray(input)) throw invalid('challengeJwks must be a JWK Set object');
  if (Buffer.byteLength(JSON.stringify(input)) > MAX_JWKS_BYTES) throw invalid(`challengeJwks must be at most ${MAX_JWKS_BYTES / 1024} KiB`);
  const { keys } = input as { keys?: unknown };
  if (!Array.isArray(keys) || keys.length < 1 || keys.length > MAX_KEYS) throw invalid(`challengeJwks.keys must be an array of 1..${MAX_KEYS} keys`);
  const out: JWK[] = [];
  const kids = new Set<string>();
  for (const [i, raw] of keys.entries()) {
    const at = `challengeJwks.keys[${i}]`;
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw invalid(`${at} must be a JWK object`);
    const key = raw as Record<string, unknown>;
    // A private (or shared) key in a public key set is a leak: refused, and not stored.
    if (PRIVATE_JWK_MEMBERS.some((m) => m in key) || key.kty === 'oct') throw invalid(`${at} is a private or symmetric key; send the public key only`);
    const allowed = typeof key.kty === 'string' ? ALGS_BY_KTY[key.kty] : undefined;
    if (!allowed) throw invalid(`${at}: kty must be EC, OKP or RSA`);
    if (key.kty === 'EC' && key.crv !== 'P-256') throw invalid(`${at}: an EC key must be on P-256`);
    if (key.kty === 'OKP' && key.crv !== 'Ed25519') throw invalid(`${at}: an OKP key must be Ed25519`);
    if (key.alg !== undefined && (typeof key.alg !== 'string' || !allowed.includes(key.alg))) throw invalid(`${at}: alg must be one of ${allowed.join(', ')}`);
    if (key.use !== undefined && key.use !== 'sig') throw invalid(`${at}: use must be sig`);
    if (key.kid !== undefined) {
      if (typeof key.kid !== 'string' || key.kid.length < 1 || key.kid.length > MAX_KID) throw invalid(`${at}: kid must be a string of 1..${MAX_KID} characters`);
      if (kids.has(key.kid)) throw invalid(`${at}: kid ${JSON.stringify(key.kid)} appears twice`);
      kids.add(key.kid);
    }
    for (const member of ['x', 'y', 'n', 'e'] as const) {
      if (key[member] !== undefined && typeof key[member] !== 'string') throw invalid(`${at}: ${member} must be a string`);
    }
    if (key.kty === 'RSA' && typeof key.n === 'string' && Buffer.from(key.n, 'base64url').length * 8 < 2048) throw invalid(`${at}: an RSA key must have at least 2048 bits`);
    const { kty, crv, x, y, n, e, kid, use, alg } = key as JWK;
    const pub = Object.fromEntries(Object.entries({ kty, crv, x, y, n, e, kid, use, alg }).filter(([, v]) => v !== undefined)) as JWK;
    try {
      await importJWK(pub, (alg as string | undefined) ?? allowed[0]);
    } catch {
      throw invalid(`${at} is not a valid public key`);
    }
    out.push(pub);
  }
  return { keys: out };
}
