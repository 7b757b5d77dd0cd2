import { MfaProxyAgent } from '@mfa-proxy/agent';
import { MfaProxyApp } from '@mfa-proxy/app';
import { agentSessionFromRequest, authorizeDestructiveAction } from '@mfa-proxy/app/authjs';
import type { Session } from '@auth/core/types';
import { exportJWK, generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { approveWithPasskey } from '../../../test/support/step-up.js';
import { eventually, human, useService } from '../../test/service.js';

const s = useService();

describe('@mfa-proxy/app/authjs', () => {
  it('agentSessionFromRequest gives an Auth.js Session for an agent’s request, null otherwise', async () => {
    const h = await human(s);
    const app = new MfaProxyApp({ issuer: s.issuer, appId: h.tenant.appId, apiKey: h.tenant.apiKey });
    const token = await new MfaProxyAgent({ issuer: s.issuer, clientId: h.agent.id, clientSecret: h.agent.clientSecret }).accessToken();
    const session: Session | null = await agentSessionFromRequest(app, new Request('https://app.example/api/files', { headers: { authorization: `Bearer ${token}` } }));
    expect(session).toMatchObject({ user: { id: h.userId }, isAgent: true, agentMetadata: { agentId: h.agent.id, parentId: h.userId, taskId: null } });
    expect(typeof session!.expires).toBe('string');
    // what callbacks.session merges: the app's own session keeps its fields
    const merged: Session = { ...{ user: { name: 'Ada' }, expires: session!.expires }, ...session! };
    expect(merged.user?.id).toBe(h.userId);
    expect(await agentSessionFromRequest(app, new Request('https://app.example/api/files'))).toBeNull();
    expect(await agentSessionFromRequest(app, new Request('https://app.example/api/files', { headers: { authorization: `Bearer ${token}x` } }))).toBeNull();
  });

  it('authorizeDestructiveAction returns the challenge Response, then the approval once the human consented', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const resource = 'https://notes.example';
    const hooks: string[] = [];
    const { createServer } = await import('node:http');
    const receiver = createServer((req, res) => {
      let b = '';
      req.on('data', (c) => (b += c)).on('end', () => {
        const e = JSON.parse(b) as { type: string; data: { approvalUrl?: string } };
        if (e.type === 'step_up.created') hooks.push(String(e.data.approvalUrl));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
    try {
      const h = await human(s, {}, { webhookUrl: `http://127.0.0.1:${(receiver.address() as { port: number }).port}/`, resource, challengeJwks: { keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256' }] } });
      const app = new MfaProxyApp({ issuer: s.issuer, appId: h.tenant.appId, apiKey: h.tenant.apiKey, resource, challengeKey: await exportJWK(privateKey) });
      const action = { action: 'files:delete', resource: 'notes://7', details: { title: 'Q3' } };
      // the "route handler" of an Auth.js app, called by the agent SDK through a fetch shim
      let ran = 0;
      const handler = async (request: Request): Promise<Response> => {
        const result = await authorizeDestructiveAction(app, request, action);
        if (result instanceof Response) return result;
        ran++;
        return Response.json({ deleted: 7, by: result.userId });
      };
      const agent = new MfaProxyAgent({
        issuer: s.issuer, clientId: h.agent.id, clientSecret: h.agent.clientSecret, resources: [resource],
        fetch: (input, init) => (new Request(input, init).url.startsWith(resource) ? handler(new Request(input, init)) : fetch(input, init)),
      });
      const first = await handler(new Request(`${resource}/notes/7`, { method: 'DELETE', headers: { authorization: `Bearer ${await agent.accessToken()}`, 'accept-txn-challenge': '?1' } }));
      expect(first.status).toBe(401);
      expect(first.headers.get('www-authenticate')).toContain('transaction_authorization_required');
      expect(ran).toBe(0);
      const pending = agent.fetch(`${resource}/notes/7`, { method: 'DELETE' });
      await approveWithPasskey(s.t, h, await eventually(() => hooks[0], 15_000));
      const res = await pending;
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ deleted: 7, by: h.userId });
      expect(ran).toBe(1);
    } finally {
      receiver.close();
    }
  });
});
