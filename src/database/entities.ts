import { AgentEntity } from '../modules/agents/agent.entity.js';
import { AppApiKeyEntity, AppEntity } from '../modules/apps/app.entity.js';
import { SigningKeyEntity } from '../modules/keys/signing-key.entity.js';
import { RevokedTokenEntity } from '../modules/oauth/revoked-token.entity.js';
import { UserEntity } from '../modules/users/user.entity.js';
import { AgentActivityEntity, AuditEventEntity, AuditHeadEntity } from '../modules/audit/audit-event.entity.js';
import { OutboxEntity } from '../modules/events/outbox.entity.js';
import { StepUpEntity } from '../modules/step-ups/step-up.entity.js';
import { ConnectionEntity, TaskEntity, UserConnectionEntity } from '../modules/tasks/task.entity.js';
import { EnrollmentLinkEntity } from '../modules/factors/enrollment/enrollment-link.entity.js';
import { FactorEntity } from '../modules/factors/factor.entity.js';
import { TotpSecretEntity } from '../modules/factors/totp/totp-secret.entity.js';
import { WebauthnCredentialEntity } from '../modules/factors/webauthn/webauthn-credential.entity.js';
import { TxnChallengeEntity } from '../modules/txn-authorization/txn-challenge.entity.js';
import { HumanSessionEntity } from '../modules/me/session/human-session.entity.js';
import { LoginChallengeEntity, SignInLinkEntity } from '../modules/me/sign-in/sign-in-link.entity.js';
import { PushSubscriptionEntity } from '../modules/push/push-subscription.entity.js';

export const ENTITIES = [AppEntity, AppApiKeyEntity, UserEntity, AgentEntity, SigningKeyEntity, RevokedTokenEntity, FactorEntity, WebauthnCredentialEntity, TotpSecretEntity, EnrollmentLinkEntity, StepUpEntity, AuditEventEntity, AuditHeadEntity, AgentActivityEntity, OutboxEntity, TaskEntity, ConnectionEntity, UserConnectionEntity, TxnChallengeEntity, HumanSessionEntity, SignInLinkEntity, LoginChallengeEntity, PushSubscriptionEntity];
