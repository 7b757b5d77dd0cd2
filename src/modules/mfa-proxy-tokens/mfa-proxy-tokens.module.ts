import { Module } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { KeysModule } from '../keys/keys.module.js';
import { OAuthModule } from '../oauth/oauth.module.js';
import { StepUpsModule } from '../step-ups/step-ups.module.js';
import { MfaProxyTokensController } from './mfa-proxy-tokens.controller.js';
import { MfaProxyTokensService } from './mfa-proxy-tokens.service.js';
import { TokenConsumer } from './token-consumer.js';

@Module({
  imports: [AppsModule, KeysModule, OAuthModule, StepUpsModule],
  controllers: [MfaProxyTokensController],
  providers: [MfaProxyTokensService, TokenConsumer],
  exports: [MfaProxyTokensService],
})
export class MfaProxyTokensModule {}
