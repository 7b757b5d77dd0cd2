import { Body, Controller, Delete, Get, Headers, Param, Post, Query, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiHeader, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblemResponses } from '../../common/openapi.js';
import type { FastifyReply } from 'fastify';
import { CurrentCaller, type Caller } from '../../common/auth/principals.js';
import { AgentOrAppGuard } from '../oauth/agent-or-app.guard.js';
import { CreateStepUpRequestDto } from './dto/create-step-up-request.dto.js';
import { CreatedStepUpDto, StepUpDto, StepUpQuery } from './dto/step-up.dto.js';
import { StepUpsService } from './step-ups.service.js';

/** Step-ups are asked for by an agent (its token) or by its app on its behalf (API key and `agentId`). */
@ApiTags('agent: step-ups')
@ApiBearerAuth('agentToken')
@ApiBearerAuth('appKey')
@UseGuards(AgentOrAppGuard)
@ApiProblemResponses(400, 401, 403, 404, 409, 429)
@Controller('v1/step-ups')
export class StepUpsController {
  constructor(private readonly stepUps: StepUpsService) {}

  @Post()
  @ApiOperation({ summary: 'Ask the human to approve one exact action (an agent, or its app with agentId)' })
  @ApiHeader({ name: 'Idempotency-Key', required: false })
  @ApiCreatedResponse({ type: CreatedStepUpDto, description: '201 created; 200 for an idempotent replay or an identical pending request' })
  async create(
    @CurrentCaller() caller: Caller,
    @Body() dto: CreateStepUpRequestDto,
    @Headers('idempotency-key') key: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<CreatedStepUpDto> {
    const { status, body } = await this.stepUps.create(caller, dto, key);
    reply.status(status);
    return body;
  }

  @Get(':id')
  @ApiOperation({ summary: 'Status; long-polls with ?wait=; carries the token once after approval, to whoever asked' })
  @ApiOkResponse({ type: StepUpDto })
  get(@CurrentCaller() caller: Caller, @Param('id') id: string, @Query() query: StepUpQuery): Promise<StepUpDto> {
    return this.stepUps.get(caller, id, query.wait ?? 0);
  }

  @Delete(':id')
  @ApiOperation({ summary: 'Cancel a pending step-up' })
  @ApiOkResponse({ schema: { type: 'object', properties: { status: { type: 'string', enum: ['cancelled'] } }, example: { status: 'cancelled' } } })
  cancel(@CurrentCaller() caller: Caller, @Param('id') id: string): Promise<{ status: 'cancelled' }> {
    return this.stepUps.cancel(caller, id);
  }
}
