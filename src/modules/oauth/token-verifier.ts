import type { KeyObject } from 'node:crypto';
import { decodeProtectedHeader, UnsecuredJWT, type JWTHeaderParameters, type JWTPayload } from 'jose';
import type { KeysService } from '../keys/keys.service.js';
import { SIGNING_ALG, verifyEs256Signature } from '../keys/keys.service.js';

export class TokenInvalidError extends Error {
  constructor(
    readonly reason: 'malformed' | 'invalid_signature' | 'expired' | 'wrong_audience' | 'invalid',
    message: string,
    /** The claims, when the signature was ours and valid but a claim check failed (for the audit trail). */
    readonly verifiedPayload?: JWTPayload,
  ) {
    super(message);
    this.name = 'TokenInvalidError';
  }
}

export interface VerifyOptions {
  typ: string;
  issuer: string;
  audience?: string;
  nowSeconds: number;
  /** Seconds of clock skew tolerated between our instances on nbf/iat (never on exp). */
  toleranceSeconds?: number;
}

/** Headers that name a key: we never take a key from the token itself (RFC 8725 §3.10). */
const KEY_HEADERS = ['jku', 'jwk', 'x5u', 'x5c'] as const;

const BASE64URL = /^[A-Za-z0-9_-]*$/;
// eslint-disable-next-line no-control-regex
const ASCII = /^[\x00-\x7f]*$/;

/** The header of the unsecured JWT through which jose checks the claims of a token whose signature was checked here. */
const CLAIMS_ONLY_HEADER = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url');

/**
 * Verifies a JWT we signed: algorithm pinned to ours, `typ` checked, key by `kid` from our own
 * key set only, no extension headers, `iss`, `aud`, `exp`, `nbf`, and an `iat` not in the future.
 *
 * The signature is checked by node:crypto with the cached KeyObject on the thread pool
 * (verifyEs256Signature); the claims by jose (`UnsecuredJWT.decode`, its claims-set validation
 * with the options jwtVerify would take, given the verified payload under an `alg: none` header
 * of our own, never the token's). jose's jwtVerify cost 47 to 56 µs of event-loop time per
 * token here, this 20 to 26 µs (50 verifications in flight, one 2-core machine): jose verifies
 * through WebCrypto, whose hand-off costs more than node:crypto's. token-verifier.spec.ts checks
 * the verdict is jose's jwtVerify's on every case it lists.
 */
export async function verifyOwnJwt(keys: KeysService, token: string, opts: VerifyOptions): Promise<{ payload: JWTPayload; header: JWTHeaderParameters }> {
  const jws = await ownJws(keys, token, opts);
  if (!(await verifyEs256Signature(jws.signingInput, jws.signature, jws.key))) throw new TokenInvalidError('invalid_signature', 'signature invalid');
  return claimsOf(jws, opts);
}

/**
 * Everything verifyOwnJwt checks but the signature: for a token whose authenticity the caller
 * establishes otherwise, before it acts on anything the claims say (the MFA-proxy token's hot path
 * consumes only the token handed out with the same hash: MfaProxyTokensService). Its `kid` must
 * still name one of our keys, so a token of a key that is gone is refused as by verifyOwnJwt.
 */
export async function readOwnJwt(keys: KeysService, token: string, opts: VerifyOptions): Promise<{ payload: JWTPayload; header: JWTHeaderParameters }> {
  const jws = await ownJws(keys, token, opts);
  try {
    return claimsOf(jws, opts);
  } catch (err) {
    // No signature was checked: a refusal carries no payload (verifiedPayload is for signed claims only).
    if (err instanceof TokenInvalidError) throw new TokenInvalidError(err.reason, err.message);
    throw err;
  }
}

interface OwnJws {
  header: JWTHeaderParameters;
  key: KeyObject;
  signingInput: string;
  signature: Buffer;
}

/** The compact JWS's form and header: ours (algorithm, `typ`, a `kid` of our key set, no key-bearing or extension header), canonical base64url. */
async function ownJws(keys: KeysService, token: string, opts: VerifyOptions): Promise<OwnJws> {
  if (typeof token !== 'string' || token.length > 8192 || token.split('.').length !== 3) {
    throw new TokenInvalidError('malformed', 'not a compact JWS');
  }
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new TokenInvalidError('malformed', 'unreadable header');
  }
  if (header.alg !== SIGNING_ALG) throw new TokenInvalidError('invalid_signature', 'algorithm not accepted');
  if (header.typ !== opts.typ) throw new TokenInvalidError('malformed', 'wrong token type');
  if (KEY_HEADERS.some((h) => h in header)) throw new TokenInvalidError('invalid_signature', 'key-bearing headers are not accepted');
  // RFC 7797: we never sign an unencoded payload, nor say that we do not.
  if ('b64' in header) throw new TokenInvalidError('malformed', 'b64 header not accepted');
  // RFC 7515 §4.1.11: we sign with no extension, so one named critical is not understood (jose: not supported).
  if ('crit' in header) throw new TokenInvalidError('invalid', 'extension headers are not accepted');
  if (typeof header.kid !== 'string') throw new TokenInvalidError('invalid_signature', 'no kid');
  const key = await keys.publicKey(header.kid);
  if (!key) throw new TokenInvalidError('invalid_signature', 'unknown kid');
  const lastDot = token.lastIndexOf('.');
  const signingInput = token.slice(0, lastDot);
  // RFC 7515 §5.2: the signing input is ASCII (the header decoded, so only the payload can fail).
  if (!ASCII.test(signingInput)) throw new TokenInvalidError('malformed', 'payload not ASCII');
  // jose reads a signature whose last character carries padding bits as the same signature: any
  // holder could re-encode a token without the key. Only the canonical base64url is taken. (ECDSA
  // itself lets (r, n − s) verify too, so a token still has two valid strings: the MFA-proxy
  // token's hot path admits by its hash only the string handed out, the other is verified by its
  // signature, and use and revocation go by jti.)
  const encodedSignature = token.slice(lastDot + 1);
  if (!BASE64URL.test(encodedSignature)) throw new TokenInvalidError('malformed', 'signature not base64url');
  const signature = Buffer.from(encodedSignature, 'base64url');
  if (signature.toString('base64url') !== encodedSignature) throw new TokenInvalidError('invalid_signature', 'signature not canonical');
  return { header: header as JWTHeaderParameters, key, signingInput, signature };
}

/** The claims of a token of ours, checked by jose as jwtVerify would (see verifyOwnJwt). */
function claimsOf(jws: OwnJws, opts: VerifyOptions): { payload: JWTPayload; header: JWTHeaderParameters } {
  const { signingInput, header } = jws;
  const tolerance = opts.toleranceSeconds ?? 5;
  try {
    // The caller established that this payload is ours: jose checks its claims as jwtVerify would.
    const { payload } = UnsecuredJWT.decode(`${CLAIMS_ONLY_HEADER}.${signingInput.slice(signingInput.indexOf('.') + 1)}.`, {
      issuer: opts.issuer,
      audience: opts.audience,
      currentDate: new Date(opts.nowSeconds * 1000),
      clockTolerance: tolerance,
      requiredClaims: ['exp', 'iat', 'jti', 'sub'],
    });
    const iat = payload.iat!;
    if (iat > opts.nowSeconds + tolerance) throw new TokenInvalidError('invalid', 'iat is in the future', payload);
    // We issued it on our own clock: no grace after exp (a sudo grant ends exactly at sudoExpiresAt).
    if (payload.exp! <= opts.nowSeconds) throw new TokenInvalidError('expired', 'token expired', payload);
    return { payload, header };
  } catch (err) {
    if (err instanceof TokenInvalidError) throw err;
    const code = (err as { code?: string }).code;
    // jose checks claims only after the signature verified: their errors carry a genuine payload.
    const verified = (err as { payload?: JWTPayload }).payload;
    if (code === 'ERR_JWT_EXPIRED') throw new TokenInvalidError('expired', 'token expired', verified);
    if (code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') throw new TokenInvalidError('invalid_signature', 'signature invalid');
    if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && (err as { claim?: string }).claim === 'aud') {
      throw new TokenInvalidError('wrong_audience', 'wrong audience', verified);
    }
    if (code === 'ERR_JWS_INVALID' || code === 'ERR_JWT_INVALID') throw new TokenInvalidError('malformed', 'malformed token');
    throw new TokenInvalidError('invalid', 'token rejected', code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' ? verified : undefined);
  }
}
