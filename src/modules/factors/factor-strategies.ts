import { Injectable } from '@nestjs/common';
import type { FactorType } from './factor.entity.js';
import type { FactorStrategy } from './factor-strategy.js';
import { TotpStrategy } from './totp/totp.strategy.js';
import { WebauthnStrategy } from './webauthn/webauthn.strategy.js';

/** The one place that picks a strategy by factor type. */
@Injectable()
export class FactorStrategies {
  private readonly byType: Record<FactorType, FactorStrategy>;

  constructor(webauthn: WebauthnStrategy, totp: TotpStrategy) {
    this.byType = { webauthn, totp };
  }

  for(type: FactorType): FactorStrategy {
    return this.byType[type];
  }
}
