import { Module } from '@nestjs/common';
import { AgentsModule } from '../agents/agents.module.js';
import { AppsModule } from '../apps/apps.module.js';
import { FactorsModule } from '../factors/factors.module.js';
import { StepUpsModule } from '../step-ups/step-ups.module.js';
import { UsersModule } from '../users/users.module.js';
import { ApprovalsController } from './approvals.controller.js';
import { ApprovalsService } from './approvals.service.js';

@Module({
  imports: [StepUpsModule, FactorsModule, AppsModule, AgentsModule, UsersModule],
  controllers: [ApprovalsController],
  providers: [ApprovalsService],
  // The dashboard (me module) decides inline through the same service methods.
  exports: [ApprovalsService],
})
export class ApprovalsModule {}
