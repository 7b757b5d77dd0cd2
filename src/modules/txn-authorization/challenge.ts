import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { canonicalJson } from '../../common/canonical-json.js';
import { parseStrictJson, StrictJsonError } from '../../common/json/strict-json.js';
import { SCOPE_PATTERN } from '../../common/scopes.js';
import { TXN_CHALLENGE_ALGS } from '../apps/challenge-keys.js';

/** draft-rosomakho-oauth-txn-challenge-00 §4.2.1. */
export const TXN_CHALLENGE_TYP = 'txn-authz-challenge+jwt';
/** The longest life a challenge may claim (`exp` - `iat`), seconds. */
export const MAX_CHALLENGE_LIFETIME_S = 600;
/** Clock skew tolerated on `iat` (the app's clock against ours); never on `exp`. */
export const CHALLENGE_IAT_SKEW_S = 30;
/** RFC 9396 type of the one authorization detail a challenge carries (API.md, TAC). */
export const MFA_PROXY_ACTION = 'mfa_proxy_action';

const MAX_CHALLENGE_CHARS = 16 * 1024;
const MAX_ID = 255;
const MAX_REASON = 1024;
const MAX_RESOURCE = 512;
const DETAILS_MAX_BYTES = 8 * 1024;
/** As request bodies (API.md v1.1): `details` nests at most 32 deep (the payload adds two levels). */
const MAX_DEPTH = 32 + 3;
const CONTROL = /[\u0000-\u001f\u007f]/;
/** Headers that name or carry a key: the key is the app's registered one, never the challenge's (RFC 8725 §3.10). */
const KEY_HEADERS = ['jku', 'jwk', 'x5u', 'x5c'];
const DETAIL_MEMBERS = new Set(['type', 'action', 'resource', 'details']);

/** A refused challenge: RFC 6749 `invalid_request`, or `access_denied` for an action beyond the agent's authority. */
export class ChallengeRefused extends Error {
  constructor(
    readonly error: 'invalid_request' | 'access_denied',
    readonly description: string,
  ) {
    super(description);
    this.name = 'ChallengeRefused';
  }
}

/** The one authorization detail of a challenge, as granted: only the members the human is shown. */
export interface MfaProxyAction {
  type: typeof MFA_PROXY_ACTION;
  action: string;
  resource?: string;
  details?: Record<string, unknown>;
}

export interface VerifiedChallenge {
  /** The app whose `resource` is the challenge's `iss`. */
  appId: string;
  /** The app's resource: `iss` of the challenge, `aud` of the token. */
  resource: string;
  jti: string;
  txn: string;
  reason: string;
  iat: number;
  exp: number;
  actor: string;
  authorizationDetail: MfaProxyAction;
}

export interface ChallengeApp {
  id: string;
  resource: string | null;
  challengeJwks: JSONWebKeySet | null;
}

export interface ChallengeCheck {
  /** The app registered with this resource (the unverified `iss`), or null. */
  appByResource(resource: string): Promise<ChallengeApp | null>;
  /** This service's issuer: the challenge's `aud`. */
  issuer: string;
  nowSeconds: number;
  /** The calling agent: the challenge's `act.sub`. */
  agentId: string;
}

const refuse = (description: string) => new ChallengeRefused('invalid_request', description);
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const text = (v: unknown, max: number) => typeof v === 'string' && v.length >= 1 && v.length <= max && !CONTROL.test(v);

/**
 * Verifies a transaction authorization challenge (draft-rosomakho-oauth-txn-challenge-00 §4.6) for
 * the calling agent: every claim used for the decision or shown to the human comes from a
 * challenge whose signature verified with a key the app registered. Throws ChallengeRefused.
 * The `jti` is not checked for reuse here (the caller claims it, once, in the database).
 */
export async function verifyChallengeOrThrow(jws: string, check: ChallengeCheck): Promise<VerifiedChallenge> {
  // A compact JWS of bounded size (RFC 7515 §7.1): no JSON serialization, no JWE.
  if (typeof jws !== 'string' || jws.length > MAX_CHALLENGE_CHARS || jws.split('.').length !== 3) throw refuse('transaction_challenge must be a compact JWS');
  let header: ReturnType<typeof decodeProtectedHeader>;
  let unverified: ReturnType<typeof decodeJwt>;
  try {
    header = decodeProtectedHeader(jws);
    unverified = decodeJwt(jws);
  } catch {
    throw refuse('transaction_challenge is not a readable JWT');
  }
  // §4.2.1: typ is txn-authz-challenge+jwt.
  if (header.typ !== TXN_CHALLENGE_TYP) throw refuse(`the challenge's typ must be ${TXN_CHALLENGE_TYP}`);
  // §4.2.1: an asymmetric signature algorithm, never none, never a MAC.
  if (typeof header.alg !== 'string' || !(TXN_CHALLENGE_ALGS as readonly string[]).includes(header.alg)) throw refuse(`the challenge's alg must be one of ${TXN_CHALLENGE_ALGS.join(', ')}`);
  // RFC 8725 §3.10: no key taken from the challenge itself, nor a place to fetch one.
  if (KEY_HEADERS.some((h) => h in header)) throw refuse('the challenge must not carry jku, jwk, x5u or x5c headers');
  if (header.crit !== undefined) throw refuse('the challenge must not carry crit headers');
  // §4.6: issued by a protected resource recognised here (a registered app `resource`) that has challenge keys.
  if (typeof unverified.iss !== 'string' || unverified.iss.length > MAX_RESOURCE) throw refuse('the challenge has no valid iss');
  const app = await check.appByResource(unverified.iss);
  if (!app || app.resource !== unverified.iss || !app.challengeJwks?.keys?.length) throw refuse("the challenge's iss is not a registered resource");

  let payload: Record<string, unknown>;
  try {
    // §4.3: the signature verifies with the app's registered keys (kid selects one), iss and aud
    // match, and the time claims are present; exp is checked without tolerance below.
    ({ payload } = await jwtVerify(jws, createLocalJWKSet(app.challengeJwks), {
      algorithms: [...TXN_CHALLENGE_ALGS],
      typ: TXN_CHALLENGE_TYP,
      issuer: app.resource,
      audience: check.issuer,
      currentDate: new Date(check.nowSeconds * 1000),
      clockTolerance: CHALLENGE_IAT_SKEW_S,
      requiredClaims: ['iat', 'exp', 'jti'],
    }));
  } catch (err) {
    const code = (err as { code?: string }).code;
    const claim = (err as { claim?: string }).claim;
    if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && claim === 'aud') throw refuse("the challenge's aud is not this authorization server");
    if (code === 'ERR_JWT_EXPIRED') throw refuse('the challenge has expired');
    throw refuse('the challenge signature or claims are not valid');
  }
  // The signed payload read once more as strict JSON (no duplicate keys, bounded depth): what the
  // human is shown has one meaning only.
  try {
    payload = parseStrictJson(Buffer.from(jws.split('.')[1], 'base64url').toString('utf8'), { maxDepth: MAX_DEPTH }) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof StrictJsonError) throw refuse('the challenge payload is not strict JSON');
    throw err;
  }
  const { iat, exp, jti, txn, reason, act } = payload as Record<string, unknown>;
  // §4.2.2 (RFC 7519 §4.1.4, §4.1.6): numeric times; a challenge lives at most 600 s and has not expired.
  if (typeof iat !== 'number' || typeof exp !== 'number' || !Number.isFinite(iat) || !Number.isFinite(exp)) throw refuse('the challenge needs numeric iat and exp');
  if (exp <= iat || exp - iat > MAX_CHALLENGE_LIFETIME_S) throw refuse(`the challenge's exp must be after iat, by at most ${MAX_CHALLENGE_LIFETIME_S} s`);
  if (iat > check.nowSeconds + CHALLENGE_IAT_SKEW_S) throw refuse("the challenge's iat is in the future");
  if (exp <= check.nowSeconds) throw refuse('the challenge has expired');
  // §4.2.2: jti identifies the challenge (single use); txn the transaction (the token carries it).
  if (!text(jti, MAX_ID)) throw refuse(`the challenge's jti must be a string of 1..${MAX_ID} characters`);
  if (!text(txn, MAX_ID)) throw refuse(`the challenge's txn must be a string of 1..${MAX_ID} characters`);
  // §4.2.2: reason is shown to the human; bounded, and never control characters.
  if (typeof reason !== 'string' || reason.length < 1 || reason.length > MAX_REASON || CONTROL.test(reason)) throw refuse(`the challenge's reason must be text of 1..${MAX_REASON} characters`);
  // §4.6 (requester context): act.sub names the calling agent, and no other.
  if (!isRecord(act) || typeof act.sub !== 'string') throw refuse('the challenge must name the agent in act.sub');
  if (act.sub !== check.agentId) throw refuse('the challenge was issued for another agent');
  const authorizationDetail = mfaProxyActionOrThrow(payload.authorization_details);
  return { appId: app.id, resource: app.resource, jti: jti as string, txn: txn as string, reason, iat, exp, actor: act.sub, authorizationDetail };
}

/**
 * §4.6 "the requested operation is sufficiently described": exactly one RFC 9396 detail of type
 * `mfa_proxy_action` with an action (a scope string), optional resource and details (an object of
 * at most 8 KiB as canonical JSON), and nothing the human would not be shown.
 */
function mfaProxyActionOrThrow(value: unknown): MfaProxyAction {
  if (!Array.isArray(value) || value.length !== 1 || !isRecord(value[0])) throw refuse(`authorization_details must hold exactly one ${MFA_PROXY_ACTION}`);
  const d = value[0];
  if (d.type !== MFA_PROXY_ACTION) throw refuse(`authorization_details must hold exactly one ${MFA_PROXY_ACTION}`);
  const unknown = Object.keys(d).find((k) => !DETAIL_MEMBERS.has(k));
  if (unknown !== undefined) throw refuse(`the ${MFA_PROXY_ACTION} has members other than type, action, resource and details`);
  if (typeof d.action !== 'string' || !SCOPE_PATTERN.test(d.action)) throw refuse('the action must be a scope string ([a-z0-9_.:-]{1,64}, optional * suffix)');
  if (d.resource !== undefined && !text(d.resource, MAX_RESOURCE)) throw refuse(`the resource must be text of 1..${MAX_RESOURCE} characters`);
  if (d.details !== undefined && (!isRecord(d.details) || Buffer.byteLength(canonicalJson(d.details)) > DETAILS_MAX_BYTES)) throw refuse('details must be an object of at most 8 KiB as JSON');
  return {
    type: MFA_PROXY_ACTION,
    action: d.action,
    ...(d.resource !== undefined ? { resource: d.resource as string } : {}),
    ...(d.details !== undefined ? { details: d.details as Record<string, unknown> } : {}),
  };
}
