import { Module } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { UsersModule } from '../users/users.module.js';
import { AgentsController } from './agents.controller.js';
import { AgentsRepository } from './agents.repository.js';
import { AgentsService } from './agents.service.js';

@Module({
  imports: [AppsModule, UsersModule],
  controllers: [AgentsController],
  providers: [AgentsRepository, AgentsService],
  exports: [AgentsService, AgentsRepository],
})
export class AgentsModule {}
