import { Module } from '@nestjs/common';
import { AgentsModule } from '../agents/agents.module.js';
import { AppsModule } from '../apps/apps.module.js';
import { KeysModule } from '../keys/keys.module.js';
import { UsersModule } from '../users/users.module.js';
import { AgentTokensService } from './agent-tokens.service.js';
import { AgentGuard } from './agent.guard.js';
import { AgentOrAppGuard } from './agent-or-app.guard.js';
import { ClientAuthService } from './client-auth.service.js';
import { OAuthMetadata } from './metadata.js';
import { OAuthController, WhoamiController } from './oauth.controller.js';
import { OAuthService } from './oauth.service.js';
import { RevocationList } from './revocation-list.js';
import { WorkerTasksPort } from './worker-tasks.port.js';
import { DpopProofs } from './dpop-proofs.js';
import { OAuthGrants } from './grants.js';

@Module({
  imports: [AppsModule, UsersModule, AgentsModule, KeysModule],
  controllers: [OAuthController, WhoamiController],
  providers: [AgentTokensService, AgentGuard, AgentOrAppGuard, ClientAuthService, OAuthService, OAuthMetadata, RevocationList, WorkerTasksPort, DpopProofs, OAuthGrants],
  exports: [AgentTokensService, AgentGuard, AgentOrAppGuard, WorkerTasksPort, DpopProofs, OAuthGrants, OAuthService],
})
export class OAuthModule {}
