import { randomUUID } from 'node:crypto';
import { createHash } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { PUBLIC_URL } from './app.js';

/** A task's worker: the key pair its DPoP proofs are signed with. */
export interface Worker {
  privateKey: CryptoKey;
  jwk: JWK;
}

export async function worker(alg: 'ES256' | 'EdDSA' = 'ES256'): Promise<Worker> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, jwk: await exportJWK(publicKey) };
}

/** An RFC 9449 proof by the worker for `htm` on `path`. */
export function proof(w: Worker, htm: string, path: string, extra: Record<string, unknown> = {}, header: Record<string, unknown> = {}) {
  const alg = w.jwk.kty === 'OKP' ? 'EdDSA' : 'ES256';
  return new SignJWT({ jti: randomUUID(), htm, htu: `${PUBLIC_URL}${path}`, iat: Math.floor(Date.now() / 1000), ...extra })
    .setProtectedHeader({ alg, typ: 'dpop+jwt', jwk: w.jwk, ...header })
    .sign(w.privateKey);
}

/** Headers that present a DPoP-bound access token on `method path` (with the `ath` of RFC 9449 §4.3). */
export async function dpopAuth(w: Worker, token: string, method: string, path: string): Promise<Record<string, string>> {
  const ath = createHash('sha256').update(token).digest('base64url');
  return { Authorization: `DPoP ${token}`, DPoP: await proof(w, method, path, { ath }) };
}
