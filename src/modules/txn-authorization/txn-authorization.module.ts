import { Module } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { OAuthModule } from '../oauth/oauth.module.js';
import { StepUpsModule } from '../step-ups/step-ups.module.js';
import { TxnAuthorizationController } from './txn-authorization.controller.js';
import { TxnAuthorizationService } from './txn-authorization.service.js';
import { TxnChallengesRepository } from './txn-challenges.repository.js';

/** TAC (draft-rosomakho-oauth-txn-challenge-00): challenge validation and polling over ordinary step-ups. */
@Module({
  imports: [AppsModule, OAuthModule, StepUpsModule],
  controllers: [TxnAuthorizationController],
  providers: [TxnAuthorizationService, TxnChallengesRepository],
})
export class TxnAuthorizationModule {}
