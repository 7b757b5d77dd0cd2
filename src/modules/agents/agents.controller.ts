import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblemResponses } from '../../common/openapi.js';
import { CurrentApp, type AppPrincipal } from '../../common/auth/principals.js';
import { AppKeyGuard } from '../apps/app-key.guard.js';
import { AgentsService } from './agents.service.js';
import { AgentDto, AgentSecretDto, CreateAgentDto, CreatedAgentDto, ListAgentsQuery, UpdateAgentDto } from './dto/agent.dto.js';

@ApiTags('agents')
@ApiBearerAuth('appKey')
@UseGuards(AppKeyGuard)
@ApiProblemResponses(400, 401, 404, 409)
@Controller('v1/agents')
export class AgentsController {
  constructor(private readonly agents: AgentsService) {}

  @Post()
  @ApiOperation({ summary: 'Create an agent acting for a user, within permission boundaries' })
  @ApiCreatedResponse({ type: CreatedAgentDto })
  create(@CurrentApp() app: AppPrincipal, @Body() dto: CreateAgentDto): Promise<CreatedAgentDto> {
    return this.agents.create(app.appId, dto);
  }

  @Get()
  @ApiOperation({ summary: "The app's agents (not revoked), optionally of one user" })
  @ApiOkResponse({ type: [AgentDto] })
  list(@CurrentApp() app: AppPrincipal, @Query() query: ListAgentsQuery): Promise<AgentDto[]> {
    return this.agents.list(app.appId, query.userId);
  }

  @Get(':id')
  @ApiOkResponse({ type: AgentDto })
  get(@CurrentApp() app: AppPrincipal, @Param('id') id: string): Promise<AgentDto> {
    return this.agents.get(app.appId, id);
  }

  @Patch(':id')
  @ApiOperation({ summary: 'Rename, change boundaries, suspend or resume' })
  @ApiOkResponse({ type: AgentDto })
  update(@CurrentApp() app: AppPrincipal, @Param('id') id: string, @Body() dto: UpdateAgentDto): Promise<AgentDto> {
    return this.agents.update(app.appId, id, dto);
  }

  @Post(':id/secret')
  @ApiOperation({ summary: 'Rotate the client secret (the old one stops working)' })
  @ApiCreatedResponse({ type: AgentSecretDto })
  rotateSecret(@CurrentApp() app: AppPrincipal, @Param('id') id: string): Promise<AgentSecretDto> {
    return this.agents.rotateSecret(app.appId, id);
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Revoke the agent for good: its tokens stop working at once' })
  @ApiNoContentResponse()
  revoke(@CurrentApp() app: AppPrincipal, @Param('id') id: string): Promise<void> {
    return this.agents.revoke(app.appId, id);
  }
}
