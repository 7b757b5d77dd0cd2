import { Table, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { appId, id, ref, str, text, time } from './helpers.js';

/**
 * Web Push (issue 15): the humans' push subscriptions (endpoint and keys sealed with Cipher), and
 * the index the push dispatcher claims due deliveries by (outbox rows of delivery status 'push').
 */
export class PushSubscriptions1764900000000 implements MigrationInterface {
  name = 'PushSubscriptions1764900000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createTable(
      new Table({
        name: 'push_subscriptions',
        columns: [
          id(),
          appId(),
          ref('user_id'),
          str('endpoint_hash', 64),
          str('endpoint_origin', 300),
          text('endpoint_enc'),
          text('p256dh_enc'),
          text('auth_enc'),
          time('created_at'),
          time('updated_at'),
        ],
      }),
    );
    // One row per browser endpoint in an app: registering it again (another user signed in on
    // that browser) moves it instead of pushing one human's prompts to another's browser.
    await q.createIndex('push_subscriptions', new TableIndex({ name: 'ux_push_subscriptions_endpoint', columnNames: ['app_id', 'endpoint_hash'], isUnique: true }));
    // A user's subscriptions: the fan-out at step-up creation, the per-user cap, the user.deleted cascade.
    await q.createIndex('push_subscriptions', new TableIndex({ name: 'ix_push_subscriptions_user', columnNames: ['app_id', 'user_id'] }));
    // The push dispatcher's claim: due pushes only, never the webhook rows.
    await q.createIndex('outbox', new TableIndex({ name: 'ix_outbox_push_due', columnNames: ['next_attempt_at', 'id'], where: "delivery_status = 'push'" }));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropIndex('outbox', 'ix_outbox_push_due');
    await q.dropTable('push_subscriptions');
  }
}
