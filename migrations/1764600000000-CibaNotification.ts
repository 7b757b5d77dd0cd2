import { TableColumn, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { str, text, time } from './helpers.js';

/**
 * CIBA (issue 13) and the backchannel step-ups behind it (also the Transaction Authorization
 * Challenge): an agent's ping endpoint; on step_ups the handle the client polls with (auth_req_id,
 * stored as SHA-256 for lookup and encrypted so an identical request is answered with the same
 * handle), the time of the last poll (slow_down), the client_notification_token (encrypted: it is
 * sent back), and the channel's own data; pings wait in the outbox under their own status.
 */
export class CibaNotification1764600000000 implements MigrationInterface {
  name = 'CibaNotification1764600000000';

  async up(q: QueryRunner): Promise<void> {
    await q.addColumn('agents', new TableColumn(str('ciba_notification_endpoint', 2048, true)));
    await q.addColumns('step_ups', [
      new TableColumn(str('backchannel_hash', 64, true)),
      new TableColumn(text('backchannel_enc', true)),
      new TableColumn(time('backchannel_polled_at', true)),
      new TableColumn(text('notification_token_enc', true)),
      new TableColumn(text('backchannel_data', true)),
    ]);
    await q.createIndex('step_ups', new TableIndex({ name: 'ux_step_ups_backchannel_hash', columnNames: ['backchannel_hash'], isUnique: true }));
    // The ping dispatcher's claim: due pings only (delivery_status 'ping'), never the webhook rows.
    await q.createIndex('outbox', new TableIndex({ name: 'ix_outbox_ping_due', columnNames: ['next_attempt_at', 'id'], where: "delivery_status = 'ping'" }));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropIndex('outbox', 'ix_outbox_ping_due');
    await q.dropIndex('step_ups', 'ux_step_ups_backchannel_hash');
    for (const c of ['backchannel_data', 'notification_token_enc', 'backchannel_polled_at', 'backchannel_enc', 'backchannel_hash']) await q.dropColumn('step_ups', c);
    await q.dropColumn('agents', 'ciba_notification_endpoint');
  }
}
