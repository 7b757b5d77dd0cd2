import { createDecipheriv, createECDH, hkdfSync, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { importJWK, jwtVerify, type JWTPayload } from 'jose';

/**
 * A browser's side of a Web Push subscription (W3C Push API) for tests: its own P-256 key pair and
 * auth secret, and RFC 8291 decryption written here with node:crypto (ECDH + HKDF + AES-128-GCM),
 * independently of the web-push / http_ece code that encrypts.
 */
export function pushSubscriber() {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const uaPublic = ecdh.getPublicKey();
  const auth = randomBytes(16);
  return {
    keys: { p256dh: uaPublic.toString('base64url'), auth: auth.toString('base64url') },
    /** The plaintext of an `aes128gcm` push body (RFC 8291 §3.4, RFC 8188 §2). Throws if it does not decrypt. */
    decrypt(body: Buffer): string {
      // RFC 8188 §2.1 header: salt (16) | rs (uint32) | idlen (1) | keyid (the sender's ephemeral public key, RFC 8291 §4).
      const salt = body.subarray(0, 16);
      const rs = body.readUInt32BE(16);
      const idlen = body[20];
      const asPublic = body.subarray(21, 21 + idlen);
      const records = body.subarray(21 + idlen);
      if (idlen !== 65 || asPublic[0] !== 0x04) throw new Error('keyid is not an uncompressed P-256 point');
      if (records.length > rs) throw new Error('more than one record (not expected for a push message)');
      // RFC 8291 §3.3: PRK_key = HMAC(auth, ecdh); IKM = HKDF-Expand(PRK_key, "WebPush: info\0" || ua_public || as_public, 32).
      const ecdhSecret = ecdh.computeSecret(asPublic);
      const keyInfo = Buffer.concat([Buffer.from('WebPush: info\0'), uaPublic, asPublic]);
      const ikm = Buffer.from(hkdfSync('sha256', ecdhSecret, auth, keyInfo, 32));
      // RFC 8188 §2.2, §2.3: CEK and nonce from the salt.
      const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
      const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
      const decipher = createDecipheriv('aes-128-gcm', cek, nonce);
      decipher.setAuthTag(records.subarray(records.length - 16));
      const padded = Buffer.concat([decipher.update(records.subarray(0, records.length - 16)), decipher.final()]);
      // RFC 8188 §2: the last record ends with the delimiter 0x02, then zero padding.
      let end = padded.length - 1;
      while (end >= 0 && padded[end] === 0) end--;
      if (padded[end] !== 0x02) throw new Error('no last-record delimiter');
      return padded.subarray(0, end).toString('utf8');
    },
  };
}

export type PushSubscriber = ReturnType<typeof pushSubscriber>;

/**
 * Checks a VAPID `Authorization` header (RFC 8292 §3: `vapid t=<JWT>, k=<public key>`): `k` is the
 * expected key, the JWT's ES256 signature verifies under it (jose), `aud` is the push resource's
 * origin, `sub` the contact, `exp` at most 24 h ahead (§2). Returns the claims.
 */
export async function verifyVapid(header: string | undefined, expected: { publicKey: string; audience: string; subject: string }): Promise<JWTPayload> {
  const m = /^vapid t=([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+), k=([A-Za-z0-9_-]+)$/.exec(header ?? '');
  if (!m) throw new Error(`not a VAPID Authorization header: ${header}`);
  if (m[2] !== expected.publicKey) throw new Error('k is not the VAPID public key');
  const point = Buffer.from(m[2], 'base64url');
  const key = await importJWK({ kty: 'EC', crv: 'P-256', x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33, 65).toString('base64url') }, 'ES256');
  const { payload, protectedHeader } = await jwtVerify(m[1], key, { algorithms: ['ES256'], audience: expected.audience, subject: expected.subject });
  if (protectedHeader.typ !== 'JWT') throw new Error('typ is not JWT');
  const now = Math.floor(Date.now() / 1000);
  if (typeof payload.exp !== 'number' || payload.exp > now + 24 * 3600) throw new Error('exp is more than 24 h ahead');
  return payload;
}

export interface ReceivedPush {
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  at: number;
}

/** What the push service answers a request on a path: a status, or never ('hang'). */
export type PushAnswer = number | 'hang';

/**
 * A local push service (RFC 8030 §5): records every push request (with its raw body) and answers
 * each subscription path with the statuses queued for it by `answer(path, ...)`, then 201.
 */
export async function pushService() {
  const received: ReceivedPush[] = [];
  const queued = new Map<string, PushAnswer[]>();
  const hanging = new Set<import('node:http').ServerResponse>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      received.push({ path, headers: req.headers as Record<string, string>, body: Buffer.concat(chunks), at: Date.now() });
      const answer = queued.get(path)?.shift() ?? 201;
      if (answer === 'hang') {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      res.writeHead(answer).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as { port: number };
  const origin = `http://127.0.0.1:${port}`;
  let n = 0;
  return {
    origin,
    received,
    /** A new subscription endpoint on this push service. */
    endpoint: () => `${origin}/push/${++n}-${randomBytes(8).toString('hex')}`,
    /** Queues answers for the next requests to this endpoint. */
    answer(endpoint: string, ...answers: PushAnswer[]) {
      const path = new URL(endpoint).pathname;
      queued.set(path, [...(queued.get(path) ?? []), ...answers]);
    },
    to: (endpoint: string) => received.filter((r) => r.path === new URL(endpoint).pathname),
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
