import { OAuthError } from '../../common/errors/app-error.js';
import { canonicalJson } from '../../common/canonical-json.js';
import { parseStrictJson, StrictJsonError } from '../../common/json/strict-json.js';

/** RFC 9396 `authorization_details` type of a step-up (API.md v1.1). */
export const MFA_PROXY_ACTION = 'mfa_proxy_action';

export interface AuthorizationDetail {
  type: typeof MFA_PROXY_ACTION;
  action: string;
  resource?: string;
  details?: Record<string, unknown>;
}

const ACTION = /^[a-z0-9_.:-]{1,64}$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const MAX_TEXT = 16 * 1024;
const DETAILS_MAX_BYTES = 8 * 1024;
const MAX_DEPTH = 34; // the array and the object around `details`, whose own nesting is at most 32 (API.md)

const invalid = (why: string) => new OAuthError('invalid_request', `authorization_details: ${why}`);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * RFC 9396 §2: a JSON array of authorization detail objects. Here exactly one, of type
 * `mfa_proxy_action`, with `action`, optional `resource` and `details` (the fields and rules of
 * `POST /v1/step-ups`); parsed as strict JSON (API.md v1.1: no duplicate keys, lone surrogates,
 * non-finite numbers, deep nesting). Unknown members or types are refused (RFC 9396 §5:
 * invalid_authorization_details is the authorization endpoint's; CIBA §13 says invalid_request).
 */
export function parseAuthorizationDetails(text: string): AuthorizationDetail {
  if (text.length > MAX_TEXT) throw invalid('too long');
  let parsed: unknown;
  try {
    parsed = parseStrictJson(text, { maxDepth: MAX_DEPTH });
  } catch (err) {
    if (err instanceof StrictJsonError) throw invalid(`not valid JSON (${err.fault.replace(/_/g, ' ')})`);
    throw err;
  }
  if (!Array.isArray(parsed) || parsed.length !== 1) throw invalid('must be a JSON array of exactly one object');
  const d = parsed[0];
  if (!isObject(d)) throw invalid('must be a JSON array of exactly one object');
  const unknown = Object.keys(d).find((k) => !['type', 'action', 'resource', 'details'].includes(k));
  if (unknown !== undefined) throw invalid('only type, action, resource and details are accepted');
  if (d.type !== MFA_PROXY_ACTION) throw invalid(`type must be ${MFA_PROXY_ACTION}`);
  if (typeof d.action !== 'string' || !ACTION.test(d.action)) throw invalid('action must match [a-z0-9_.:-]{1,64}');
  if (d.resource !== undefined && (typeof d.resource !== 'string' || d.resource.length === 0 || d.resource.length > 512 || CONTROL.test(d.resource))) {
    throw invalid('resource must be 1 to 512 printable characters');
  }
  if (d.details !== undefined && (!isObject(d.details) || Buffer.byteLength(canonicalJson(d.details)) > DETAILS_MAX_BYTES)) throw invalid('details must be a JSON object of at most 8 KiB');
  return { type: MFA_PROXY_ACTION, action: d.action, ...(d.resource !== undefined ? { resource: d.resource as string } : {}), ...(d.details !== undefined ? { details: d.details as Record<string, unknown> } : {}) };
}
