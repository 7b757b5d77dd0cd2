import { ERROR_STATUS, ERROR_TITLE, type ErrorCode } from './error-codes.js';

export interface AppErrorOptions {
  /** Written to the log only, never to the client. */
  logDetail?: string;
  cause?: unknown;
  /** Extra members of the problem document (RFC 9457 §3.2), e.g. `attemptsRemaining`. */
  extensions?: Record<string, unknown>;
  /** Extra response headers, e.g. `Retry-After`. */
  headers?: Record<string, string>;
  /**
   * A status other than the code's usual one, where API.md gives one code two statuses
   * (`reauth_required`: 409 at the vault, 403 for the dashboard's factor changes).
   */
  status?: number;
}

/** The one error type of the service: a stable code, its status, and a client-safe detail. */
export class AppError extends Error {
  readonly status: number;
  readonly title: string;

  constructor(
    readonly code: ErrorCode,
    /** Client-facing `detail`. Never include secrets or a verifier's internal message. */
    readonly detail: string = ERROR_TITLE[code],
    readonly options: AppErrorOptions = {},
  ) {
    super(detail, { cause: options.cause });
    this.name = 'AppError';
    this.status = options.status ?? ERROR_STATUS[code];
    this.title = ERROR_TITLE[code];
  }
}

export const notFound = (what = 'resource') => new AppError('not_found', `${what} not found`);

/** RFC 6749 §5.2 error codes (plus RFC 9449's `invalid_dpop_proof` and RFC 7009's `unsupported_token_type`). */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'invalid_dpop_proof'
  | 'invalid_token'
  | 'server_error'
  // OpenID CIBA Core 1.0 §11 and §13 (RFC 8628 §3.5 for the polling ones).
  | 'access_denied'
  | 'authorization_pending'
  | 'slow_down'
  | 'expired_token'
  | 'unknown_user_id'
  | 'invalid_binding_message';

const OAUTH_STATUS: Record<OAuthErrorCode, number> = {
  invalid_request: 400,
  invalid_client: 401,
  invalid_grant: 400,
  unauthorized_client: 400,
  unsupported_grant_type: 400,
  invalid_scope: 400,
  invalid_dpop_proof: 400,
  invalid_token: 401,
  server_error: 500,
  access_denied: 400,
  authorization_pending: 400,
  slow_down: 400,
  expired_token: 400,
  unknown_user_id: 400,
  invalid_binding_message: 400,
};

/** An error of an `/oauth/*` endpoint, written as `{ error, error_description }`. */
export class OAuthError extends Error {
  readonly status: number;
  constructor(
    readonly error: OAuthErrorCode,
    readonly description: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(description);
    this.name = 'OAuthError';
    this.status = OAUTH_STATUS[error];
  }
}
