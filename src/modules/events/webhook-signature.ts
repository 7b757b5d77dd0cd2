import { Webhook } from 'standardwebhooks';

/**
 * Standard Webhooks signature (`v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`), made
 * by the `standardwebhooks` library. Several secrets (rotation: current and previous) give
 * space-separated signatures; a verifier holding either accepts the message.
 */
export function signWebhook(secrets: string[], id: string, timestamp: number, body: string): string {
  const at = new Date(timestamp * 1000);
  return secrets.map((secret) => new Webhook(secret).sign(id, at, body)).join(' ');
}
