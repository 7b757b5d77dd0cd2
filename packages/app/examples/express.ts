import { MfaProxyApp } from '@mfa-proxy/app';
import { agentAuth, requireApproval } from '@mfa-proxy/app/express';
import express from 'express';
import type { JWK } from 'jose';

/** An Express API for agents: listing needs an agent token, deleting needs the human's approval of that file. */
export function filesApi(options: { issuer: string; appId: string; apiKey: string; resource: string; challengeKey: JWK }) {
  const mfa = new MfaProxyApp(options);
  const api = express();
  api.use(agentAuth(mfa));
  api.get('/files', (req, res) => void res.json({ user: req.agentSession?.user.id, files: ['q3.pdf'] }));
  api.delete(
    '/files/:name',
    requireApproval(mfa, (req) => ({ action: 'files:delete', resource: `files://${String(req.params.name)}`, details: {}, reason: 'Deleting cannot be undone' })),
    (req, res) => void res.json({ deleted: req.params.name, approvedBy: req.approval?.userId }),
  );
  return api;
}
