import { Column, Entity, PrimaryColumn } from 'typeorm';
import { JsonColumn, TimeColumn } from '../../database/columns.js';

/** node-postgres returns bigint as a string; sequence values stay far below 2^53. */
const bigintAsNumber = {
  to: (v: number | null | undefined) => v,
  from: (v: string | number | null) => (v === null || v === undefined ? null : Number(v)),
};

/** An event for the app, written in the transaction of the change that causes it (delivery: the events issue). */
@Entity({ name: 'outbox' })
export class OutboxEntity {
  /** Stable event id (`evt_...`): the webhook-id of every delivery attempt. */
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 64 }) type: string;
  @JsonColumn('payload') payload: Record<string, unknown>;
  @TimeColumn('created_at') createdAt: number;
  @TimeColumn('delivered_at', { nullable: true }) deliveredAt: number | null;
  /**
   * pending → delivered | failed (retries exhausted) | no_endpoint (the app has no webhookUrl).
   * A CIBA ping (type `ciba.ping`, PingDispatcher): ping → delivered | ping_failed; the webhook
   * dispatcher, the app's retry and the event stream never take these rows.
   * A Web Push (type `push.notification`, PushDispatcher in modules/push): push → delivered | push_failed,
   * likewise never a webhook or stream event.
   */
  @Column({ type: 'varchar', length: 16, name: 'delivery_status', default: 'pending' }) deliveryStatus: 'pending' | 'delivered' | 'failed' | 'no_endpoint' | 'ping' | 'ping_failed' | 'push' | 'push_failed';
  @Column({ type: 'integer', default: 0 }) attempts: number;
  @TimeColumn('next_attempt_at', { nullable: true }) nextAttemptAt: number | null;
  /** A dispatcher's claim; a crashed dispatcher's claim lapses at this time. */
  @TimeColumn('claimed_until', { nullable: true }) claimedUntil: number | null;
  @Column({ type: 'varchar', length: 64, name: 'claimed_by', nullable: true }) claimedBy: string | null;
  @Column({ type: 'text', name: 'last_error', nullable: true }) lastError: string | null;
  /**
   * Position in the event stream, assigned after commit by the publisher (outbox-publisher.ts);
   * null until then. SSE delivers in this order, which is commit order.
   */
  @Column({ type: 'bigint', name: 'stream_seq', nullable: true, transformer: bigintAsNumber }) streamSeq: number | null;
}
