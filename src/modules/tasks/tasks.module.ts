import { Module } from '@nestjs/common';
import { AgentsModule } from '../agents/agents.module.js';
import { AppsModule } from '../apps/apps.module.js';
import { OAuthModule } from '../oauth/oauth.module.js';
import { UsersModule } from '../users/users.module.js';
import { TasksController } from './tasks.controller.js';
import { TaskStatus } from './task-status.js';
import { TasksRepository } from './tasks.repository.js';
import { TasksService } from './tasks.service.js';
import { VaultService } from './vault.service.js';
import { WorkerProof } from './worker-proof.js';

@Module({
  imports: [AppsModule, AgentsModule, UsersModule, OAuthModule],
  controllers: [TasksController],
  providers: [TasksRepository, TasksService, TaskStatus, VaultService, WorkerProof],
  // The dashboard (me module) lists and ends a user's tasks.
  exports: [TasksService],
})
export class TasksModule {}
