import { Injectable, type OnModuleInit } from '@nestjs/common';
import { Clock } from '../../common/clock.js';
import { TASK_ENDED } from '../../common/cache/channels.js';
import { PubSub } from '../../common/cache/pubsub.js';
import { LoadingCache } from '../../common/cache/loading-cache.js';
import { WorkerTasksPort } from '../oauth/worker-tasks.port.js';
import { TasksRepository } from './tasks.repository.js';

/** Whether a task still lets its worker's tokens work: cached per instance, dropped (on every instance) when a task ends. */
@Injectable()
export class TaskStatus implements OnModuleInit {
  /** Task id → until when its worker's tokens work (0: not active). */
  private readonly cache = new LoadingCache<number>((taskId) => this.activeUntil(taskId), 30_000);

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
    return (await this.cache.get(taskId)) > this.clock.now();
  }

  private async activeUntil(taskId: string): Promise<number> {
    const task = await this.repo.findById(taskId);
    return task?.status === 'active' ? task.expiresAt : 0;
  }
}
