import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblemResponses } from '../../common/openapi.js';
import { AdminGuard } from '../../common/auth/admin.guard.js';
import { AppsService } from './apps.service.js';
import { AppDto, CreateAppDto, CreatedApiKeyDto, CreatedAppDto, UpdateAppDto } from './dto/app.dto.js';

@ApiTags('operator')
@ApiBearerAuth('adminToken')
@UseGuards(AdminGuard)
@ApiProblemResponses(400, 401, 404, 409)
@Controller('v1/apps')
export class AppsController {
  constructor(private readonly apps: AppsService) {}

  @Post()
  @ApiOperation({ summary: 'Register an app (tenant); returns its first API key and webhook secret, once' })
  @ApiCreatedResponse({ type: CreatedAppDto })
  create(@Body() dto: CreateAppDto): Promise<CreatedAppDto> {
    return this.apps.create(dto);
  }

  @Get(':id')
  @ApiOkResponse({ type: AppDto })
  get(@Param('id') id: string): Promise<AppDto> {
    return this.apps.get(id);
  }

  @Patch(':id')
  @ApiOkResponse({ type: AppDto })
  update(@Param('id') id: string, @Body() dto: UpdateAppDto): Promise<AppDto> {
    return this.apps.update(id, dto);
  }

  @Post(':id/api-keys')
  @ApiOperation({ summary: 'Issue an additional API key (older keys keep working until deleted)' })
  @ApiCreatedResponse({ type: CreatedApiKeyDto })
  createKey(@Param('id') id: string): Promise<CreatedApiKeyDto> {
    return this.apps.createKey(id);
  }

  @Post(':id/webhook-secret')
  @ApiOperation({ summary: 'Rotate the webhook secret; the previous one keeps signing (second signature) for 24 h' })
  @ApiCreatedResponse({ schema: { type: 'object', properties: { webhookSecret: { type: 'string', description: 'shown once' }, previousValidUntil: { type: 'string', format: 'date-time' } }, example: { webhookSecret: 'whsec_...', previousValidUntil: '2026-01-01T00:00:00.000Z' } } })
  rotateWebhookSecret(@Param('id') id: string): Promise<{ webhookSecret: string; previousValidUntil: string }> {
    return this.apps.rotateWebhookSecret(id);
  }

  @Delete(':id/api-keys/:keyId')
  @HttpCode(204)
  @ApiNoContentResponse()
  deleteKey(@Param('id') id: string, @Param('keyId') keyId: string): Promise<void> {
    return this.apps.deleteKey(id, keyId);
  }
}
