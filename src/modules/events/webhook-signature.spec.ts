import { createHmac, randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { signWebhook } from './webhook-signature.js';

const secret = () => `whsec_${randomBytes(32).toString('base64')}`;

describe('signWebhook', () => {
  const id = 'evt_AAAAAAAAAAAAAAAAAAAAAA';
  const body = JSON.stringify({ id, type: 'step_up.created', data: { approvalUrl: 'https://x/approve/y' } });

  it('signs as Standard Webhooks: HMAC-SHA256 over id.timestamp.body with the base64 key', () => {
    const s = secret();
    const timestamp = Math.floor(Date.now() / 1000);
    const expected = createHmac('sha256', Buffer.from(s.slice('whsec_'.length), 'base64')).update(`${id}.${timestamp}.${body}`).digest('base64');
    expect(signWebhook([s], id, timestamp, body)).toBe(`v1,${expected}`);
  });

  it('during rotation carries two signatures, and the stock verifier accepts either secret alone', () => {
    const [current, previous] = [secret(), secret()];
    const timestamp = Math.floor(Date.now() / 1000);
    const signature = signWebhook([current, previous], id, timestamp, body);
    expect(signature).toMatch(/^v1,[A-Za-z0-9+/]+=* v1,[A-Za-z0-9+/]+=*$/);
    const headers = { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signature };
    expect(new Webhook(current).verify(body, headers)).toMatchObject({ id });
    expect(new Webhook(previous).verify(body, headers)).toMatchObject({ id });
    expect(() => new Webhook(secret()).verify(body, headers)).toThrow();
  });
});
