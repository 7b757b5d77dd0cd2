import type { OutboxEntity } from './outbox.entity.js';
import type { DeliveryOutcome } from './outbox.repository.js';

/**
 * When a delivery that has now failed `attempts` times may be tried again: exponential backoff from
 * `baseMs`, capped at an hour, with ±20 % jitter so that failures at one moment do not retry together.
 * Shared by webhooks, CIBA pings and Web Pushes.
 */
export function retryAfterFailure(now: number, attempts: number, baseMs: number): number {
  const backoff = Math.min(baseMs * 2 ** (attempts - 1), 3_600_000);
  return now + Math.round(backoff * (0.8 + Math.random() * 0.4));
}

/**
 * The outcome of a failed attempt: retried later under `retry` status, or given up as `failed` once
 * `maxAttempts` is reached. The error is kept short (it is shown to the app; never a secret).
 */
export function failedAttempt(
  row: Pick<OutboxEntity, 'id' | 'attempts'>,
  error: string,
  o: { now: number; maxAttempts: number; baseMs: number; retry: DeliveryOutcome['status']; failed: DeliveryOutcome['status'] },
): DeliveryOutcome {
  const attempts = row.attempts + 1;
  const lastError = error.slice(0, 300);
  if (attempts >= o.maxAttempts) return { id: row.id, status: o.failed, deliveredAt: null, attempts, lastError, nextAttemptAt: null };
  return { id: row.id, status: o.retry, deliveredAt: null, attempts, lastError, nextAttemptAt: retryAfterFailure(o.now, attempts, o.baseMs) };
}
