import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { CLIENT_ASSERTION_ALGS } from '../agents/agents.service.js';
import { DPOP_ALGS } from './dpop.js';

/** RFC 8414 authorization server metadata. */
@Injectable()
export class OAuthMetadata {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  document(): Record<string, unknown> {
    const base = this.config.issuer;
    return {
      issuer: base,
      token_endpoint: `${base}/oauth/token`,
      jwks_uri: `${base}/.well-known/jwks.json`,
      introspection_endpoint: `${base}/oauth/introspect`,
      revocation_endpoint: `${base}/oauth/revoke`,
      grant_types_supported: ['client_credentials'],
      response_types_supported: [],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: CLIENT_ASSERTION_ALGS,
      revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      introspection_endpoint_auth_methods_supported: ['bearer'],
      dpop_signing_alg_values_supported: DPOP_ALGS,
      service_documentation: `${base}/docs`,
    };
  }
}
