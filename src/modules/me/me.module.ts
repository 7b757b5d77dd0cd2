import { Module } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { UsersModule } from '../users/users.module.js';
import { MeController } from './me.controller.js';
import { MeService } from './me.service.js';
import { HumanSessionsModule } from './session/human-sessions.module.js';
import { FactorsModule } from '../factors/factors.module.js';
import { SignInController, SignInLinksController } from './sign-in/sign-in.controller.js';
import { SignInRepository } from './sign-in/sign-in.repository.js';
import { SignInService } from './sign-in/sign-in.service.js';

/** The human's side (API.md v1.1): sign-in, the session, the dashboard's JSON API. */
@Module({
  imports: [HumanSessionsModule, AppsModule, UsersModule, FactorsModule],
  controllers: [MeController, SignInLinksController, SignInController],
  providers: [MeService, SignInRepository, SignInService],
})
export class MeModule {}
