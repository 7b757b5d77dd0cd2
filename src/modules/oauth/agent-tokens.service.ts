import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { PubSub } from '../../common/cache/pubsub.js';
import { LoadingCache } from '../../common/cache/loading-cache.js';
import { TtlCache } from '../../common/cache/ttl-cache.js';
import type { AgentPrincipal } from '../../common/auth/principals.js';
import { withinBoundaries } from '../../common/scopes.js';
import { AgentsRepository } from '../agents/agents.repository.js';
import type { AgentEntity } from '../agents/agent.entity.js';
import { KeysService, MAX_TOKEN_LIFETIME_MS } from '../keys/keys.service.js';
import { UsersRepository } from '../users/users.repository.js';
import { AGENT_CHANGED } from '../../common/cache/channels.js';
import { RevocationList } from './revocation-list.js';
import { WorkerTasksPort } from './worker-tasks.port.js';
import { TokenInvalidError, verifyOwnJwt } from './token-verifier.js';

export const AGENT_TOKEN_TYP = 'at+jwt';

/** Agent tokens whose signature and claims were verified, by their exact text: an agent sends the same token for minutes. */
const VERIFIED_TOKENS_MAX = 10_000;
/** Seconds of skew tolerated on `iat` (as verifyOwnJwt). */
const IAT_TOLERANCE_S = 5;

interface VerifiedToken {
  claims: Readonly<AgentTokenClaims>;
  /** The key set the signature was checked against: a key retired or removed since means checking again. */
  keySet: number;
}

/** What the guard and client authentication need to know about an agent, cached per instance and dropped on change. */
interface AgentState {
  /** Not suspended or revoked, and its user not deleted. */
  active: boolean;
  /** The row as read (secret hash and keys included, for client authentication). */
  agent: AgentEntity;
  appId: string;
  userId: string;
  model: string;
  boundaries: string[];
  rateLimitPerMinute: number;
}

export interface IssueAgentToken {
  agent: AgentEntity;
  scopes: string[];
  ttlSeconds: number;
  taskId?: string | null;
  jkt?: string | null;
  /** Sudo elevation (step-up) or the task a worker token belongs to (`tsk`). */
  extra?: { acr?: string; auth_time?: number; step_up_id?: string; tsk?: string };
}

export interface AgentTokenClaims extends JWTPayload {
  client_id: string;
  scope: string;
  model: string;
  act: { sub: string };
  task_id?: string;
  cnf?: { jkt: string };
  acr?: string;
  auth_time?: number;
  step_up_id?: string;
  /** Worker tokens: the task (tsk_...) whose end revokes them. */
  tsk?: string;
}

/** Issues RFC 9068 agent access tokens and turns a presented one into a principal. */
@Injectable()
export class AgentTokensService implements OnModuleInit {
  /** Agent id → state; a lookup that raced with an invalidation does not fill it (LoadingCache). */
  private readonly states: LoadingCache<AgentState, null>;
  private readonly verified: TtlCache<VerifiedToken>;

  constructor(
    private readonly keys: KeysService,
    private readonly agents: AgentsRepository,
    private readonly users: UsersRepository,
    private readonly revocations: RevocationList,
    private readonly tasks: WorkerTasksPort,
    private readonly pubsub: PubSub,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.states = new LoadingCache<AgentState, null>((agentId) => this.loadState(agentId), config.principalCacheSeconds * 1000, 50_000, () => clock.now());
    // Entries outlive no token (exp is checked on every hit); the TTL only bounds how long a stale one is kept.
    this.verified = new TtlCache(MAX_TOKEN_LIFETIME_MS, VERIFIED_TOKENS_MAX, () => clock.now());
  }

  onModuleInit(): void {
    this.pubsub.subscribe(AGENT_CHANGED, (m) => this.forget(String(m.agentId)));
    this.pubsub.subscribe('cache.reset', () => this.states.clear());
  }

  /** Whether the agent may still act (not suspended or revoked, user not deleted); cached like the guard's check. */
  async isActive(agentId: string, userId: string): Promise<boolean> {
    const state = await this.state(agentId);
    return !!state?.active && state.userId === userId;
  }

  /** Whether the agent may still act and its current boundaries still allow `scope` (cached like the guard's check). */
  async permits(agentId: string, userId: string, scope: string): Promise<boolean> {
    const state = await this.state(agentId);
    return !!state?.active && state.userId === userId && withinBoundaries(state.boundaries, scope);
  }

  /**
   * `permits` from this instance's cache alone, without a query: undefined when the agent is not
   * cached. For checks made before a token's signature is (the MFA-proxy token's hot path): claims
   * anyone can write then cost no database lookup; a miss goes to the signed path, which asks `permits`.
   */
  permitsCached(agentId: string, userId: string, scope: string): boolean | undefined {
    const state = this.states.peek(agentId);
    if (!state) return undefined;
    return state.active && state.userId === userId && withinBoundaries(state.boundaries, scope);
  }

  /**
   * The agent, if it may act (active, user not deleted): client authentication's lookup, from the
   * same cache as the guard's, dropped on every change of the agent (suspension, revocation,
   * secret rotation, new keys) on every instance.
   */
  async activeAgent(agentId: string): Promise<AgentEntity | null> {
    const state = await this.state(agentId);
    return state?.active ? state.agent : null;
  }

  /** Drops an agent from this instance's cache (done on every instance through pub/sub). */
  forget(agentId: string): void {
    this.states.delete(agentId);
  }

  async issue(input: IssueAgentToken): Promise<{ token: string; expiresIn: number; jti: string }> {
    const now = this.clock.nowSeconds();
    const jti = randomUUID();
    const claims: AgentTokenClaims = {
      iss: this.config.issuer,
      sub: input.agent.userId,
      aud: [this.config.issuer, input.agent.appId],
      client_id: input.agent.id,
      act: { sub: input.agent.id },
      scope: input.scopes.join(' '),
      jti,
      iat: now,
      exp: now + input.ttlSeconds,
      model: input.agent.model,
      ...(input.taskId ? { task_id: input.taskId } : {}),
      ...(input.jkt ? { cnf: { jkt: input.jkt } } : {}),
      ...(input.extra ?? {}),
    };
    return { token: await this.keys.sign(claims, AGENT_TOKEN_TYP), expiresIn: input.ttlSeconds, jti };
  }

  /**
   * Verifies signature and claims of an agent token; throws TokenInvalidError. No state checks.
   * The same token text, once verified under the current key set, is not verified again: only
   * its time claims are (the exact bytes were signed by us; the cache is bounded, and a change
   * of the key set, such as a retired key, empties it in effect). Revocation and the agent's state are
   * checked on every request by `principal`.
   */
  async verify(token: string): Promise<AgentTokenClaims> {
    const now = this.clock.nowSeconds();
    const hit = this.verified.get(token);
    if (hit && hit.keySet === this.keys.generation) {
      if (hit.claims.exp! <= now) {
        this.verified.delete(token);
        throw new TokenInvalidError('expired', 'token expired');
      }
      if (hit.claims.iat! > now + IAT_TOLERANCE_S || (hit.claims.nbf !== undefined && hit.claims.nbf > now + IAT_TOLERANCE_S)) {
        throw new TokenInvalidError('invalid', 'token not yet valid');
      }
      return hit.claims as AgentTokenClaims;
    }
    const keySet = this.keys.generation;
    const claims = await this.verifyFully(token, now);
    this.verified.set(token, { claims: Object.freeze(claims), keySet });
    return claims;
  }

  private async verifyFully(token: string, nowSeconds: number): Promise<AgentTokenClaims> {
    const { payload } = await verifyOwnJwt(this.keys, token, {
      typ: AGENT_TOKEN_TYP,
      issuer: this.config.issuer,
      audience: this.config.issuer,
      nowSeconds,
      toleranceSeconds: IAT_TOLERANCE_S,
    });
    const claims = payload as AgentTokenClaims;
    if (typeof claims.client_id !== 'string' || typeof claims.scope !== 'string' || claims.act?.sub !== claims.client_id) {
      throw new TokenInvalidError('malformed', 'missing agent claims');
    }
    return claims;
  }

  /**
   * The principal behind verified claims, or null when the token must not work any more:
   * revoked token, agent suspended or revoked, parent user deleted. Cached per agent.
   */
  async principal(claims: AgentTokenClaims): Promise<AgentPrincipal | null> {
    if (this.revocations.isRevoked(claims.jti!)) return null;
    if (claims.tsk !== undefined && !(await this.tasks.isActive(claims.tsk))) return null;
    const state = await this.state(claims.client_id);
    if (!state?.active || state.userId !== claims.sub) return null;
    return {
      appId: state.appId,
      userId: state.userId,
      agentId: claims.client_id,
      model: state.model,
      taskId: claims.task_id ?? null,
      // Boundaries narrowed after issue take effect at once.
      scopes: claims.scope.split(' ').filter((s) => s && withinBoundaries(state.boundaries, s)),
      boundaries: state.boundaries,
      rateLimitPerMinute: state.rateLimitPerMinute,
      jti: claims.jti!,
      exp: claims.exp!,
      jkt: claims.cnf?.jkt ?? null,
      workerTaskId: claims.tsk ?? null,
      stepUpId: claims.step_up_id ?? null,
      acr: claims.acr ?? null,
    };
  }

  private state(agentId: string): AgentState | Promise<AgentState | null> {
    return this.states.get(agentId);
  }

  private async loadState(agentId: string): Promise<AgentState | null> {
    const agent = await this.agents.findById(agentId);
    if (!agent) return null;
    const user = await this.users.find(agent.appId, agent.userId);
    return {
      active: agent.status === 'active' && user !== null,
      agent,
      appId: agent.appId,
      userId: agent.userId,
      model: agent.model,
      boundaries: agent.permissionBoundaries,
      rateLimitPerMinute: agent.rateLimitPerMinute,
    };
  }
}
