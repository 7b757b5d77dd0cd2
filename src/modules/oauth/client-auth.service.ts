import { Inject, Injectable } from '@nestjs/common';
import { createLocalJWKSet, errors, jwtVerify, type CryptoKey, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import { MalformedBasicError, parseBasic } from '../../common/auth/basic.js';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { ReplayCache } from '../../common/cache/replay-cache.js';
import { secretMatchesHash } from '../../common/crypto/tokens.js';
import { OAuthError } from '../../common/errors/app-error.js';
import { isId } from '../../common/ids.js';
import type { AgentEntity } from '../agents/agent.entity.js';
import { CLIENT_ASSERTION_ALGS } from '../agents/agent-jwks.js';
import { AgentTokensService } from './agent-tokens.service.js';

export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** Client assertions older or longer-lived than this are refused. */
const MAX_ASSERTION_LIFETIME_S = 300;

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';

const invalidClient = (description = 'client authentication failed') =>
  new OAuthError('invalid_client', description, { 'WWW-Authenticate': 'Basic realm="mfa-proxy"' });

/** The body parameters that authenticate a client (RFC 6749 §2.3.1, RFC 7523 §2.2). */
const CREDENTIAL_PARAMS = ['client_id', 'client_secret', 'client_assertion'] as const;

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** What a request presents to authenticate as a client, read once (the throttle and the check both use it). */
export interface PresentedClient {
  /** RFC 6749 §2.3.1 Basic credentials: null without them, 'malformed' when they cannot be decoded. */
  readonly basic: { id: string; secret: string } | null | 'malformed';
  readonly body: Record<string, unknown>;
}

export function presentedClient(authorization: string | undefined, body: Record<string, unknown>): PresentedClient {
  try {
    return { basic: parseBasic(authorization), body };
  } catch (err) {
    if (err instanceof MalformedBasicError) return { basic: 'malformed', body };
    throw err;
  }
}

/** Authenticates an agent as an OAuth client (token and revocation endpoints). */
@Injectable()
export class ClientAuthService {
  constructor(
    private readonly tokens: AgentTokensService,
    private readonly replay: ReplayCache,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** The client id a request claims (before authentication), for the failed-authentication throttle. */
  clientIdHint({ basic, body }: PresentedClient): string {
    // Malformed Basic: the body's claim, if any, else "unknown".
    if (basic && basic !== 'malformed') return basic.id;
    const assertion = str(body.client_assertion);
    if (assertion) {
      try {
        return String(JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8')).iss ?? 'unknown');
      } catch {
        return 'unknown';
      }
    }
    return str(body.client_id) ?? 'unknown';
  }

  async authenticate({ basic, body }: PresentedClient): Promise<{ agent: AgentEntity; method: ClientAuthMethod }> {
    if (basic === 'malformed') throw invalidClient('malformed Basic credentials');
    // A JSON body can carry any type: a credential that is not a string is no method, and not to be ignored beside one.
    for (const name of CREDENTIAL_PARAMS) {
      if (body[name] !== undefined && typeof body[name] !== 'string') throw new OAuthError('invalid_request', `${name} must be a string`);
    }
    const postSecret = str(body.client_secret);
    const assertion = str(body.client_assertion);
    // RFC 6749 §2.3: a client uses exactly one authentication method per request.
    const methods = [basic, postSecret, assertion].filter((m) => m !== undefined && m !== null).length;
    if (methods === 0) throw invalidClient('client authentication required');
    if (methods > 1) throw new OAuthError('invalid_request', 'use exactly one client authentication method');

    if (assertion !== undefined) {
      if (body.client_assertion_type !== JWT_BEARER_ASSERTION) throw new OAuthError('invalid_request', `client_assertion_type must be ${JWT_BEARER_ASSERTION}`);
      return { agent: await this.byAssertion(assertion, str(body.client_id)), method: 'private_key_jwt' };
    }
    const id = basic ? basic.id : str(body.client_id);
    const secret = basic ? basic.secret : postSecret!;
    if (basic && body.client_id !== undefined && body.client_id !== basic.id) throw new OAuthError('invalid_request', 'client_id does not match the Basic credentials');
    const agent = await this.activeAgent(id);
    // Compare against a hash even when there is none, so timing does not tell which failed.
    const ok = secretMatchesHash(secret, agent?.secretHash ?? 'no-secret-configured');
    if (!agent || !agent.secretHash || !ok) throw invalidClient();
    return { agent, method: basic ? 'client_secret_basic' : 'client_secret_post' };
  }

  /** An agent that is active and whose parent user exists (cached; every change of the agent drops it). */
  private async activeAgent(id: string | undefined): Promise<AgentEntity | null> {
    return isId('agent', id) ? this.tokens.activeAgent(id) : null;
  }

  /** RFC 7523 §3 client assertion, signed by one of the agent's registered keys. */
  private async byAssertion(assertion: string, clientId: string | undefined): Promise<AgentEntity> {
    if (assertion.length > 8192) throw invalidClient('client assertion too large');
    let iss: unknown;
    try {
      iss = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8')).iss;
    } catch {
      throw invalidClient('malformed client assertion');
    }
    if (typeof iss !== 'string' || (clientId !== undefined && clientId !== iss)) throw invalidClient('client assertion iss must be the client_id');
    const agent = await this.activeAgent(iss);
    if (!agent?.jwks) throw invalidClient();
    const now = this.clock.nowSeconds();
    let payload: JWTPayload;
    try {
      payload = await verifyWithKeySet(assertion, createLocalJWKSet(agent.jwks), {
        // Every algorithm the metadata advertises; the key set narrows it further: a key with
        // `alg` verifies only that algorithm, a key without one every algorithm of its type.
        algorithms: CLIENT_ASSERTION_ALGS,
        issuer: agent.id,
        subject: agent.id, // §3 item 2: sub is the client_id
        audience: [this.config.issuer, `${this.config.issuer}/oauth/token`], // §3 item 3
        currentDate: new Date(now * 1000),
        clockTolerance: 5,
        requiredClaims: ['exp', 'jti'], // §3 items 4 and 7
      });
    } catch {
      throw invalidClient('client assertion invalid');
    }
    // draft-ietf-oauth-rfc7523bis §4: `aud` is one value, never an array a client could be led to sign for several servers.
    if (typeof payload.aud !== 'string') throw invalidClient('client assertion aud must be a single value: the issuer');
    if (payload.exp! - now > MAX_ASSERTION_LIFETIME_S) throw invalidClient('client assertion lives too long');
    if (typeof payload.jti !== 'string' || payload.jti.length > 256) throw invalidClient('client assertion jti invalid');
    // §3 item 7: a jti is accepted once; remembered until the assertion expires.
    let fresh: boolean;
    try {
      fresh = await this.replay.claim(`assertion:${agent.id}:${payload.jti}`, payload.exp! - now + 10);
    } catch {
      throw new OAuthError('server_error', 'replay protection unavailable');
    }
    if (!fresh) throw invalidClient('client assertion already used');
    return agent;
  }
}

/**
 * jwtVerify against a key set. When several registered keys fit the assertion (no `kid`, same key
 * type), each is tried in turn (jose leaves that to the caller): one of the agent's keys signed it.
 */
async function verifyWithKeySet(jwt: string, keys: JWTVerifyGetKey, options: JWTVerifyOptions): Promise<JWTPayload> {
  try {
    return (await jwtVerify(jwt, keys, options)).payload;
  } catch (err) {
    if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
    for await (const key of err as errors.JWKSMultipleMatchingKeys & AsyncIterable<CryptoKey>) {
      try {
        return (await jwtVerify(jwt, key, options)).payload;
      } catch (inner) {
        if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner;
      }
    }
    throw new errors.JWSSignatureVerificationFailed();
  }
}
