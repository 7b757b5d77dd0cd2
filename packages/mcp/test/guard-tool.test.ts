import { MfaProxyApp } from '@mfa-proxy/app';
import { guardTool } from '@mfa-proxy/mcp';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { approvalToken, approveWithPasskey, type Human } from '../../../test/support/step-up.js';
import { human, useService, type Service } from '../../test/service.js';

const s = useService();

/**
 * An MCP server with one guarded tool and a client linked in memory. The client's elicitation
 * handler plays the human: it gets the approval URL and approves (or denies) on the real service.
 */
async function setup(h: Human, decide: (url: string) => Promise<unknown>) {
  const app = new MfaProxyApp({ issuer: s.issuer, appId: h.tenant.appId, apiKey: h.tenant.apiKey });
  const server = new McpServer({ name: 'files', version: '1.0.0' });
  const ran: string[] = [];
  guardTool(
    server,
    'delete_file',
    { description: 'Delete a file', inputSchema: { path: z.string() } },
    { action: 'files:delete', resource: (a: { path: string }) => `files://${a.path}`, details: (a: { path: string }) => ({ path: a.path }), reason: 'Delete a file for good' },
    async (args: { path: string }, _extra, approval) => {
      ran.push(args.path);
      return { content: [{ type: 'text', text: `deleted ${args.path} (approved by ${approval.userId})` }] };
    },
    { app, agentFrom: () => h.agent.id },
  );
  const client = new Client({ name: 'agent', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } });
  const elicitations: Array<{ mode?: string; url?: string; message: string }> = [];
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    const params = req.params as { mode?: string; url?: string; message: string };
    elicitations.push(params);
    void decide(params.url!);
    return { action: 'accept' };
  });
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  await Promise.all([server.connect(serverTransport), client.connect(clientTransport)]);
  return { client, server, ran, elicitations, close: async () => { await client.close(); await server.close(); } };
}

async function stepUpOf(sv: Service, h: Human, url: string) {
  return (await sv.t.http.get(`/v1/approvals/${approvalToken(url)}`)).body as { status: string; action: string; resource: string; agent: { id: string } };
}

describe('guardTool', () => {
  it('asks for approval with a URL-mode elicitation and runs the handler once the approval is verified and consumed', async () => {
    const h = await human(s);
    let seen: Awaited<ReturnType<typeof stepUpOf>> | undefined;
    const m = await setup(h, async (url) => {
      seen = await stepUpOf(s, h, url);
      expect((await approveWithPasskey(s.t, h, url)).status).toBe(200);
    });
    try {
      const result = await m.client.callTool({ name: 'delete_file', arguments: { path: 'q3.pdf' } });
      expect(result.isError).toBeFalsy();
      expect(result.content).toEqual([{ type: 'text', text: `deleted q3.pdf (approved by ${h.userId})` }]);
      expect(m.ran).toEqual(['q3.pdf']);
      expect(m.elicitations).toHaveLength(1);
      expect(m.elicitations[0]).toMatchObject({ mode: 'url', url: expect.stringContaining('/approve/') });
      expect(seen).toMatchObject({ action: 'files:delete', resource: 'files://q3.pdf', agent: { id: h.agent.id } });
      // the token was consumed: the audit has the consumption, the step-up's token went to the app only
      const events = (await s.t.http.get(`/v1/audit-events?agentId=${h.agent.id}`).set({ authorization: `Bearer ${h.tenant.apiKey}` })).body.events as Array<{ type: string; outcome: string }>;
      expect(events.some((e) => /consum|verif/.test(e.type) && e.outcome === 'success')).toBe(true);
    } finally {
      await m.close();
    }
  });

  it('returns a tool error and never runs the handler when the human denies', async () => {
    const h = await human(s);
    const m = await setup(h, async (url) => {
      await s.t.http.post(`/v1/approvals/${approvalToken(url)}/deny`).send({ reason: 'no' }).expect(200);
    });
    try {
      const result = await m.client.callTool({ name: 'delete_file', arguments: { path: 'keep.pdf' } });
      expect(result.isError).toBe(true);
      expect((result.content as Array<{ text: string }>)[0]!.text).toMatch(/not run: the approval was denied/);
      expect(m.ran).toEqual([]);
    } finally {
      await m.close();
    }
  });
});
