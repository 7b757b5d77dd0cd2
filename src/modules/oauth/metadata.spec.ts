import type { HttpAdapterHost } from '@nestjs/core';
import { describe, expect, it } from 'vitest';
import type { AppConfig } from '../../config/config.schema.js';
import { OAuthGrants } from './grants.js';
import { CIBA_GRANT_TYPE, OAuthMetadata } from './metadata.js';

const config = { issuer: 'https://mfa.example' } as AppConfig;

/** An HTTP adapter whose router knows exactly these POST routes. */
const routes = (...mounted: string[]) =>
  ({ httpAdapter: { getInstance: () => ({ hasRoute: ({ method, url }: { method: string; url: string }) => method === 'POST' && mounted.includes(url) }) } }) as unknown as HttpAdapterHost;

describe(OAuthMetadata.name, () => {
  describe('document', () => {
    it('advertises neither CIBA nor TAC while they are not mounted', () => {
      const sut = new OAuthMetadata(config, new OAuthGrants(), routes());
      const doc = sut.document();
      expect(doc.grant_types_supported).toEqual(['client_credentials']);
      for (const field of ['backchannel_authentication_endpoint', 'backchannel_token_delivery_modes_supported', 'backchannel_user_code_parameter_supported', 'transaction_authorization_endpoint', 'authorization_details_types_supported']) {
        expect(doc, field).not.toHaveProperty(field);
      }
      expect(doc.scopes_supported).toEqual([]);
    });

    it('does not advertise the backchannel endpoint without the CIBA grant, nor the grant alone as an endpoint', () => {
      expect(new OAuthMetadata(config, new OAuthGrants(), routes('/oauth/bc-authorize')).document()).not.toHaveProperty('backchannel_authentication_endpoint');
      const grants = new OAuthGrants();
      grants.register(CIBA_GRANT_TYPE, async () => ({}));
      const doc = new OAuthMetadata(config, grants, routes()).document();
      expect(doc.grant_types_supported).toEqual(['client_credentials', CIBA_GRANT_TYPE]);
      expect(doc).not.toHaveProperty('backchannel_authentication_endpoint');
    });

    it('advertises CIBA and TAC once mounted, with their companions', () => {
      const grants = new OAuthGrants();
      const sut = new OAuthMetadata(config, grants, routes('/oauth/bc-authorize', '/oauth/txn-authorization'));
      grants.register(CIBA_GRANT_TYPE, async () => ({})); // after construction: the document is built per call
      expect(sut.document()).toMatchObject({
        grant_types_supported: ['client_credentials', CIBA_GRANT_TYPE],
        backchannel_authentication_endpoint: 'https://mfa.example/oauth/bc-authorize',
        backchannel_token_delivery_modes_supported: ['poll', 'ping'],
        backchannel_user_code_parameter_supported: false,
        transaction_authorization_endpoint: 'https://mfa.example/oauth/txn-authorization',
        authorization_details_types_supported: ['mfa_proxy_action'],
        scopes_supported: ['openid'],
      });
    });
  });
});
