import { importJWK, type JSONWebKeySet, type JWK } from 'jose';
import { PRIVATE_JWK_MEMBERS } from '../../common/crypto/jwk-members.js';
import { AppError } from '../../common/errors/app-error.js';

/**
 * Algorithms an agent may sign its client assertions with (asymmetric only), by key type. A key
 * registered without `alg` may sign with any algorithm of its type (RFC 7517 §4.4: `alg` is
 * optional); `Ed25519` is the fully-specified name of EdDSA over Ed25519 (RFC 9864), which
 * oauth4webapi/openid-client send for an Ed25519 key.
 */
export const CLIENT_ASSERTION_ALGS_BY_KTY = {
  EC: ['ES256'],
  OKP: ['EdDSA', 'Ed25519'],
  RSA: ['RS256', 'PS256'],
} as const satisfies Record<string, readonly string[]>;

type AssertionKty = keyof typeof CLIENT_ASSERTION_ALGS_BY_KTY;

/** Every client-assertion algorithm (advertised in the metadata, accepted at client authentication). */
export const CLIENT_ASSERTION_ALGS: string[] = Object.values(CLIENT_ASSERTION_ALGS_BY_KTY).flat();

const isAssertionKty = (kty: unknown): kty is AssertionKty => typeof kty === 'string' && Object.hasOwn(CLIENT_ASSERTION_ALGS_BY_KTY, kty);
/** The curve each key type must use: P-256 for ES256; Ed25519 (not Ed448, nor X25519) for OKP. */
const CURVE_BY_KTY: Partial<Record<AssertionKty, string>> = { EC: 'P-256', OKP: 'Ed25519' };
/** RFC 7518 §3.3: RSA signing keys are at least 2048 bits. */
const MIN_RSA_MODULUS_BYTES = 256;
const MAX_KEYS = 10;

const invalid = (detail: string) => new AppError('validation_failed', detail);

/**
 * An agent's public keys for private_key_jwt (RFC 7523), checked at registration: public,
 * asymmetric, for signing, on the right curve, importable for every algorithm it may sign with.
 * Returns only the members that matter; `alg` is kept only when the app gave one.
 */
export async function validateAgentJwksOrThrow(jwks: JSONWebKeySet): Promise<JSONWebKeySet> {
  // `jwks` arrives exactly as parsed (@AsParsed): its shape is checked here.
  if (!Array.isArray(jwks?.keys) || jwks.keys.length < 1 || jwks.keys.length > MAX_KEYS) throw invalid(`jwks.keys must be an array of 1 to ${MAX_KEYS} public keys`);
  const keys: JWK[] = [];
  for (const [i, key] of jwks.keys.entries()) {
    if (!key || typeof key !== 'object' || Array.isArray(key)) throw invalid(`jwks.keys[${i}] must be a JWK object`);
    const kty: unknown = key.kty;
    if (!isAssertionKty(kty)) throw invalid(`jwks.keys[${i}]: kty must be EC, OKP or RSA`);
    if (PRIVATE_JWK_MEMBERS.some((m) => m in key)) throw invalid(`jwks.keys[${i}] is a private key; send the public key only`);
    if (key.kid !== undefined && (typeof key.kid !== 'string' || key.kid.length < 1 || key.kid.length > 256)) throw invalid(`jwks.keys[${i}]: kid must be a string of 1 to 256 characters`);
    // RFC 7517 §4.2: a key meant for encryption is not a client-assertion key.
    if (key.use !== undefined && key.use !== 'sig') throw invalid(`jwks.keys[${i}]: use must be "sig" when given`);
    const curve = CURVE_BY_KTY[kty];
    if (curve !== undefined && key.crv !== curve) throw invalid(`jwks.keys[${i}]: crv must be ${curve} for kty ${kty}`);
    if (kty === 'RSA' && (typeof key.n !== 'string' || Buffer.from(key.n, 'base64url').length < MIN_RSA_MODULUS_BYTES)) throw invalid(`jwks.keys[${i}]: RSA keys must be at least 2048 bits`);
    const allowed: readonly string[] = CLIENT_ASSERTION_ALGS_BY_KTY[kty];
    if (key.alg !== undefined && (typeof key.alg !== 'string' || !allowed.includes(key.alg))) throw invalid(`jwks.keys[${i}]: alg must be one of ${allowed.join(', ')} for kty ${kty}`);
    // Without `alg` the key is stored without one, so it verifies under every algorithm of its type.
    for (const alg of key.alg !== undefined ? [key.alg] : allowed) {
      try {
        await importJWK(key, alg);
      } catch {
        throw invalid(`jwks.keys[${i}] is not a valid ${alg} public key`);
      }
    }
    const { crv, x, y, n, e, kid, use, alg } = key;
    keys.push(Object.fromEntries(Object.entries({ kty, crv, x, y, n, e, kid, use, alg }).filter(([, v]) => v !== undefined)) as JWK);
  }
  return { keys };
}
