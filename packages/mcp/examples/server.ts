import { MfaProxyApp } from '@mfa-proxy/app';
import { guardTool } from '@mfa-proxy/mcp';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';

/** An MCP server whose `delete_file` tool runs only after the human approved that exact call. */
export function filesServer(app: MfaProxyApp, agentId: string): McpServer {
  const server = new McpServer({ name: 'files', version: '1.0.0' });
  guardTool(
    server,
    'delete_file',
    { description: 'Delete a file', inputSchema: { path: z.string() } },
    { action: 'files:delete', resource: (a: { path: string }) => `files://${a.path}`, reason: 'Delete a file for good' },
    async (args: { path: string }) => ({ content: [{ type: 'text', text: `deleted ${args.path}` }] }),
    { app, agentFrom: () => agentId }, // in a real server: the agent of the request's auth info
  );
  return server;
}
