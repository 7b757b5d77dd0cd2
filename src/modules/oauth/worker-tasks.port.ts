import { Injectable } from '@nestjs/common';

/**
 * Whether the task behind a worker token (`tsk`) still lets it work. The tasks module, which
 * depends on oauth and not the reverse, plugs its check in at start; without one, worker tokens
 * are refused (fail closed).
 */
@Injectable()
export class WorkerTasksPort {
  private check: ((taskId: string) => Promise<boolean>) | null = null;

  provide(check: (taskId: string) => Promise<boolean>): void {
    this.check = check;
  }

  isActive(taskId: string): Promise<boolean> {
    return this.check ? this.check(taskId) : Promise.resolve(false);
  }
}
