import { Global, Module } from '@nestjs/common';
import { MetricsService } from './metrics.service.js';
import { OpsController } from './ops.controller.js';
import { RetentionService } from './retention.service.js';

@Global()
@Module({ controllers: [OpsController], providers: [MetricsService, RetentionService], exports: [MetricsService] })
export class OpsModule {}
