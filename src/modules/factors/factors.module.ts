import { Module } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { UsersModule } from '../users/users.module.js';
import { EnrollmentController } from './enrollment/enrollment.controller.js';
import { EnrollmentRepository } from './enrollment/enrollment.repository.js';
import { EnrollmentService } from './enrollment/enrollment.service.js';
import { FactorStrategies } from './factor-strategies.js';
import { FactorsController } from './factors.controller.js';
import { FactorsRepository } from './factors.repository.js';
import { FactorsService } from './factors.service.js';
import { TotpStrategy } from './totp/totp.strategy.js';
import { WebauthnStrategy } from './webauthn/webauthn.strategy.js';

@Module({
  imports: [AppsModule, UsersModule],
  controllers: [FactorsController, EnrollmentController],
  providers: [FactorsRepository, FactorsService, FactorStrategies, WebauthnStrategy, TotpStrategy, EnrollmentRepository, EnrollmentService],
  exports: [FactorsRepository, FactorsService, FactorStrategies, WebauthnStrategy, TotpStrategy],
})
export class FactorsModule {}
