import { Injectable } from '@nestjs/common';
import { DataSource, MoreThan, type EntityManager } from 'typeorm';
import { ConnectionEntity, TaskEntity, UserConnectionEntity } from './task.entity.js';

/** Tasks, upstream connections and users' deposited credentials: the queries of the tasks module. */
@Injectable()
export class TasksRepository {
  constructor(readonly ds: DataSource) {}

  /** By id alone: the worker proves itself with the task's key, not with an app credential. */
  findById(id: string): Promise<TaskEntity | null> {
    return this.ds.getRepository(TaskEntity).findOneBy({ id });
  }

  find(appId: string, id: string): Promise<TaskEntity | null> {
    return this.ds.getRepository(TaskEntity).findOneBy({ appId, id });
  }

  insert(m: EntityManager, task: TaskEntity): Promise<unknown> {
    return m.insert(TaskEntity, task as never);
  }

  /** active → ended, once: true when this call ended it. */
  async end(m: EntityManager, task: TaskEntity, reason: string, now: number): Promise<boolean> {
    const res = await m.update(TaskEntity, { appId: task.appId, id: task.id, status: 'active' }, { status: 'ended', endReason: reason, endedAt: now });
    return (res.affected ?? 0) > 0;
  }

  activeOfAgent(m: EntityManager, appId: string, agentId: string): Promise<TaskEntity[]> {
    return m.find(TaskEntity, { where: { appId, agentId, status: 'active' } });
  }

  /** A user's active tasks (the dashboard's grants), soonest end first. */
  activeOfUser(appId: string, userId: string, now: number): Promise<TaskEntity[]> {
    return this.ds.getRepository(TaskEntity).find({ where: { appId, userId, status: 'active', expiresAt: MoreThan(now) }, order: { expiresAt: 'ASC' } });
  }

  activeCreatedBy(m: EntityManager, appId: string, agentId: string, creatorJti: string): Promise<TaskEntity[]> {
    return m.find(TaskEntity, { where: { appId, agentId, creatorJti, status: 'active' } });
  }

  findConnection(appId: string, id: string): Promise<ConnectionEntity | null> {
    return this.ds.getRepository(ConnectionEntity).findOneBy({ appId, id });
  }

  insertConnection(m: EntityManager, connection: ConnectionEntity): Promise<unknown> {
    return m.insert(ConnectionEntity, connection as never);
  }

  findUserConnection(appId: string, userId: string, connectionId: string, m?: EntityManager): Promise<UserConnectionEntity | null> {
    return (m ?? this.ds.manager).findOneBy(UserConnectionEntity, { appId, userId, connectionId });
  }

  async saveUserConnection(m: EntityManager, existing: boolean, row: Partial<UserConnectionEntity> & { id: string }): Promise<void> {
    if (existing) await m.update(UserConnectionEntity, { id: row.id }, row);
    else await m.insert(UserConnectionEntity, row as never);
  }

  async deleteUserConnections(m: EntityManager, appId: string, userId: string): Promise<void> {
    await m.delete(UserConnectionEntity, { appId, userId });
  }
}
