import { Module } from '@nestjs/common';
import { KeysModule } from '../keys/keys.module.js';
import { OAuthModule } from '../oauth/oauth.module.js';
import { StepUpsModule } from '../step-ups/step-ups.module.js';
import { UsersModule } from '../users/users.module.js';
import { CibaController } from './ciba.controller.js';
import { CibaService } from './ciba.service.js';

/** OpenID CIBA Core 1.0 (API.md v1.1): a thin adapter that creates and redeems ordinary step-ups. */
@Module({
  imports: [OAuthModule, StepUpsModule, UsersModule, KeysModule],
  controllers: [CibaController],
  providers: [CibaService],
})
export class CibaModule {}
