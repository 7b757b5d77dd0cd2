import { Column, Entity, PrimaryColumn } from 'typeorm';
import { JsonColumn, TimeColumn } from '../../database/columns.js';

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
}
