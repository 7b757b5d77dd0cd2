import { Body, Controller, Delete, Get, HttpCode, Param, Post, Put, Req, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiHeader, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblemResponses } from '../../common/openapi.js';
import type { FastifyRequest } from 'fastify';
import { CurrentAgent, CurrentApp, CurrentCaller, type AgentPrincipal, type AppPrincipal, type Caller } from '../../common/auth/principals.js';
import { AppKeyGuard } from '../apps/app-key.guard.js';
import { AgentGuard } from '../oauth/agent.guard.js';
import { AgentOrAppGuard } from '../oauth/agent-or-app.guard.js';
import { CreateConnectionDto, CreateTaskDto, DepositRefreshTokenDto, TaskDto } from './dto/task.dto.js';
import { TasksService } from './tasks.service.js';

const DPOP_HEADER = { name: 'DPoP', required: true, description: 'RFC 9449 proof signed by the task’s worker key' };

@ApiTags('agent: tasks and the vault')
@ApiProblemResponses(400, 401, 403, 404)
@Controller('v1')
export class TasksController {
  constructor(private readonly tasks: TasksService) {}

  @Post('tasks')
  @UseGuards(AgentGuard)
  @ApiBearerAuth('agentToken')
  @ApiOperation({ summary: 'Start a long-running task bound to a worker key' })
  @ApiCreatedResponse({ type: TaskDto })
  create(@CurrentAgent() agent: AgentPrincipal, @Body() dto: CreateTaskDto): Promise<TaskDto> {
    return this.tasks.create(agent, dto);
  }

  @Get('tasks/:id')
  @UseGuards(AgentOrAppGuard)
  @ApiBearerAuth('agentToken')
  @ApiBearerAuth('appKey')
  @ApiOkResponse({ type: TaskDto })
  get(@CurrentCaller() caller: Caller, @Param('id') id: string): Promise<TaskDto> {
    return this.tasks.get(caller, id);
  }

  @Delete('tasks/:id')
  @HttpCode(204)
  @UseGuards(AgentOrAppGuard)
  @ApiBearerAuth('agentToken')
  @ApiBearerAuth('appKey')
  @ApiOperation({ summary: 'End the task: no more tokens, and its live worker tokens stop working' })
  @ApiNoContentResponse()
  end(@CurrentCaller() caller: Caller, @Param('id') id: string): Promise<void> {
    return this.tasks.end(caller, id);
  }

  @Post('tasks/:id/token')
  @HttpCode(200)
  @ApiHeader(DPOP_HEADER)
  @ApiOperation({ summary: 'The worker draws an ephemeral DPoP-bound agent token (default 300 s)' })
  @ApiOkResponse({ schema: { type: 'object', required: ['access_token', 'token_type', 'expires_in', 'scope'], properties: { access_token: { type: 'string' }, token_type: { type: 'string', enum: ['DPoP'] }, expires_in: { type: 'integer' }, scope: { type: 'string' } } } })
  @ApiProblemResponses(410)
  workerToken(@Req() req: FastifyRequest, @Param('id') id: string) {
    return this.tasks.workerToken(req, id);
  }

  @Post('tasks/:id/connections/:connectionId/token')
  @HttpCode(200)
  @ApiHeader(DPOP_HEADER)
  @ApiOperation({ summary: 'The user’s upstream access token for the worker (the refresh token stays in the vault)' })
  @ApiOkResponse({ schema: { type: 'object', required: ['access_token'], properties: { access_token: { type: 'string' }, expires_in: { type: 'integer' }, scope: { type: 'string' } } } })
  @ApiProblemResponses(409, 410, 502)
  upstreamToken(@Req() req: FastifyRequest, @Param('id') id: string, @Param('connectionId') connectionId: string) {
    return this.tasks.upstreamToken(req, id, connectionId);
  }

  @Post('connections')
  @UseGuards(AppKeyGuard)
  @ApiBearerAuth('appKey')
  @ApiOperation({ summary: 'Register an upstream OAuth provider (client secret stored encrypted)' })
  @ApiCreatedResponse({ schema: { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' } }, example: { id: 'con_...', name: 'Google Drive' } } })
  createConnection(@CurrentApp() app: AppPrincipal, @Body() dto: CreateConnectionDto): Promise<{ id: string; name: string }> {
    return this.tasks.createConnection(app.appId, dto);
  }

  @Put('users/:id/connections/:connectionId')
  @HttpCode(204)
  @UseGuards(AppKeyGuard)
  @ApiBearerAuth('appKey')
  @ApiOperation({ summary: 'Deposit the user’s upstream refresh token in the vault' })
  @ApiNoContentResponse()
  deposit(@CurrentApp() app: AppPrincipal, @Param('id') userId: string, @Param('connectionId') connectionId: string, @Body() dto: DepositRefreshTokenDto): Promise<void> {
    return this.tasks.deposit(app.appId, userId, connectionId, dto.refreshToken);
  }
}
