import { Injectable, type OnModuleInit } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Clock } from '../../common/clock.js';
import { PubSub } from '../../common/cache/pubsub.js';
import { TtlCache } from '../../common/cache/ttl-cache.js';
import { TaskEntity } from '../tasks/task.entity.js';

export const TASK_ENDED = 'task.ended';

/** Whether a task still lets its worker's tokens work: cached per instance, dropped when a task ends. */
@Injectable()
export class TaskStatus implements OnModuleInit {
  private readonly cache = new TtlCache<number>(30_000);

  constructor(
    private readonly ds: DataSource,
    private readonly pubsub: PubSub,
    private readonly clock: Clock,
  ) {}

  onModuleInit(): void {
    this.pubsub.subscribe(TASK_ENDED, (m) => this.cache.delete(String(m.taskId)));
    this.pubsub.subscribe('cache.reset', () => this.cache.clear());
  }

  forget(taskId: string): void {
    this.cache.delete(taskId);
  }

  async isActive(taskId: string): Promise<boolean> {
    let expiresAt = this.cache.get(taskId);
    if (expiresAt === undefined) {
      const task = await this.ds.getRepository(TaskEntity).findOneBy({ id: taskId });
      expiresAt = task?.status === 'active' ? task.expiresAt : 0;
      this.cache.set(taskId, expiresAt);
    }
    return expiresAt > this.clock.now();
  }
}
