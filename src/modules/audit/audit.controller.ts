import { Controller, Get, Query, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblemResponses } from '../../common/openapi.js';
import { CurrentApp, type AppPrincipal } from '../../common/auth/principals.js';
import { AppKeyGuard } from '../apps/app-key.guard.js';
import { AuditService } from './audit.service.js';
import { AuditPageDto, AuditQuery, AuditVerifyDto } from './dto/audit.dto.js';

@ApiTags('app: audit')
@ApiBearerAuth('appKey')
@UseGuards(AppKeyGuard)
@ApiProblemResponses(400, 401)
@Controller('v1/audit-events')
export class AuditController {
  constructor(private readonly audit: AuditService) {}

  @Get()
  @ApiOperation({ summary: "The app's audit events in sequence order, filtered, with cursor pagination" })
  @ApiOkResponse({ type: AuditPageDto })
  list(@CurrentApp() app: AppPrincipal, @Query() query: AuditQuery): Promise<AuditPageDto> {
    return this.audit.list(app.appId, query);
  }

  @Get('verify')
  @ApiOperation({ summary: 'Recompute the hash chain: reports the first edited, deleted or moved event' })
  @ApiOkResponse({ type: AuditVerifyDto })
  verify(@CurrentApp() app: AppPrincipal): Promise<AuditVerifyDto> {
    return this.audit.verify(app.appId);
  }
}
