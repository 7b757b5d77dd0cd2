import canonicalize from 'canonicalize';
import { sha256 } from './crypto/tokens.js';

/** RFC 8785 canonical JSON, so the same value always serializes (and hashes) the same. */
export function canonicalJson(value: unknown): string {
  const out = canonicalize(value);
  if (out === undefined) throw new Error('value cannot be canonicalized');
  return out;
}

/** `detailsHash`: base64url(SHA-256(RFC 8785 canonical JSON of the details; `{}` when none)). */
export function hashDetails(details: Record<string, unknown> | undefined | null): string {
  return sha256(canonicalJson(details ?? {})).toString('base64url');
}
