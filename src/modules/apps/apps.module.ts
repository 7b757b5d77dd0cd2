import { Module } from '@nestjs/common';
import { AppKeyGuard } from './app-key.guard.js';
import { AppsController } from './apps.controller.js';
import { AppsRepository } from './apps.repository.js';
import { AppsService } from './apps.service.js';

@Module({
  controllers: [AppsController],
  providers: [AppsRepository, AppsService, AppKeyGuard],
  exports: [AppsService, AppKeyGuard],
})
export class AppsModule {}
