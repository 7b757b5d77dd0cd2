import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify } from 'jose';
import { createHash } from 'node:crypto';

export const DPOP_ALGS = ['ES256', 'EdDSA'];
/** How far a proof's `iat` may be from now (RFC 9449 §11.1 leaves it to the server). */
const IAT_WINDOW_S = 60;

/** Proof `jti`s seen within the window: a replayed proof is refused (RFC 9449 §11.1). One per app object. */
export class ReplayCache {
  private readonly seen = new Map<string, number>();

  /** True when `jti` is new (and remembers it until `expiresAt`). */
  add(jti: string, expiresAt: number): boolean {
    const now = Date.now();
    if (this.seen.size > 10_000) for (const [k, at] of this.seen) if (at < now) this.seen.delete(k);
    const at = this.seen.get(jti);
    if (at !== undefined && at >= now) return false;
    this.seen.set(jti, expiresAt);
    return true;
  }
}

/**
 * Checks an RFC 9449 proof presented with a bound access token (§4.3, §7.1): signed by the key
 * in its header (`typ: dpop+jwt`), that key's thumbprint = the token's `cnf.jkt`, `htm`/`htu` =
 * this request, `ath` = hash of the token, a recent `iat` and an unused `jti`.
 * Returns a reason when it fails, else undefined.
 */
export async function dpopProblem(proof: string | undefined, req: { method: string; url: string; accessToken: string; jkt: string }, replay: ReplayCache): Promise<string | undefined> {
  if (!proof) return 'a DPoP-bound token needs a DPoP proof';
  let payload: Record<string, unknown>;
  let jwk: Record<string, unknown>;
  try {
    const r = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: DPOP_ALGS });
    payload = r.payload;
    jwk = r.protectedHeader.jwk as Record<string, unknown>;
  } catch {
    return 'the DPoP proof does not verify';
  }
  // §4.3 check 12: the proof's key is the one the token is bound to
  if ((await calculateJwkThumbprint(jwk)) !== req.jkt) return 'the DPoP proof is signed by another key';
  if (payload.htm !== req.method.toUpperCase()) return 'the DPoP proof is for another method';
  const u = new URL(req.url);
  if (payload.htu !== `${u.origin}${u.pathname}`) return 'the DPoP proof is for another URL';
  if (payload.ath !== createHash('sha256').update(req.accessToken).digest('base64url')) return 'the DPoP proof is for another token';
  const iat = typeof payload.iat === 'number' ? payload.iat : NaN;
  if (!(Math.abs(Date.now() / 1000 - iat) <= IAT_WINDOW_S)) return 'the DPoP proof is stale';
  if (typeof payload.jti !== 'string' || !replay.add(payload.jti, (iat + IAT_WINDOW_S) * 1000 + 1000)) return 'the DPoP proof was used before';
  return undefined;
}

export function headerOf(headers: Record<string, string | string[] | undefined> | Headers, name: string): string | undefined {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const v = headers[name] ?? headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
