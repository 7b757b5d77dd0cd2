import { Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import { UserEntity } from './user.entity.js';

@Injectable()
export class UsersRepository {
  constructor(readonly ds: DataSource) {}

  find(appId: string, id: string): Promise<UserEntity | null> {
    return this.ds.getRepository(UserEntity).findOneBy({ appId, id });
  }

  findByExternalId(appId: string, externalId: string): Promise<UserEntity | null> {
    return this.ds.getRepository(UserEntity).findOneBy({ appId, externalId });
  }

  insert(m: EntityManager, user: UserEntity): Promise<unknown> {
    return m.insert(UserEntity, user);
  }

  /** Deletes the user's own row; what depends on it is each owning module's (the `user.deleted` cascade). */
  async delete(m: EntityManager, appId: string, id: string): Promise<boolean> {
    const res = await m.delete(UserEntity, { appId, id });
    return (res.affected ?? 0) > 0;
  }
}
