import { canonicalJson } from '../../common/canonical-json.js';
import { sha256 } from '../../common/crypto/tokens.js';
import type { StepUpEntity } from './step-up.entity.js';

/**
 * SHA-256 of the exact request the human approves. The WebAuthn challenge is nonce ‖ this hash,
 * recomputed from the stored row at verification: a signature approves this request and nothing else.
 */
export function transactionHash(s: StepUpEntity): Buffer {
  return sha256(
    canonicalJson({
      stepUpId: s.id,
      appId: s.appId,
      agentId: s.agentId,
      action: s.action,
      resource: s.resource,
      detailsHash: s.detailsHash,
      grant: { type: s.grantType, scopes: s.grantScopes, duration: s.grantDuration },
      expiresAt: s.expiresAt,
    }),
  );
}

export function approvalChallenge(nonce: Buffer, s: StepUpEntity): Buffer {
  return Buffer.concat([nonce, transactionHash(s)]);
}
