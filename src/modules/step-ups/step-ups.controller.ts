import { Body, Controller, Delete, Get, Headers, Param, Post, Query, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiHeader, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { CurrentAgent, type AgentPrincipal } from '../../common/auth/principals.js';
import { AgentGuard } from '../oauth/agent.guard.js';
import { CreatedStepUpDto, CreateStepUpDto, StepUpDto, StepUpQuery } from './dto/step-up.dto.js';
import { StepUpsService } from './step-ups.service.js';

@ApiTags('agent: step-ups')
@ApiBearerAuth('agentToken')
@UseGuards(AgentGuard)
@Controller('v1/step-ups')
export class StepUpsController {
  constructor(private readonly stepUps: StepUpsService) {}

  @Post()
  @ApiOperation({ summary: 'Ask the human to approve one exact action' })
  @ApiHeader({ name: 'Idempotency-Key', required: false })
  @ApiCreatedResponse({ type: CreatedStepUpDto, description: '201 created; 200 for an idempotent replay or an identical pending request' })
  async create(
    @CurrentAgent() agent: AgentPrincipal,
    @Body() dto: CreateStepUpDto,
    @Headers('idempotency-key') key: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<CreatedStepUpDto> {
    const { status, body } = await this.stepUps.create(agent, dto, key);
    reply.status(status);
    return body;
  }

  @Get(':id')
  @ApiOperation({ summary: 'Status; long-polls with ?wait=; carries the token once after approval' })
  @ApiOkResponse({ type: StepUpDto })
  get(@CurrentAgent() agent: AgentPrincipal, @Param('id') id: string, @Query() query: StepUpQuery): Promise<StepUpDto> {
    return this.stepUps.get(agent, id, query.wait ?? 0);
  }

  @Delete(':id')
  @ApiOperation({ summary: 'Cancel a pending step-up' })
  @ApiOkResponse({ schema: { example: { status: 'cancelled' } } })
  cancel(@CurrentAgent() agent: AgentPrincipal, @Param('id') id: string): Promise<{ status: 'cancelled' }> {
    return this.stepUps.cancel(agent, id);
  }
}
