import type { Cipher, CipherContext } from '../../common/crypto/cipher.js';

/**
 * Fields of an event's `data` that are a capability of the human (API.md: `approvalUrl` reaches
 * the human through the app), or a client's secret (a CIBA ping's body and bearer token):
 * encrypted at rest in the outbox, opened only to build the webhook body, the SSE message or the
 * ping, so the delivered payload is exactly what was added.
 */
export const SEALED_FIELDS = ['approvalUrl', 'pingBody', 'pingBearer'] as const;

/** A sealed value in place of the field (same key, so the payload's field order is kept). */
interface Sealed {
  $sealed: string;
}

export interface EventPayload {
  id: string;
  type: string;
  createdAt: string;
  data: Record<string, unknown>;
}

/** Bound to the event (GCM additional data): a sealed value copied into another row does not open. */
const context = (eventId: string, field: string): CipherContext => ({ table: 'outbox', column: `payload.data.${field}`, id: eventId });

const isSealed = (v: unknown): v is Sealed => typeof v === 'object' && v !== null && typeof (v as Sealed).$sealed === 'string' && Object.keys(v).length === 1;

export function sealEventData(cipher: Cipher, eventId: string, data: Record<string, unknown>): Record<string, unknown> {
  if (!SEALED_FIELDS.some((f) => typeof data[f] === 'string')) return data;
  const sealed: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(data)) {
    sealed[key] = (SEALED_FIELDS as readonly string[]).includes(key) && typeof value === 'string' ? { $sealed: cipher.encrypt(value, context(eventId, key)) } : value;
  }
  return sealed;
}

/** The payload as delivered. Throws DecryptionError when a sealed field does not open (moved, tampered, unknown key). */
export function openEventPayload(cipher: Cipher, payload: EventPayload): EventPayload {
  const data = payload.data ?? {};
  if (!SEALED_FIELDS.some((f) => isSealed(data[f]))) return payload;
  const open: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(data)) {
    open[key] = (SEALED_FIELDS as readonly string[]).includes(key) && isSealed(value) ? cipher.decryptString(value.$sealed, context(payload.id, key)) : value;
  }
  return { ...payload, data: open };
}
