import { createHash } from 'node:crypto';
import { calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, jwtVerify, type JWK } from 'jose';
import type { ReplayCache } from '../../common/cache/replay-cache.js';

/** Asymmetric algorithms accepted for DPoP proofs (RFC 9449 §4.2: no `none`, no MAC). */
export const DPOP_ALGS = ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'RS256', 'PS256'];

export class DpopError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DpopError';
  }
}

export interface DpopCheck {
  /** The request's method and URL (RFC 9449 §4.3, checks 9 and 10). */
  htm: string;
  htu: string;
  nowSeconds: number;
  iatWindowSeconds: number;
  replay: ReplayCache;
  /** When the proof accompanies an access token: its `ath` must match (§4.3 check 11). */
  accessToken?: string;
}

export interface DpopResult {
  jkt: string;
  jwk: JWK;
}

/** `htu` is compared without query and fragment (RFC 9449 §4.3 check 10). */
function normalizeHtu(value: string): string | null {
  try {
    const u = new URL(value);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return null;
  }
}

/** Verifies a DPoP proof JWT (RFC 9449 §4.3) and returns the thumbprint of its key. */
export async function verifyDpopProof(proof: string | string[] | undefined, check: DpopCheck): Promise<DpopResult> {
  // §4.3 check 1: exactly one DPoP header.
  if (typeof proof !== 'string' || proof.length === 0) throw new DpopError('a single DPoP proof header is required');
  if (proof.length > 8192) throw new DpopError('DPoP proof too large');
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(proof);
  } catch {
    throw new DpopError('DPoP proof is not a JWS');
  }
  // §4.3 check 4: typ is dpop+jwt.
  if (header.typ !== 'dpop+jwt') throw new DpopError('DPoP proof typ must be dpop+jwt');
  // §4.3 check 5: an asymmetric algorithm we support, never none or a MAC.
  if (typeof header.alg !== 'string' || !DPOP_ALGS.includes(header.alg)) throw new DpopError('DPoP proof alg not allowed');
  // §4.3 check 6: the jwk header is a public key.
  const jwk = header.jwk as JWK | undefined;
  if (!jwk || typeof jwk !== 'object') throw new DpopError('DPoP proof has no jwk header');
  if ('d' in jwk || 'p' in jwk || 'q' in jwk || 'k' in jwk || jwk.kty === 'oct') throw new DpopError('DPoP proof jwk must be a public key');

  let payload: Record<string, unknown>;
  try {
    // §4.3 check 7: signature verifies with the embedded key.
    ({ payload } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: DPOP_ALGS }));
  } catch {
    throw new DpopError('DPoP proof signature invalid');
  }
  // §4.2: jti, htm, htu, iat are required.
  const { jti, htm, htu, iat, ath } = payload;
  if (typeof jti !== 'string' || jti.length < 8 || jti.length > 256) throw new DpopError('DPoP proof jti missing or invalid');
  if (htm !== check.htm) throw new DpopError('DPoP proof htm does not match the request method');
  if (typeof htu !== 'string' || normalizeHtu(htu) !== normalizeHtu(check.htu)) throw new DpopError('DPoP proof htu does not match the request URL');
  // §4.3 check 11 / §11.1: iat within an acceptable window.
  if (typeof iat !== 'number' || Math.abs(check.nowSeconds - iat) > check.iatWindowSeconds) throw new DpopError('DPoP proof iat outside the accepted window');
  // §4.3 check 12: ath is the hash of the presented access token.
  if (check.accessToken !== undefined) {
    const expected = createHash('sha256').update(check.accessToken).digest('base64url');
    if (ath !== expected) throw new DpopError('DPoP proof ath does not match the access token');
  }
  const jkt = await calculateJwkThumbprint(jwk, 'sha256');
  // §11.1: a proof is used once. Keyed by key thumbprint and jti; kept for the whole window.
  if (!(await check.replay.claim(`dpop:${jkt}:${jti}`, check.iatWindowSeconds * 2))) throw new DpopError('DPoP proof jti already used');
  return { jkt, jwk };
}
