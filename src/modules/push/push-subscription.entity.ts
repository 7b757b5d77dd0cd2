import { Column, Entity, PrimaryColumn } from 'typeorm';
import { TimeColumn } from '../../database/columns.js';

/**
 * A browser's Web Push subscription (RFC 8030 §4, W3C Push API) for one human of one app. The
 * endpoint is a capability (whoever holds it and our VAPID key can wake the browser) and `p256dh`
 * / `auth` are the user agent's message-encryption keys (RFC 8291 §2): all three sealed with
 * `Cipher`, bound to the row. `endpoint_hash` (SHA-256) finds a re-registered endpoint;
 * `endpoint_origin` is public (the push service) and bounds concurrency per push service.
 */
@Entity({ name: 'push_subscriptions' })
export class PushSubscriptionEntity {
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 40, name: 'user_id' }) userId: string;
  @Column({ type: 'varchar', length: 64, name: 'endpoint_hash' }) endpointHash: string;
  @Column({ type: 'varchar', length: 300, name: 'endpoint_origin' }) endpointOrigin: string;
  @Column({ type: 'text', name: 'endpoint_enc' }) endpointEnc: string;
  @Column({ type: 'text', name: 'p256dh_enc' }) p256dhEnc: string;
  @Column({ type: 'text', name: 'auth_enc' }) authEnc: string;
  @TimeColumn('created_at') createdAt: number;
  @TimeColumn('updated_at') updatedAt: number;
}
