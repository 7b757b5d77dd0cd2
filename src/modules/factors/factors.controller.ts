import { Body, Controller, Delete, HttpCode, Param, Post, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiNoContentResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblemResponses } from '../../common/openapi.js';
import { CurrentApp, type AppPrincipal } from '../../common/auth/principals.js';
import { AppKeyGuard } from '../apps/app-key.guard.js';
import { CreateEnrollmentLinkDto, EnrollmentLinkDto } from './dto/factor.dto.js';
import { EnrollmentService } from './enrollment/enrollment.service.js';
import { FactorsService } from './factors.service.js';

@ApiTags('users')
@ApiBearerAuth('appKey')
@UseGuards(AppKeyGuard)
@ApiProblemResponses(400, 401, 404)
@Controller('v1/users/:id')
export class FactorsController {
  constructor(
    private readonly enrollment: EnrollmentService,
    private readonly factors: FactorsService,
  ) {}

  @Post('enrollment-links')
  @ApiOperation({ summary: 'A link the human opens to enroll passkeys and authenticator apps' })
  @ApiCreatedResponse({ type: EnrollmentLinkDto })
  createLink(@CurrentApp() app: AppPrincipal, @Param('id') id: string, @Body() dto: CreateEnrollmentLinkDto): Promise<EnrollmentLinkDto> {
    return this.enrollment.createLink(app.appId, id, dto.expiresIn);
  }

  @Delete('factors/:factorId')
  @HttpCode(204)
  @ApiNoContentResponse()
  deleteFactor(@CurrentApp() app: AppPrincipal, @Param('id') id: string, @Param('factorId') factorId: string): Promise<void> {
    return this.factors.delete(app.appId, id, factorId);
  }
}
