import { AgentEntity } from '../modules/agents/agent.entity.js';
import { AppApiKeyEntity, AppEntity } from '../modules/apps/app.entity.js';
import { SigningKeyEntity } from '../modules/keys/signing-key.entity.js';
import { RevokedTokenEntity } from '../modules/oauth/revoked-token.entity.js';
import { UserEntity } from '../modules/users/user.entity.js';

export const ENTITIES = [AppEntity, AppApiKeyEntity, UserEntity, AgentEntity, SigningKeyEntity, RevokedTokenEntity];
