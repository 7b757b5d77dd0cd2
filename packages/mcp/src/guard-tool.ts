import type { MfaProxyApp, VerifiedApproval } from '@mfa-proxy/app';
import type { McpServer, RegisteredTool } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { randomUUID } from 'node:crypto';

/** What the human approves for one call of the tool, computed from its arguments. */
export interface ToolGuard<A> {
  action: string;
  resource?: (args: A) => string;
  details?: (args: A) => Record<string, unknown>;
  /** Shown to the human (the elicitation's message; its first 64 characters as the binding message). */
  reason: string;
}

export interface GuardOptions<E> {
  app: MfaProxyApp;
  /** The calling agent's id (`agt_...`), e.g. from the request's auth info. */
  agentFrom: (extra: E) => string | Promise<string>;
}

import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';

/** The MCP request context a tool handler gets (auth info, session, abort signal). */
export type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

const refusal = (text: string): CallToolResult => ({ isError: true, content: [{ type: 'text', text }] });

/**
 * Registers an MCP tool whose handler runs only after the human approved this exact call:
 * an app-initiated step-up for the calling agent, an `elicitation/create` in URL mode asking the
 * client to open the approval page (MCP 2025-11-25), a wait for the decision, and then the
 * approval's token verified and consumed. A denial, expiry or cancellation is a tool error
 * result; the handler never runs then.
 */
export function guardTool<A = Record<string, unknown>, Cfg extends Record<string, unknown> = Record<string, unknown>>(
  server: McpServer,
  name: string,
  config: Cfg,
  guard: ToolGuard<A>,
  handler: (args: A, extra: Extra, approval: VerifiedApproval) => CallToolResult | Promise<CallToolResult>,
  options: GuardOptions<Extra>,
): RegisteredTool {
  const { app, agentFrom } = options;
  const run = async (args: A, extra: Extra): Promise<CallToolResult> => {
    const agentId = await agentFrom(extra);
    const what = {
      action: guard.action,
      ...(guard.resource ? { resource: guard.resource(args) } : {}),
      ...(guard.details ? { details: guard.details(args) } : {}),
    };
    const stepUp = await app.createStepUp({ agentId, ...what, bindingMessage: guard.reason.slice(0, 64) });
    const elicitationId = randomUUID();
    const waiting = new AbortController();
    extra.signal?.addEventListener('abort', () => waiting.abort(extra.signal!.reason), { once: true });
    // URL mode: the client shows the message and opens the approval page; the human approves there
    void server.server
      .elicitInput({ mode: 'url', message: `${guard.reason} (code ${stepUp.bindingCode})`, url: stepUp.approvalUrl, elicitationId }, { signal: waiting.signal })
      .then(async (r) => {
        // the user refused to open the page: nobody will approve, so stop asking
        if (r.action !== 'accept') {
          await app.cancelStepUp(stepUp.id).catch(() => undefined);
        }
      })
      .catch(() => undefined); // a client without URL elicitation: the link still reaches the human through the app
    let decided;
    try {
      decided = await app.waitForStepUp(stepUp.id, waiting.signal);
    } catch (err) {
      await app.cancelStepUp(stepUp.id).catch(() => undefined);
      throw err;
    } finally {
      waiting.abort();
      await server.server.createElicitationCompletionNotifier(elicitationId)().catch(() => undefined);
    }
    if (decided.status !== 'approved' || !decided.mfaProxyToken) {
      return refusal(`${name} was not run: the approval was ${decided.status}${decided.reason ? ` (${decided.reason})` : ''}`);
    }
    // the handler runs only once the token is verified for exactly this call and consumed
    const verified = await app.verify({ token: decided.mfaProxyToken, ...what, agentId });
    if (!verified.valid) return refusal(`${name} was not run: the approval did not verify (${verified.reason})`);
    return handler(args, extra, verified);
  };
  const hasInput = 'inputSchema' in config && config.inputSchema !== undefined;
  const cb = hasInput ? (args: A, extra: Extra) => run(args, extra) : (extra: Extra) => run({} as A, extra);
  return (server.registerTool as (n: string, c: unknown, cb: unknown) => RegisteredTool)(name, config, cb);
}
