/**
 * When a delivery that has now failed `attempts` times may be tried again: exponential backoff from
 * `baseMs`, capped at an hour, with ±20 % jitter so that failures at one moment do not retry together.
 * Shared by webhooks, CIBA pings and Web Pushes.
 */
export function retryAfterFailure(now: number, attempts: number, baseMs: number): number {
  const backoff = Math.min(baseMs * 2 ** (attempts - 1), 3_600_000);
  return now + Math.round(backoff * (0.8 + Math.random() * 0.4));
}
