import { MfaProxyApp } from '@mfa-proxy/app';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { approveWithPasskey } from '../../../test/support/step-up.js';
import { filesServer } from '../examples/server.js';
import { human, useService } from '../../test/service.js';

const s = useService();

it('the README example is the file the test runs: the tool runs after the human approves through the elicited URL', async () => {
  expect(readFileSync(new URL('../README.md', import.meta.url), 'utf8')).toContain(readFileSync(new URL('../examples/server.ts', import.meta.url), 'utf8'));
  const h = await human(s);
  const server = filesServer(new MfaProxyApp({ issuer: s.issuer, appId: h.tenant.appId, apiKey: h.tenant.apiKey }), h.agent.id);
  const client = new Client({ name: 'agent', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } });
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    void approveWithPasskey(s.t, h, String((req.params as { url: string }).url));
    return { action: 'accept' };
  });
  const [a, b] = InMemoryTransport.createLinkedPair();
  await Promise.all([server.connect(b), client.connect(a)]);
  try {
    const result = await client.callTool({ name: 'delete_file', arguments: { path: 'q3.pdf' } });
    expect(result).toMatchObject({ content: [{ type: 'text', text: 'deleted q3.pdf' }] });
  } finally {
    await client.close();
  }
});
