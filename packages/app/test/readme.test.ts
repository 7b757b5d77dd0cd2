import { MfaProxyAgent } from '@mfa-proxy/agent';
import { readFileSync } from 'node:fs';
import { exportJWK, generateKeyPair } from 'jose';
import { expect, it } from 'vitest';
import { freePort } from '../../../test/support/browser.js';
import { filesApi } from '../examples/express.js';
import { human, useService } from '../../test/service.js';

const s = useService();

it('the README example (Express) is the file the test runs: agents list with a token, a delete without approval is challenged', async () => {
  expect(readFileSync(new URL('../README.md', import.meta.url), 'utf8')).toContain(readFileSync(new URL('../examples/express.ts', import.meta.url), 'utf8'));
  const port = await freePort();
  const resource = `http://127.0.0.1:${port}`;
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const h = await human(s, {}, { resource, challengeJwks: { keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256' }] } });
  const server = filesApi({ issuer: s.issuer, appId: h.tenant.appId, apiKey: h.tenant.apiKey, resource, challengeKey: await exportJWK(privateKey) }).listen(port, '127.0.0.1');
  try {
    const agent = new MfaProxyAgent({ issuer: s.issuer, clientId: h.agent.id, clientSecret: h.agent.clientSecret, resources: [resource] });
    const list = await agent.fetch(`${resource}/files`);
    expect(list.status).toBe(200);
    expect(await list.json()).toEqual({ user: h.userId, files: ['q3.pdf'] });
    expect((await fetch(`${resource}/files`)).status).toBe(401);
    const del = await fetch(`${resource}/files/q3.pdf`, { method: 'DELETE', headers: { authorization: `Bearer ${await agent.accessToken()}`, 'accept-txn-challenge': '?1' } });
    expect(del.status).toBe(401);
    expect(del.headers.get('www-authenticate')).toContain('transaction_authorization_required');
  } finally {
    server.closeAllConnections();
    server.close();
  }
});
