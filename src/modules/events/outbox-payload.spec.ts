import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Cipher, DecryptionError } from '../../common/crypto/cipher.js';
import { openEventPayload, sealEventData } from './outbox-payload.js';

describe('outbox payload sealing', () => {
  const cipher = new Cipher(randomBytes(32));
  const url = 'http://localhost:3000/approve/mpx_apr_secret';
  const payload = (id: string, data: Record<string, unknown>) => ({ id, type: 'step_up.created', createdAt: '2026-01-01T00:00:00.000Z', data });

  it('seals approvalUrl in place and opens it to the very same payload, field order included', () => {
    const data = { stepUpId: 'stp_1', status: 'pending', approvalUrl: url, bindingCode: 'ABC' };
    const sealed = sealEventData(cipher, 'evt_1', data);
    expect(JSON.stringify(sealed)).not.toContain('mpx_apr_secret');
    expect(Object.keys(sealed)).toEqual(Object.keys(data));
    expect(JSON.stringify(openEventPayload(cipher, payload('evt_1', sealed)))).toBe(JSON.stringify(payload('evt_1', data)));
  });

  it('leaves events without a secret field as they are', () => {
    const data = { agentId: 'agt_1', reason: 'deleted_by_app' };
    expect(sealEventData(cipher, 'evt_2', data)).toBe(data);
    const p = payload('evt_2', data);
    expect(openEventPayload(cipher, p)).toBe(p);
  });

  it('a sealed value copied into another event does not open', () => {
    const sealed = sealEventData(cipher, 'evt_1', { approvalUrl: url });
    expect(() => openEventPayload(cipher, payload('evt_other', sealed))).toThrow(DecryptionError);
  });
});
