import { AgentAuthError, MfaProxyApp } from '@mfa-proxy/app';
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Human } from '../../../test/support/step-up.js';
import { human, useService } from '../../test/service.js';

const s = useService();

/**
 * authenticateAgent's audience check on its own. The app's `fetch` is injectable, so the SDK is
 * given a JWKS we control (at the `jwks_uri` of the real metadata) while every other call, the agent
 * lookup included, goes to the real service. Tokens signed with that key and identical in every
 * claim but `aud` show that the audience alone decides: the agent exists, is active and belongs to
 * the user, so only `aud` can refuse the token.
 */
describe('authenticateAgent: the aud check', () => {
  let h: Human;
  let key: CryptoKey;
  let app: MfaProxyApp;
  const lookups: string[] = [];
  const kid = 'test-controlled';

  beforeAll(async () => {
    h = await human(s);
    const pair = await generateKeyPair('ES256', { extractable: true });
    key = pair.privateKey;
    const jwks = { keys: [{ ...(await exportJWK(pair.publicKey)), kid, alg: 'ES256', use: 'sig' }] };
    const meta = (await (await fetch(`${s.issuer}/.well-known/oauth-authorization-server`)).json()) as { jwks_uri: string };
    app = new MfaProxyApp({
      issuer: s.issuer,
      appId: h.tenant.appId,
      apiKey: h.tenant.apiKey,
      fetch: async (input, init) => {
        const url = new Request(input, init).url;
        if (url === meta.jwks_uri) return Response.json(jwks);
        if (url.includes('/v1/agents/')) lookups.push(url);
        return fetch(input, init);
      },
    });
  });

  /** An RFC 9068 agent token of this app's agent for its user, signed by the controlled key, with `aud` as given. */
  const token = (aud: string | string[] | undefined) => {
    const jwt = new SignJWT({ client_id: h.agent.id, act: { sub: h.agent.id }, scope: 'files:*', model: 'test-model' })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
      .setIssuer(s.issuer)
      .setSubject(h.userId)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime('5m');
    return (aud === undefined ? jwt : jwt.setAudience(aud)).sign(key);
  };

  it('accepts the token with aud = [issuer, this app] (the control: signature, agent and user all pass)', async () => {
    const session = await app.authenticateAgent(`Bearer ${await token([s.issuer, h.tenant.appId])}`);
    expect(session).toMatchObject({ user: { id: h.userId }, agentMetadata: { agentId: h.agent.id, scopes: ['files:*'] } });
    expect(lookups.length).toBeGreaterThan(0);
  });

  it.each([
    ['another app', () => [s.issuer, 'app_AAAAAAAAAAAAAAAAAAAAAA']],
    ['the issuer only', () => s.issuer],
    ['another URL on the issuer', () => `${s.issuer}/v1`],
    ['no aud at all', () => undefined],
  ])('refuses the same token with aud = %s: 401 invalid_token', async (_name, aud) => {
    const err = await app.authenticateAgent(`Bearer ${await token(aud())}`).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(AgentAuthError);
    expect(err).toMatchObject({ status: 401, code: 'invalid_token', wwwAuthenticate: expect.stringContaining('error="invalid_token"') });
  });
});
