import { MfaProxyAgent, StepUpDeniedError } from '@mfa-proxy/agent';

/** Asks the human to approve one exact deletion; resolves with the single-use token, or null when denied. */
export async function approveDeletion(issuer: string, clientId: string, clientSecret: string): Promise<string | null> {
  const agent = new MfaProxyAgent({ issuer, clientId, clientSecret, dpop: true });
  try {
    const { mfaProxyToken } = await agent.stepUp(
      { action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 } },
      { onPending: (s) => console.log(`Waiting for approval ${s.approvalUrl ?? ''} (code ${s.bindingCode})`) },
    );
    return mfaProxyToken ?? null;
  } catch (err) {
    if (err instanceof StepUpDeniedError) return null;
    throw err;
  }
}
