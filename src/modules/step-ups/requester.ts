import { Injectable } from '@nestjs/common';
import type { Caller } from '../../common/auth/principals.js';
import { canonicalJson } from '../../common/canonical-json.js';
import { AppError, notFound } from '../../common/errors/app-error.js';
import { isId } from '../../common/ids.js';
import { RequestContext } from '../../common/request-context.js';
import { AgentsRepository } from '../agents/agents.repository.js';
import { AgentTokensService } from '../oauth/agent-tokens.service.js';
import type { AgentEntity } from '../agents/agent.entity.js';
import type { BackchannelChannel, Initiator } from './step-up.entity.js';

/**
 * Who asks, with what authority: an agent within its token's scope (a worker token within its
 * task's), or its app on its behalf within the agent's boundaries (API.md v1.1).
 */
export interface Requester {
  initiator: Initiator;
  appId: string;
  agentId: string;
  userId: string;
  model: string;
  taskId: string | null;
  /** What the step-up's action must lie within. */
  authority: string[];
  /** What sudo scopes must lie within. */
  sudoAuthority: string[];
  tokenScopes: string[];
  jkt: string | null;
  workerTaskId: string | null;
  /** A backchannel request's own binding (its channel options): replaces the token binding in the request hash. */
  binding?: string;
}

/** What a step-up is bound to on the agent's side: the asking token's scopes, DPoP key and task. */
export function tokenBinding(scopes: string[], jkt: string | null, workerTaskId: string | null): string {
  return canonicalJson({ scopes: [...new Set(scopes)].sort(), jkt, task: workerTaskId });
}
export const requesterBinding = (r: Requester) => (r.initiator === 'app' ? 'app' : r.binding !== undefined ? `${r.initiator}:${r.binding}` : tokenBinding(r.tokenScopes, r.jkt, r.workerTaskId));

/** Turns the caller of `POST /v1/step-ups` into a Requester. */
@Injectable()
export class Requesters {
  constructor(
    private readonly agents: AgentsRepository,
    private readonly agentTokens: AgentTokensService,
  ) {}

  /** The requesting agent's identity and authority; for an app, the named agent of that app (404 otherwise). */
  async resolveOrThrow(caller: Caller, agentId: string | undefined): Promise<Requester> {
    if (caller.kind === 'agent') {
      const a = caller.agent;
      if (agentId !== undefined) throw new AppError('validation_failed', 'agentId is for app-initiated step-ups (app API key) only');
      // A worker token is held to its task's scopes, for sudo too; any other token may be elevated within the boundaries.
      const sudoAuthority = a.workerTaskId !== null ? a.scopes : a.boundaries;
      return { initiator: 'agent', appId: a.appId, agentId: a.agentId, userId: a.userId, model: a.model, taskId: a.taskId, authority: a.scopes, sudoAuthority, tokenScopes: a.scopes, jkt: a.jkt, workerTaskId: a.workerTaskId };
    }
    if (agentId === undefined) throw new AppError('validation_failed', 'agentId is required when an app asks on its agent’s behalf');
    const agent = isId('agent', agentId) ? await this.agents.findLive(caller.app.appId, agentId) : null;
    if (!agent) throw notFound('agent');
    if (!(await this.agentTokens.isActive(agent.id, agent.userId))) throw new AppError('conflict', 'the agent is suspended, or its user was deleted');
    RequestContext.assign({ agentId: agent.id, userId: agent.userId, model: agent.model });
    const b = agent.permissionBoundaries;
    return { initiator: 'app', appId: agent.appId, agentId: agent.id, userId: agent.userId, model: agent.model, taskId: null, authority: b, sudoAuthority: [], tokenScopes: [], jkt: null, workerTaskId: null };
  }

  /**
   * A client-authenticated agent at a backchannel endpoint (CIBA bc-authorize, TAC). There is no
   * access token, so no token scope: its authority is its permission boundaries, which the app set
   * and can narrow at any time (a narrowing voids what is approved and not yet handed out). That is
   * the same authority the app-initiated path uses, and what a client credentials token without
   * `scope` would carry; every such request still needs the human's approval. Sudo scopes too lie
   * within the boundaries, and the sudo token holds only the granted scopes (no token to add to).
   */
  backchannel(agent: AgentEntity, channel: BackchannelChannel, binding: string): Requester {
    const b = agent.permissionBoundaries;
    return { initiator: channel, appId: agent.appId, agentId: agent.id, userId: agent.userId, model: agent.model, taskId: null, authority: b, sudoAuthority: b, tokenScopes: [], jkt: null, workerTaskId: null, binding };
  }
}
