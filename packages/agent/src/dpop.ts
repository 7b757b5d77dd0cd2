import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import { createHash, randomUUID } from 'node:crypto';

/** The key pair of RFC 9449 proofs: the holder's private key and the public JWK put in each proof's header. */
export class DpopKey {
  private constructor(
    private readonly privateKey: CryptoKey | Uint8Array,
    readonly publicJwk: JWK,
    readonly alg: string,
  ) {}

  /** A fresh, non-extractable ES256 key pair, kept in memory for this process. */
  static async generate(): Promise<DpopKey> {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    return new DpopKey(privateKey, await exportJWK(publicKey), 'ES256');
  }

  /** A key given as a private JWK (EC P-256 → ES256, OKP Ed25519 → EdDSA, unless the JWK names its `alg`). */
  static async fromPrivateJwk(jwk: JWK): Promise<DpopKey> {
    const alg = algOf(jwk);
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = jwk;
    return new DpopKey(await importJWK(jwk, alg), publicJwk, alg);
  }

  thumbprint(): Promise<string> {
    return calculateJwkThumbprint(this.publicJwk);
  }

  /**
   * A proof for one request (RFC 9449 §4.2): `htu` without query and fragment, a fresh `jti`,
   * and `ath` (§4.3) when it accompanies an access token.
   */
  proof(method: string, url: string, accessToken?: string, nonce?: string): Promise<string> {
    const u = new URL(url);
    const htu = `${u.origin}${u.pathname}`;
    return new SignJWT({
      htm: method.toUpperCase(),
      htu,
      ...(accessToken ? { ath: createHash('sha256').update(accessToken).digest('base64url') } : {}),
      ...(nonce ? { nonce } : {}),
    })
      .setProtectedHeader({ alg: this.alg, typ: 'dpop+jwt', jwk: this.publicJwk })
      .setJti(randomUUID())
      .setIssuedAt()
      .sign(this.privateKey);
  }
}

/** The JWS algorithm for a private JWK: its `alg`, else the one its key type implies. */
export function algOf(jwk: JWK): string {
  if (jwk.alg) return jwk.alg;
  if (jwk.kty === 'EC') return jwk.crv === 'P-384' ? 'ES384' : jwk.crv === 'P-521' ? 'ES512' : 'ES256';
  if (jwk.kty === 'OKP') return 'EdDSA';
  if (jwk.kty === 'RSA') return 'RS256';
  throw new TypeError(`unsupported key type ${String(jwk.kty)}`);
}
