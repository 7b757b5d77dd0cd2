import { Injectable, type OnModuleInit } from '@nestjs/common';
import { Clock } from '../../common/clock.js';
import { TASK_ENDED } from '../../common/cache/channels.js';
import { PubSub } from '../../common/cache/pubsub.js';
import { TtlCache } from '../../common/cache/ttl-cache.js';
import { WorkerTasksPort } from '../oauth/worker-tasks.port.js';
import { TasksRepository } from './tasks.repository.js';

/** Whether a task still lets its worker's tokens work: cached per instance, dropped (on every instance) when a task ends. */
@Injectable()
export class TaskStatus implements OnModuleInit {
  private readonly cache = new TtlCache<number>(30_000);

  constructor(
    private readonly repo: TasksRepository,
    private readonly pubsub: PubSub,
    private readonly clock: Clock,
    private readonly port: WorkerTasksPort,
  ) {}

  onModuleInit(): void {
    this.pubsub.subscribe(TASK_ENDED, (m) => this.cache.delete(String(m.taskId)));
    this.pubsub.subscribe('cache.reset', () => this.cache.clear());
    this.port.provide((taskId) => this.isActive(taskId));
  }

  /** Drops the task here and on every other instance. */
  async ended(taskId: string): Promise<void> {
    this.cache.delete(taskId);
    await this.pubsub.publish(TASK_ENDED, { taskId });
  }

  async isActive(taskId: string): Promise<boolean> {
    let expiresAt = this.cache.get(taskId);
    if (expiresAt === undefined) {
      const task = await this.repo.findById(taskId);
      expiresAt = task?.status === 'active' ? task.expiresAt : 0;
      this.cache.set(taskId, expiresAt);
    }
    return expiresAt > this.clock.now();
  }
}
