import { Global, Module } from '@nestjs/common';
import { AuditLog } from '../../common/audit-log.js';
import { AppsModule } from '../apps/apps.module.js';
import { AuditController } from './audit.controller.js';
import { AuditRepository } from './audit.repository.js';
import { AuditService } from './audit.service.js';

@Global()
@Module({ imports: [AppsModule], controllers: [AuditController], providers: [AuditRepository, AuditService, { provide: AuditLog, useExisting: AuditService }], exports: [AuditService, AuditLog] })
export class AuditModule {}
