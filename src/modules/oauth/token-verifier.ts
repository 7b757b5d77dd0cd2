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
  // itself lets (r, n − s) verify too, so a token still has two valid strings; nothing here keys
  // on the string for anything but a cache: use and revocation go by jti.)
  const encodedSignature = token.slice(lastDot + 1);
  if (!BASE64URL.test(encodedSignature)) throw new TokenInvalidError('malformed', 'signature not base64url');
  const signature = Buffer.from(encodedSignature, 'base64url');
  if (signature.toString('base64url') !== encodedSignature) throw new TokenInvalidError('invalid_signature', 'signature not canonical');
  if (!(await verifyEs256Signature(signingInput, signature, key))) throw new TokenInvalidError('invalid_signature', 'signature invalid');
  const tolerance = opts.toleranceSeconds ?? 5;
  try {
    // The signature above covers this payload: jose checks its claims as jwtVerify would.
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
    return { payload, header: header as JWTHeaderParameters };
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
