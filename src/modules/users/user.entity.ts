import { Column, Entity, PrimaryColumn } from 'typeorm';
import { TimeColumn } from '../../database/columns.js';

@Entity({ name: 'users' })
export class UserEntity {
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 200, name: 'external_id' }) externalId: string;
  @Column({ type: 'varchar', length: 200, name: 'display_name' }) displayName: string;
  @Column({ type: 'varchar', length: 320, nullable: true }) email: string | null;
  @TimeColumn('created_at') createdAt: number;
}
