import { isoCBOR } from '@simplewebauthn/server/helpers';
import type {
  AuthenticationResponseJSON, PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON, RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_BE = 0x08;
const FLAG_BS = 0x10;
const FLAG_AT = 0x40;

const b64u = (b: Uint8Array | Buffer) => Buffer.from(b).toString('base64url');
const sha256 = (d: Uint8Array | string) => createHash('sha256').update(d).digest();

export interface StoredCredential {
  id: Buffer;
  privateKey: KeyObject;
  publicKey: KeyObject;
  counter: number;
  userHandle: string | null;
  rpId: string;
}

/** Knobs that turn a genuine ceremony into one of the bad variants. */
export interface CeremonyKnobs {
  origin?: string;
  rpId?: string;
  type?: string;
  challenge?: string;
  userVerified?: boolean;
  userPresent?: boolean;
  crossOrigin?: boolean;
  /** Registration: reuse this credential id (e.g. one already registered). */
  credentialId?: Buffer;
  /** Registration: a fresh random credential id of this many bytes (default 16). */
  credentialIdLength?: number;
  /** Assertion: the counter to put in authenticator data. */
  counter?: number;
  /** Assertion: the `userHandle` to send (base64url) instead of the credential's own; `null` omits it. */
  userHandle?: string | null;
}

/**
 * A software WebAuthn authenticator: genuine `none` attestation and ES256 assertions, built the
 * way a platform authenticator builds them (WebAuthn L3 §6.1, §6.5.4), with knobs for bad variants.
 */
export class SoftAuthenticator {
  readonly credentials = new Map<string, StoredCredential>();

  constructor(
    readonly origin: string,
    readonly rpId: string = new URL(origin).hostname,
  ) {}

  private authData(rpId: string, flags: number, counter: number, attested?: Buffer): Buffer {
    const count = Buffer.alloc(4);
    count.writeUInt32BE(counter >>> 0);
    return Buffer.concat([sha256(rpId), Buffer.from([flags]), count, ...(attested ? [attested] : [])]);
  }

  private clientData(type: string, challenge: string, knobs: CeremonyKnobs): Buffer {
    return Buffer.from(JSON.stringify({ type, challenge, origin: knobs.origin ?? this.origin, crossOrigin: knobs.crossOrigin ?? false }));
  }

  private flags(knobs: CeremonyKnobs, extra = 0): number {
    return (knobs.userPresent === false ? 0 : FLAG_UP) | (knobs.userVerified === false ? 0 : FLAG_UV) | FLAG_BE | FLAG_BS | extra;
  }

  async register(options: PublicKeyCredentialCreationOptionsJSON, knobs: CeremonyKnobs = {}): Promise<RegistrationResponseJSON> {
    const rpId = knobs.rpId ?? options.rp.id ?? this.rpId;
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' });
    const id = knobs.credentialId ?? randomBytes(knobs.credentialIdLength ?? 16);
    // RFC 9053 / WebAuthn §6.5.1.1: COSE_Key for ES256 (kty EC2, alg -7, crv P-256, x, y).
    const cose = isoCBOR.encode(
      new Map<number, number | Uint8Array>([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, Buffer.from(jwk.x!, 'base64url')],
        [-3, Buffer.from(jwk.y!, 'base64url')],
      ]),
    );
    const idLength = Buffer.alloc(2);
    idLength.writeUInt16BE(id.length);
    const attested = Buffer.concat([Buffer.alloc(16), idLength, id, Buffer.from(cose)]);
    const authData = this.authData(rpId, this.flags(knobs, FLAG_AT), 0, attested);
    const attestationObject = isoCBOR.encode(new Map<string, unknown>([['fmt', 'none'], ['attStmt', new Map()], ['authData', authData]]) as never);
    const clientDataJSON = this.clientData(knobs.type ?? 'webauthn.create', knobs.challenge ?? options.challenge, knobs);
    this.credentials.set(b64u(id), { id, privateKey, publicKey, counter: 0, userHandle: options.user.id, rpId });
    return {
      id: b64u(id),
      rawId: b64u(id),
      type: 'public-key',
      response: {
        clientDataJSON: b64u(clientDataJSON),
        attestationObject: b64u(attestationObject),
        transports: ['internal', 'hybrid'],
        publicKeyAlgorithm: -7,
        authenticatorData: b64u(authData),
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    };
  }

  /** An assertion with the first allowed credential this authenticator holds (or `credentialId`). */
  async assert(options: PublicKeyCredentialRequestOptionsJSON, knobs: CeremonyKnobs & { credential?: string } = {}): Promise<AuthenticationResponseJSON> {
    const wanted = knobs.credential ?? options.allowCredentials?.map((c) => c.id).find((id) => this.credentials.has(id)) ?? [...this.credentials.keys()][0];
    const cred = wanted ? this.credentials.get(wanted) : undefined;
    if (!cred) throw new Error('no matching credential in the software authenticator');
    cred.counter = knobs.counter ?? cred.counter + 1;
    const authData = this.authData(knobs.rpId ?? options.rpId ?? cred.rpId, this.flags(knobs), cred.counter);
    const clientDataJSON = this.clientData(knobs.type ?? 'webauthn.get', knobs.challenge ?? options.challenge, knobs);
    // §6.3.3: the signature covers authenticatorData ‖ SHA-256(clientDataJSON); ECDSA in DER.
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientDataJSON)]), cred.privateKey);
    return {
      id: b64u(cred.id),
      rawId: b64u(cred.id),
      type: 'public-key',
      response: {
        clientDataJSON: b64u(clientDataJSON),
        authenticatorData: b64u(authData),
        signature: b64u(signature),
        userHandle: (knobs.userHandle === undefined ? cred.userHandle : knobs.userHandle) ?? undefined,
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    };
  }
}
