import canonicalize from 'canonicalize';
import { createHash } from 'node:crypto';
import type { StepUpEntity } from './step-up.entity.js';

const sha256 = (s: string | Buffer) => createHash('sha256').update(s).digest();

/** RFC 8785 canonical JSON, so the same details always hash the same. */
export function canonicalJson(value: unknown): string {
  const out = canonicalize(value);
  if (out === undefined) throw new Error('value cannot be canonicalized');
  return out;
}

/** `detailsHash`: base64url(SHA-256(RFC 8785 canonical JSON of the details; `{}` when none)). */
export function hashDetails(details: Record<string, unknown> | undefined | null): string {
  return sha256(canonicalJson(details ?? {})).toString('base64url');
}

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
