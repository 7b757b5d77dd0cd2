/** The stable `code` strings of API.md, each with its HTTP status. The compiler checks the table is complete. */
export type ErrorCode =
  | 'validation_failed'
  | 'malformed_json'
  | 'unsupported_media_type'
  | 'payload_too_large'
  | 'headers_too_large'
  | 'request_timeout'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'conflict'
  | 'action_not_permitted'
  | 'no_enrolled_factor'
  | 'not_pending'
  | 'expired'
  | 'idempotency_key_reuse'
  | 'rate_limited'
  | 'too_many_pending'
  | 'agent_cooldown'
  | 'slow_down'
  | 'webauthn_verification_failed'
  | 'invalid_code'
  | 'invalid_dpop_proof'
  | 'task_ended'
  | 'reauth_required'
  | 'csrf_required'
  | 'last_factor'
  | 'upstream_error'
  | 'service_unavailable'
  | 'internal_error';

export const ERROR_STATUS = {
  validation_failed: 400,
  malformed_json: 400,
  unsupported_media_type: 415,
  payload_too_large: 413,
  headers_too_large: 431,
  request_timeout: 408,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  action_not_permitted: 403,
  no_enrolled_factor: 409,
  not_pending: 409,
  expired: 410,
  idempotency_key_reuse: 422,
  rate_limited: 429,
  too_many_pending: 429,
  agent_cooldown: 429,
  slow_down: 429,
  webauthn_verification_failed: 400,
  invalid_code: 400,
  invalid_dpop_proof: 401,
  task_ended: 410,
  // 409 at the vault (the upstream grant is gone); the dashboard's factor changes answer 403 (AppErrorOptions.status).
  reauth_required: 409,
  csrf_required: 403,
  last_factor: 409,
  upstream_error: 502,
  service_unavailable: 503,
  internal_error: 500,
} as const satisfies Record<ErrorCode, number>;

export const ERROR_TITLE = {
  validation_failed: 'Invalid request',
  malformed_json: 'Malformed JSON body',
  unsupported_media_type: 'Unsupported media type',
  payload_too_large: 'Request body too large',
  headers_too_large: 'Request headers too large',
  request_timeout: 'Request timeout',
  unauthorized: 'Unauthorized',
  forbidden: 'Forbidden',
  not_found: 'Not found',
  method_not_allowed: 'Method not allowed',
  conflict: 'Conflict',
  action_not_permitted: 'Action not permitted',
  no_enrolled_factor: 'No enrolled factor',
  not_pending: 'Step-up is no longer pending',
  expired: 'Expired',
  idempotency_key_reuse: 'Idempotency key reused with another request',
  rate_limited: 'Too many requests',
  too_many_pending: 'Too many pending step-ups',
  agent_cooldown: 'Agent cooled down',
  slow_down: 'Polling too fast',
  webauthn_verification_failed: 'WebAuthn verification failed',
  invalid_code: 'Invalid code',
  invalid_dpop_proof: 'Invalid DPoP proof',
  task_ended: 'Task ended',
  reauth_required: 'Re-consent required',
  csrf_required: 'CSRF header required',
  last_factor: 'Last factor',
  upstream_error: 'Upstream error',
  service_unavailable: 'Service unavailable',
  internal_error: 'Internal server error',
} as const satisfies Record<ErrorCode, string>;
