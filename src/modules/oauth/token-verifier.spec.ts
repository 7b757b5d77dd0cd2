import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { jwtVerify, type JWTPayload } from 'jose';
import { describe, expect, it } from 'vitest';
import type { KeysService } from '../keys/keys.service.js';
import { TokenInvalidError, verifyOwnJwt, type VerifyOptions } from './token-verifier.js';

const ours = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const theirs = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const keys = { publicKey: async (kid: string) => (kid === 'k1' ? ours.publicKey : null) } as unknown as KeysService;

const NOW = 1_800_000_000;
const OPTS: VerifyOptions = { typ: 'mfa-proxy+jwt', issuer: 'https://issuer.example', audience: 'app_1', nowSeconds: NOW, toleranceSeconds: 5 };
const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

function jws(header: Record<string, unknown>, payload: unknown, key: KeyObject = ours.privateKey): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

const HEADER = { alg: 'ES256', typ: 'mfa-proxy+jwt', kid: 'k1' };
const CLAIMS = { iss: OPTS.issuer, aud: 'app_1', sub: 'usr_1', jti: 'j1', iat: NOW - 10, exp: NOW + 60 };

/** Our verdict: 'ok' or the refusal's reason, and whether the refusal carries the (genuine) claims. */
async function ourVerdict(token: string): Promise<string> {
  try {
    await verifyOwnJwt(keys, token, OPTS);
    return 'ok';
  } catch (err) {
    if (!(err instanceof TokenInvalidError)) throw err;
    return `${err.reason}${err.verifiedPayload ? '+claims' : ''}`;
  }
}

/** jose's jwtVerify called directly with the same options, its errors mapped as verifyOwnJwt maps them. */
async function joseVerdict(token: string): Promise<string> {
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
  } catch {
    return 'malformed';
  }
  if (header.alg !== 'ES256') return 'invalid_signature';
  if (header.typ !== OPTS.typ) return 'malformed';
  if (['jku', 'jwk', 'x5u', 'x5c'].some((h) => h in header)) return 'invalid_signature';
  if (typeof header.kid !== 'string') return 'invalid_signature';
  const key = await keys.publicKey(header.kid);
  if (!key) return 'invalid_signature';
  try {
    const { payload } = await jwtVerify(token, key, {
      algorithms: ['ES256'], typ: OPTS.typ, issuer: OPTS.issuer, audience: OPTS.audience,
      currentDate: new Date(NOW * 1000), clockTolerance: 5, requiredClaims: ['exp', 'iat', 'jti', 'sub'],
    });
    if (payload.iat! > NOW + 5) return 'invalid+claims';
    if (payload.exp! <= NOW) return 'expired+claims';
    return 'ok';
  } catch (err) {
    const { code, claim, payload } = err as { code?: string; claim?: string; payload?: JWTPayload };
    if (code === 'ERR_JWT_EXPIRED') return `expired${payload ? '+claims' : ''}`;
    if (code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') return 'invalid_signature';
    if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && claim === 'aud') return 'wrong_audience+claims';
    if (code === 'ERR_JWS_INVALID' || code === 'ERR_JWT_INVALID') return 'malformed';
    return `invalid${code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' ? '+claims' : ''}`;
  }
}

const valid = jws(HEADER, CLAIMS);
const [vh, vp, vs] = valid.split('.');
/** A signature of `valid`'s input whose standard base64 has (or has not) a `+` or `/` (ECDSA signatures differ each time). */
function base64Signature(withPlusOrSlash: boolean): string {
  for (;;) {
    const b64 = sign('sha256', Buffer.from(`${vh}.${vp}`), { key: ours.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64');
    if (/[+/]/.test(b64) === withPlusOrSlash) return b64;
  }
}
const CASES: [string, string, string][] = [
  ['valid', valid, 'ok'],
  ['audience in an array', jws(HEADER, { ...CLAIMS, aud: ['x', 'app_1'] }), 'ok'],
  ['signed by another key', jws(HEADER, CLAIMS, theirs.privateKey), 'invalid_signature'],
  ['payload swapped under the signature', `${vh}.${b64({ ...CLAIMS, sub: 'usr_2' })}.${vs}`, 'invalid_signature'],
  ['signature truncated', `${vh}.${vp}.${vs.slice(0, -4)}`, 'invalid_signature'],
  ['signature empty', `${vh}.${vp}.`, 'invalid_signature'],
  ['signature in DER form', `${vh}.${vp}.${sign('sha256', Buffer.from(`${vh}.${vp}`), ours.privateKey).toString('base64url')}`, 'invalid_signature'],
  ['signature in standard base64 with padding', `${vh}.${vp}.${base64Signature(true)}`, 'malformed'],
  ['signature with characters outside base64url', `${vh}.${vp}.${vs.slice(0, 10)}!${vs.slice(10)}`, 'malformed'],
  ['alg none', `${b64({ ...HEADER, alg: 'none' })}.${vp}.`, 'invalid_signature'],
  ['alg HS256', jws({ ...HEADER, alg: 'HS256' }, CLAIMS), 'invalid_signature'],
  ['another typ', jws({ ...HEADER, typ: 'at+jwt' }, CLAIMS), 'malformed'],
  ['a jwk header', jws({ ...HEADER, jwk: { kty: 'EC' } }, CLAIMS), 'invalid_signature'],
  ['a crit header', jws({ ...HEADER, crit: ['exp'] }, CLAIMS), 'invalid'],
  ['an unencoded payload (b64: false)', jws({ ...HEADER, b64: false, crit: ['b64'] }, CLAIMS), 'malformed'],
  ['unknown kid', jws({ ...HEADER, kid: 'k9' }, CLAIMS), 'invalid_signature'],
  ['no kid', jws({ alg: 'ES256', typ: 'mfa-proxy+jwt' }, CLAIMS), 'invalid_signature'],
  ['header not JSON', `${b64('{nope')}.${vp}.${vs}`, 'malformed'],
  ['payload not JSON', jws(HEADER, '{nope'), 'malformed'],
  ['payload an array', jws(HEADER, [CLAIMS]), 'malformed'],
  ['payload a string', jws(HEADER, JSON.stringify('x')), 'malformed'],
  ['missing exp', jws(HEADER, { ...CLAIMS, exp: undefined }), 'invalid+claims'],
  ['missing jti', jws(HEADER, { ...CLAIMS, jti: undefined }), 'invalid+claims'],
  ['missing sub', jws(HEADER, { ...CLAIMS, sub: undefined }), 'invalid+claims'],
  ['missing iat', jws(HEADER, { ...CLAIMS, iat: undefined }), 'invalid+claims'],
  ['another issuer', jws(HEADER, { ...CLAIMS, iss: 'https://evil.example' }), 'invalid+claims'],
  ['no issuer', jws(HEADER, { ...CLAIMS, iss: undefined }), 'invalid+claims'],
  ['another audience', jws(HEADER, { ...CLAIMS, aud: 'app_2' }), 'wrong_audience+claims'],
  ['no audience', jws(HEADER, { ...CLAIMS, aud: undefined }), 'wrong_audience+claims'],
  ['audience an object', jws(HEADER, { ...CLAIMS, aud: { app_1: true } }), 'wrong_audience+claims'],
  ['exp a string', jws(HEADER, { ...CLAIMS, exp: String(NOW + 60) }), 'invalid+claims'],
  ['iat a string', jws(HEADER, { ...CLAIMS, iat: String(NOW) }), 'invalid+claims'],
  ['nbf a string', jws(HEADER, { ...CLAIMS, nbf: String(NOW) }), 'invalid+claims'],
  ['expired', jws(HEADER, { ...CLAIMS, exp: NOW - 100 }), 'expired+claims'],
  ['expired just now (no grace after exp)', jws(HEADER, { ...CLAIMS, exp: NOW - 2 }), 'expired+claims'],
  ['expires at this second', jws(HEADER, { ...CLAIMS, exp: NOW }), 'expired+claims'],
  ['expired and for another audience (audience first)', jws(HEADER, { ...CLAIMS, exp: NOW - 100, aud: 'app_2' }), 'wrong_audience+claims'],
  ['nbf within the tolerance', jws(HEADER, { ...CLAIMS, nbf: NOW + 5 }), 'ok'],
  ['nbf past the tolerance', jws(HEADER, { ...CLAIMS, nbf: NOW + 6 }), 'invalid+claims'],
  ['nbf in the future and expired (nbf first)', jws(HEADER, { ...CLAIMS, nbf: NOW + 60, exp: NOW - 1 }), 'invalid+claims'],
  ['iat within the tolerance', jws(HEADER, { ...CLAIMS, iat: NOW + 5 }), 'ok'],
  ['iat past the tolerance', jws(HEADER, { ...CLAIMS, iat: NOW + 6 }), 'invalid+claims'],
  ['four parts', `${valid}.x`, 'malformed'],
  ['two parts', `${vh}.${vp}`, 'malformed'],
];

describe('verifyOwnJwt', () => {
  it.each(CASES)('%s: %s', async (_name, token, expected) => {
    expect(await ourVerdict(token)).toBe(expected);
  });

  it('gives the verdict of jose’s jwtVerify, called directly, on every one of these tokens', async () => {
    const differ: string[] = [];
    for (const [name, token] of CASES) {
      const [mine, jose] = [await ourVerdict(token), await joseVerdict(token)];
      if (mine !== jose) differ.push(`${name}: ours ${mine}, jose ${jose}`);
    }
    expect(differ).toEqual([]);
  });

  it('refuses a signature whose base64url is not the canonical one (jose alone takes it: a second string for the same token)', async () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    // 64 bytes take 86 characters, whose last 4 bits are padding: flipping one names the same bytes.
    const other = vs.slice(0, -1) + alphabet[alphabet.indexOf(vs.at(-1)!) ^ 1];
    expect(Buffer.from(other, 'base64url').equals(Buffer.from(vs, 'base64url'))).toBe(true);
    expect(await joseVerdict(`${vh}.${vp}.${other}`)).toBe('ok');
    expect(await ourVerdict(`${vh}.${vp}.${other}`)).toBe('invalid_signature');
  });

  it('gives jose’s verdict on 3,000 generated tokens signed by our key: claims of every type, present or not, and altered strings', async () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const pick = <T,>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
    const time = () => pick([NOW - 100, NOW - 1, NOW, NOW + 1, NOW + 5, NOW + 6, NOW + 60, String(NOW), null, true, [NOW], 1.5e9 + 0.5, -1]);
    const value: Record<string, () => unknown> = {
      iss: () => pick([OPTS.issuer, `${OPTS.issuer}/`, 'https://evil.example', null, 1, [OPTS.issuer]]),
      aud: () => pick(['app_1', 'app_2', ['app_1'], ['x', 'app_1'], [], ['app_2'], null, 1, { app_1: true }, '']),
      sub: () => pick(['usr_1', '', null, 2]),
      jti: () => pick(['j1', '', null, 3]),
      iat: time,
      exp: time,
      nbf: time,
    };
    const differ: string[] = [];
    const verdicts = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const claims: Record<string, unknown> = {};
      for (const [claim, gen] of Object.entries(value)) {
        const r = rnd();
        if (r < 0.7) claims[claim] = claim in CLAIMS ? (CLAIMS as Record<string, unknown>)[claim] : undefined;
        else if (r < 0.92) claims[claim] = gen();
      }
      let token = jws(HEADER, rnd() < 0.03 ? pick<unknown>([[claims], 'x', 7, null]) : claims);
      // A tenth: one character of the token changed (mostly a signature that no longer holds). Not
      // the last one, whose padding bits jose ignores (the non-canonical case, tested above).
      if (rnd() < 0.1) {
        const at = Math.floor(rnd() * (token.length - 1));
        token = token.slice(0, at) + pick(['A', 'b', '-', '_', '.', '=']) + token.slice(at + 1);
      }
      const [mine, jose] = [await ourVerdict(token), await joseVerdict(token)];
      verdicts.add(mine);
      if (mine !== jose) differ.push(`${token}: ours ${mine}, jose ${jose}`);
    }
    expect(differ.slice(0, 5)).toEqual([]);
    // The generator reaches every verdict, so the comparison is not only of refusals.
    expect([...verdicts].sort()).toEqual(['expired+claims', 'invalid+claims', 'invalid_signature', 'malformed', 'ok', 'wrong_audience+claims']);
  });

  it('refuses a padded signature (jose alone takes it when it has no + or /: about one signature in 15)', async () => {
    const token = `${vh}.${vp}.${base64Signature(false)}`;
    expect(token.endsWith('==')).toBe(true);
    expect(await joseVerdict(token)).toBe('ok');
    expect(await ourVerdict(token)).toBe('malformed');
  });

  it('refuses the extension headers jose would take: we sign with none', async () => {
    // crit naming b64 with b64 true, and b64 false without crit, are both read by jose as a normal JWS.
    for (const header of [{ ...HEADER, b64: true, crit: ['b64'] }, { ...HEADER, b64: false }]) {
      const token = jws(header, CLAIMS);
      expect(await joseVerdict(token)).toBe('ok');
      expect(await ourVerdict(token)).toBe('malformed');
    }
  });

  it('refuses a payload segment that is not ASCII, even where its low bytes are a signed payload', async () => {
    // U+0141 is 0x41 ('A') in latin1: a verifier hashing latin1 bytes would find the signature good.
    const i = vp.indexOf('A');
    expect(i).toBeGreaterThanOrEqual(0);
    const token = `${vh}.${vp.slice(0, i)}\u0141${vp.slice(i + 1)}.${vs}`;
    expect(await joseVerdict(token)).toBe('malformed');
    // Refused before the signature is checked, not only later when the payload fails to decode.
    await expect(verifyOwnJwt(keys, token, OPTS)).rejects.toMatchObject({ reason: 'malformed', message: 'payload not ASCII' });
  });

  it('returns the claims and the header of a valid token', async () => {
    const { payload, header } = await verifyOwnJwt(keys, valid, OPTS);
    expect(payload).toEqual(CLAIMS);
    expect(header).toEqual(HEADER);
  });
});
