import { Module } from '@nestjs/common';
import { AgentsModule } from '../agents/agents.module.js';
import { ApprovalsModule } from '../approvals/approvals.module.js';
import { AppsModule } from '../apps/apps.module.js';
import { FactorsModule } from '../factors/factors.module.js';
import { StepUpsModule } from '../step-ups/step-ups.module.js';
import { TasksModule } from '../tasks/tasks.module.js';
import { UsersModule } from '../users/users.module.js';
import { MeAgentsService } from './dashboard/me-agents.service.js';
import { MeFactorsService } from './dashboard/me-factors.service.js';
import { MeStepUpsService } from './dashboard/me-step-ups.service.js';
import { MeResourcesController } from './me-resources.controller.js';
import { MePagesController } from './pages/me-pages.controller.js';
import { MeController } from './me.controller.js';
import { MeService } from './me.service.js';
import { HumanSessionsModule } from './session/human-sessions.module.js';
import { SignInController, SignInLinksController } from './sign-in/sign-in.controller.js';
import { SignInRepository } from './sign-in/sign-in.repository.js';
import { SignInService } from './sign-in/sign-in.service.js';

/**
 * The human's side (API.md v1.1): sign-in, the session, the dashboard's JSON API. Inline
 * approvals go through the approvals module's service; agents, tasks and factors through theirs.
 */
@Module({
  imports: [HumanSessionsModule, AppsModule, UsersModule, FactorsModule, ApprovalsModule, StepUpsModule, AgentsModule, TasksModule],
  controllers: [MeController, MeResourcesController, SignInLinksController, SignInController, MePagesController],
  providers: [MeService, SignInRepository, SignInService, MeStepUpsService, MeAgentsService, MeFactorsService],
})
export class MeModule {}
