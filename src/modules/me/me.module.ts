import { Module } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { UsersModule } from '../users/users.module.js';
import { MeController } from './me.controller.js';
import { MeService } from './me.service.js';
import { HumanSessionsModule } from './session/human-sessions.module.js';

/** The human's side (API.md v1.1): sign-in, the session, the dashboard's JSON API. */
@Module({
  imports: [HumanSessionsModule, AppsModule, UsersModule],
  controllers: [MeController],
  providers: [MeService],
})
export class MeModule {}
