import { TableColumn, type MigrationInterface, type QueryRunner } from 'typeorm';
import { str } from './helpers.js';

/** A task remembers the token that created it: revoking that token ends the task. */
export class TaskCreator1764460000000 implements MigrationInterface {
  name = 'TaskCreator1764460000000';

  async up(q: QueryRunner): Promise<void> {
    await q.addColumn('tasks', new TableColumn(str('creator_jti', 64, true)));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropColumn('tasks', 'creator_jti');
  }
}
