/**
 * The peer: oidc-provider 9 (panva), a certified OAuth 2.0 / OpenID Connect server people would
 * otherwise run, in its own process with its default in-memory adapter.
 *   POST /token (client_secret_basic, client_credentials): the same clients (ids and secrets) as
 *     the service's bench agents; RFC 8707 resource indicators with the default resource issuing
 *     ES256 JWT access tokens (RFC 9068), as the service does.
 *   POST /token/introspection (RFC 7662): the reference for verify. It introspects opaque tokens
 *     from its memory adapter, authenticated as a resource-server client; that is NOT single use,
 *     durable or audited: an upper reference, not a like-for-like peer (the table says so).
 * Usage: node dist/bench/servers/peer-oidc.js <config.json>
 */
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';
import { JWT_RESOURCE, OPAQUE_RESOURCE, PEER_SCOPE } from '../lib/peer-oidc-resources.js';

export interface PeerOidcConfig {
  port: number;
  clients: { id: string; secret: string }[];
  introspector: { id: string; secret: string };
}


const config = JSON.parse(readFileSync(process.argv[2], 'utf8')) as PeerOidcConfig;
const issuer = `http://127.0.0.1:${config.port}`;
const { privateKey } = await generateKeyPair('ES256', { extractable: true });
const signingJwk = { ...(await exportJWK(privateKey)), kid: 'peer-es256', alg: 'ES256', use: 'sig' };

const client = (id: string, secret: string) => ({
  client_id: id, client_secret: secret, grant_types: ['client_credentials'], response_types: [], redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic', scope: PEER_SCOPE,
});

const provider = new Provider(issuer, {
  clients: [...config.clients.map((c) => client(c.id, c.secret)), client(config.introspector.id, config.introspector.secret)],
  jwks: { keys: [signingJwk] },
  scopes: [PEER_SCOPE],
  // Its only key is ES256, so that is every client's default signing algorithm too.
  clientDefaults: { id_token_signed_response_alg: 'ES256', grant_types: ['client_credentials'], response_types: [] },
  cookies: { keys: ['mpx-bench-peer-cookie-key-0000000000'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx: unknown, _client: unknown, oneOf?: string | string[]) => oneOf ?? JWT_RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx: unknown, resource: string) =>
        resource === OPAQUE_RESOURCE
          ? { scope: PEER_SCOPE, accessTokenTTL: 3600, accessTokenFormat: 'opaque' }
          : { scope: PEER_SCOPE, accessTokenTTL: 300, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } },
    },
  },
});

createServer(provider.callback()).listen(config.port, '127.0.0.1', () => console.log(`oidc-provider listening on ${issuer}`));
