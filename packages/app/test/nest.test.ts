import 'reflect-metadata';
import { MfaProxyAgent } from '@mfa-proxy/agent';
import { AgentAuthGuard, MfaProxyModule, RequireApproval } from '@mfa-proxy/app/nest';
import { Controller, Delete, Get, Module, Param, Req, UseGuards, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../test/support/browser.js';
import { approveWithPasskey, type Human } from '../../../test/support/step-up.js';
import { eventually, human, useService } from '../../test/service.js';

const s = useService();
const deleted: string[] = [];

@Controller('files')
@UseGuards(AgentAuthGuard)
class FilesController {
  @Get()
  list(@Req() req: { agentSession: unknown }) {
    return { session: req.agentSession };
  }

  @Delete(':name')
  @RequireApproval((req: { params: { name: string } }) => ({ action: 'files:delete', resource: `files://${req.params.name}`, details: { name: req.params.name }, reason: 'Deleting cannot be undone' }))
  remove(@Param('name') name: string, @Req() req: { approval: { userId: string } }) {
    deleted.push(name);
    return { deleted: name, approvedBy: req.approval.userId };
  }
}

let nest: INestApplication;
let base: string;
let h: Human;
const approvalUrls: string[] = [];
let hookServer: { close(): void } | undefined;

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  // the approval link reaches the scripted human through the app's webhook
  const { createServer } = await import('node:http');
  const hooks = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c)).on('end', () => {
      const e = JSON.parse(body) as { type: string; data: { approvalUrl?: string } };
      if (e.type === 'step_up.created') approvalUrls.push(String(e.data.approvalUrl));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hooks.listen(0, '127.0.0.1', () => r()));
  hookServer = hooks;
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  h = await human(s, {}, { webhookUrl: `http://127.0.0.1:${(hooks.address() as { port: number }).port}/`, resource: base, challengeJwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'n1', alg: 'ES256' }] } });
  @Module({
    imports: [MfaProxyModule.forRoot({ issuer: s.issuer, appId: h.tenant.appId, apiKey: h.tenant.apiKey, resource: base, challengeKey: { ...(await exportJWK(privateKey)), kid: 'n1' } })],
    controllers: [FilesController],
  })
  class FilesModule {}
  nest = await NestFactory.create(FilesModule, new FastifyAdapter(), { logger: false });
  await nest.listen(port, '127.0.0.1');
});
afterAll(async () => {
  await nest?.close();
  hookServer?.close();
});

describe('MfaProxyModule, AgentAuthGuard and @RequireApproval (NestJS on Fastify)', () => {
  it('AgentAuthGuard sets the agent session for a valid token and answers 401 with WWW-Authenticate otherwise', async () => {
    const agent = new MfaProxyAgent({ issuer: s.issuer, clientId: h.agent.id, clientSecret: h.agent.clientSecret, resources: [base] });
    const ok = await agent.fetch(`${base}/files`);
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { session: { agentMetadata: { agentId: string } } }).session.agentMetadata.agentId).toBe(h.agent.id);
    const bad = await fetch(`${base}/files`, { headers: { authorization: 'Bearer not.a.token' } });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toContain('error="invalid_token"');
    const none = await fetch(`${base}/files`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer realm=/);
  });

  it('@RequireApproval answers 403 without Accept-Txn-Challenge, and runs the handler once after the human approves the challenge', async () => {
    const agent = new MfaProxyAgent({ issuer: s.issuer, clientId: h.agent.id, clientSecret: h.agent.clientSecret, resources: [base] });
    const plain = await fetch(`${base}/files/x.txt`, { method: 'DELETE', headers: { authorization: `Bearer ${await agent.accessToken()}` } });
    expect(plain.status).toBe(403);
    const before = approvalUrls.length;
    const pending = agent.fetch(`${base}/files/x.txt`, { method: 'DELETE' });
    await approveWithPasskey(s.t, h, await eventually(() => approvalUrls[before], 15_000));
    const res = await pending;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ deleted: 'x.txt', approvedBy: h.userId });
    expect(deleted).toEqual(['x.txt']);
  });
});
