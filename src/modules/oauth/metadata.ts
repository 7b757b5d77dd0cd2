import { Inject, Injectable } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { CLIENT_ASSERTION_ALGS } from '../agents/agent-jwks.js';
import { DPOP_ALGS } from './dpop.js';
import { OAuthGrants } from './grants.js';

/** Client authentication at the token, revocation and backchannel endpoints (ClientAuthService). */
export const AGENT_CLIENT_AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt'];
/**
 * Client authentication of apps at the introspection endpoint (client id = app id, secret = an
 * API key). `Authorization: Bearer <API key>` is accepted too but is not an OAuth client
 * authentication method (none is registered for it), so it is named in the 401 challenge, not here.
 */
export const INTROSPECTION_AUTH_METHODS = ['client_secret_basic', 'client_secret_post'];
/** CIBA Core §4 / API.md v1.1: the grant type the CIBA module registers with OAuthGrants. */
export const CIBA_GRANT_TYPE = 'urn:openid:params:grant-type:ciba';
export const BACKCHANNEL_PATH = '/oauth/bc-authorize';
export const TXN_AUTHORIZATION_PATH = '/oauth/txn-authorization';
/** RFC 9396 `authorization_details` type of the step-up endpoints (CIBA, TAC). */
export const AUTHORIZATION_DETAILS_TYPE = 'mfa_proxy_action';
/** ID tokens (CIBA) and every token we sign are ES256 (keys module). */
const ID_TOKEN_ALGS = ['ES256'];
/** `acr` of sudo tokens and of CIBA ID tokens: a human completed a step-up with a second factor. */
const ACR_VALUES = ['mfa'];

/**
 * RFC 8414 authorization server metadata, served as OpenID Provider metadata too (OIDC Discovery
 * §3, read by openid-client's default `discovery()`), and RFC 9728 protected resource metadata
 * for the agent API. Built per request: a grant registered after start-up (CIBA) and an endpoint
 * another module mounts (bc-authorize, txn-authorization) appear, and nothing is advertised that
 * is not mounted.
 */
@Injectable()
export class OAuthMetadata {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly grants: OAuthGrants,
    private readonly http: HttpAdapterHost,
  ) {}

  document(): Record<string, unknown> {
    const base = this.config.issuer;
    const grantTypes = ['client_credentials', ...this.grants.types()];
    const backchannel = grantTypes.includes(CIBA_GRANT_TYPE) && this.mounted('POST', BACKCHANNEL_PATH);
    const txn = this.mounted('POST', TXN_AUTHORIZATION_PATH);
    return {
      issuer: base,
      token_endpoint: `${base}/oauth/token`,
      jwks_uri: `${base}/.well-known/jwks.json`,
      introspection_endpoint: `${base}/oauth/introspect`,
      revocation_endpoint: `${base}/oauth/revoke`,
      ...(backchannel ? { backchannel_authentication_endpoint: `${base}${BACKCHANNEL_PATH}` } : {}),
      ...(txn ? { transaction_authorization_endpoint: `${base}${TXN_AUTHORIZATION_PATH}` } : {}),
      grant_types_supported: grantTypes,
      // RFC 8414 §2: no authorization endpoint, so no response type (the list is required, and empty).
      response_types_supported: [],
      // RFC 8414 §2: each *_auth_methods_supported that includes private_key_jwt has its algorithms.
      token_endpoint_auth_methods_supported: AGENT_CLIENT_AUTH_METHODS,
      token_endpoint_auth_signing_alg_values_supported: CLIENT_ASSERTION_ALGS,
      revocation_endpoint_auth_methods_supported: AGENT_CLIENT_AUTH_METHODS,
      revocation_endpoint_auth_signing_alg_values_supported: CLIENT_ASSERTION_ALGS,
      introspection_endpoint_auth_methods_supported: INTROSPECTION_AUTH_METHODS,
      // RFC 9449 §5.1: exactly the algorithms verifyDpopProof accepts.
      dpop_signing_alg_values_supported: DPOP_ALGS,
      ...(backchannel
        ? {
            backchannel_token_delivery_modes_supported: ['poll', 'ping'],
            backchannel_user_code_parameter_supported: false,
          }
        : {}),
      ...(backchannel || txn ? { authorization_details_types_supported: [AUTHORIZATION_DETAILS_TYPE] } : {}),
      // OIDC Discovery §3 (required there): subjects are user ids, the same for every client.
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ID_TOKEN_ALGS,
      acr_values_supported: ACR_VALUES,
      // Agent scopes are the app-defined permission boundaries of each agent, not a fixed list
      // (RFC 8414 §2 lets a server leave scopes out); `openid` is listed where CIBA accepts it.
      scopes_supported: backchannel ? ['openid'] : [],
      protected_resources: [base],
      service_documentation: `${base}/docs`,
    };
  }

  /** RFC 9728 §2: the agent API (`/v1`, agent-authenticated), protected by this server's tokens. */
  protectedResource(): Record<string, unknown> {
    const base = this.config.issuer;
    return {
      resource: base,
      authorization_servers: [base],
      // RFC 6750 §2.1 / RFC 9449 §7.1: in the Authorization header only (Bearer or DPoP scheme).
      bearer_methods_supported: ['header'],
      dpop_signing_alg_values_supported: DPOP_ALGS,
      dpop_bound_access_tokens_required: false,
      // Any agent token reaches the agent API; which actions it covers is its scope, drawn from
      // the agent's app-defined boundaries, so there is no fixed scope to request.
      scopes_supported: [],
      resource_name: 'mfa-proxy agent API',
      resource_documentation: `${base}/docs`,
    };
  }

  private mounted(method: 'GET' | 'POST', url: string): boolean {
    const fastify = this.http.httpAdapter?.getInstance<FastifyInstance>();
    return fastify?.hasRoute({ method, url }) ?? false;
  }
}
