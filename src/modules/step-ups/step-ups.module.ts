import { Module } from '@nestjs/common';
import { AgentsModule } from '../agents/agents.module.js';
import { AppsModule } from '../apps/apps.module.js';
import { FactorsModule } from '../factors/factors.module.js';
import { KeysModule } from '../keys/keys.module.js';
import { OAuthModule } from '../oauth/oauth.module.js';
import { StepUpsBackchannel } from './backchannel.js';
import { FatigueService } from './fatigue.service.js';
import { MfaProxyTokenMinter } from './mfa-proxy-token.js';
import { TxnTokenMinter } from './txn-token.js';
import { Requesters } from './requester.js';
import { StepUpCascades } from './step-up-cascades.js';
import { StepUpDecisions } from './step-up-decisions.js';
import { StepUpsController } from './step-ups.controller.js';
import { StepUpsRepository } from './step-ups.repository.js';
import { StepUpsService } from './step-ups.service.js';

@Module({
  imports: [OAuthModule, FactorsModule, KeysModule, AgentsModule, AppsModule],
  controllers: [StepUpsController],
  providers: [StepUpsRepository, StepUpDecisions, StepUpsService, FatigueService, StepUpCascades, MfaProxyTokenMinter, TxnTokenMinter, Requesters, StepUpsBackchannel],
  exports: [StepUpsRepository, StepUpDecisions, StepUpsService, FatigueService, StepUpsBackchannel],
})
export class StepUpsModule {}
