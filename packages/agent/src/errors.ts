/** An answer of the service that is not what the call expects (RFC 9457 problem or RFC 6749 error). */
export class MfaProxyError extends Error {
  override readonly name: string = 'MfaProxyError';
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | undefined,
    readonly body?: unknown,
  ) {
    super(message);
  }
}

/** A step-up that did not end in an approval; `.stepUpId` names it, `.reason` says why when the service did. */
export abstract class StepUpError extends Error {
  constructor(
    message: string,
    readonly stepUpId: string,
    readonly reason: string | undefined,
  ) {
    super(message);
  }
}

export class StepUpDeniedError extends StepUpError {
  override readonly name = 'StepUpDeniedError';
  constructor(stepUpId: string, reason?: string) {
    super(`step-up ${stepUpId} was denied${reason ? ` (${reason})` : ''}`, stepUpId, reason);
  }
}

export class StepUpExpiredError extends StepUpError {
  override readonly name = 'StepUpExpiredError';
  constructor(stepUpId: string, reason?: string) {
    super(`step-up ${stepUpId} expired${reason ? ` (${reason})` : ''}`, stepUpId, reason);
  }
}

export class StepUpCancelledError extends StepUpError {
  override readonly name = 'StepUpCancelledError';
  constructor(stepUpId: string, reason?: string) {
    super(`step-up ${stepUpId} was cancelled${reason ? ` (${reason})` : ''}`, stepUpId, reason);
  }
}

/** Reads an error response into an MfaProxyError: `code` from problem+json, `error` from RFC 6749 bodies. */
export async function errorFrom(res: Response, what: string): Promise<MfaProxyError> {
  const text = await res.text().catch(() => '');
  let body: Record<string, unknown> | undefined;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = undefined;
  }
  const code = typeof body?.code === 'string' ? body.code : typeof body?.error === 'string' ? body.error : undefined;
  const detail = typeof body?.detail === 'string' ? body.detail : typeof body?.error_description === 'string' ? body.error_description : text.slice(0, 200);
  return new MfaProxyError(`${what}: ${res.status}${code ? ` ${code}` : ''}${detail ? `: ${detail}` : ''}`, res.status, code, body);
}
