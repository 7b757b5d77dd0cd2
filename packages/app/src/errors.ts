/** The agent's credential is missing or bad: answer `status` (401) with `WWW-Authenticate: wwwAuthenticate`. */
export class AgentAuthError extends Error {
  override readonly name = 'AgentAuthError';
  readonly status = 401 as const;
  constructor(
    message: string,
    readonly wwwAuthenticate: string,
    /** RFC 6750 / RFC 9449 error code, absent when no credential was sent (RFC 6750 §3.1). */
    readonly code?: 'invalid_token' | 'invalid_dpop_proof' | 'invalid_request',
  ) {
    super(message);
  }
}

/**
 * A guarded operation was called without a valid single-use approval for exactly it: answer
 * `status` with `wwwAuthenticate` (the transaction challenge, when the agent can take one) and `body`.
 */
export class ApprovalRequiredError extends Error {
  override readonly name = 'ApprovalRequiredError';
  constructor(
    message: string,
    readonly status: 401 | 403,
    readonly wwwAuthenticate: string | undefined,
    readonly body: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** An answer of the service that is not what the call expects. */
export class MfaProxyError extends Error {
  override readonly name = 'MfaProxyError';
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | undefined,
    readonly body?: unknown,
  ) {
    super(message);
  }
}

export async function errorFrom(res: Response, what: string): Promise<MfaProxyError> {
  const text = await res.text().catch(() => '');
  let body: Record<string, unknown> | undefined;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = undefined;
  }
  const code = typeof body?.code === 'string' ? body.code : typeof body?.error === 'string' ? body.error : undefined;
  return new MfaProxyError(`${what}: ${res.status}${code ? ` ${code}` : ''}`, res.status, code, body);
}
