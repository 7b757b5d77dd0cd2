/** The seed's agent session: what an app merges into its own session for an agent's request. */
export interface AgentSession {
  user: { id: string };
  /** ISO 8601: when the agent's token expires. */
  expires: string;
  isAgent: true;
  agentMetadata: {
    agentId: string;
    model: string;
    /** The user the agent acts for. */
    parentId: string;
    /** The agent's permission boundaries. */
    permissionBoundaries: string[];
    /** The scopes of this token. */
    scopes: string[];
    taskId: string | null;
  };
}

/** One exact operation a human approves. */
export interface ActionDescriptor {
  action: string;
  resource?: string;
  details?: Record<string, unknown>;
}

export interface ApprovalSpec extends ActionDescriptor {
  /** Shown to the human: why the app asks. */
  reason: string;
}

export type VerifyInput = (ActionDescriptor & { token: string; agentId?: string }) | { token: string; txn: string };

export interface VerifiedApproval {
  valid: true;
  stepUpId: string;
  userId: string;
  agentId: string;
  model: string;
  taskId: string | null;
  action: string;
  resource: string | null;
  detailsHash: string;
  method: string;
  approvedAt: string;
  [claim: string]: unknown;
}

export type VerifyResult = VerifiedApproval | { valid: false; reason: string };

/** What `requireApproval` resolves with: the consumed approval. */
export type Approved = VerifiedApproval;

/** A request as the framework-neutral core sees it. */
export interface IncomingRequest {
  method: string;
  /**
   * The URL the client called, or its path and query: the DPoP `htu` is the app's configured
   * public origin (`publicUrl`, else `resource`) with this path, never the request's `Host`.
   */
  url: string;
  headers: Record<string, string | string[] | undefined> | Headers;
  /** The agent already authenticated for this request (by agentAuth or AgentAuthGuard): its proof is not checked twice. */
  agentSession?: AgentSession;
}

/** An event delivered to the app's webhook (Standard Webhooks) or SSE stream. */
export interface MfaProxyEvent {
  id: string;
  type: string;
  createdAt?: string;
  data: Record<string, unknown>;
  [key: string]: unknown;
}

/** An operation that needs a recent sudo grant (RFC 9470 step-up authentication). */
export interface SudoSpec {
  /** The scopes the operation needs; the agent SDK asks the human for a sudo grant of exactly these. */
  scopes: string[];
  /** At most this many seconds since the human approved the grant (`auth_time`): RFC 9470 `max_age`. */
  maxAge: number;
  /** The challenge's `error_description`. */
  reason?: string;
}

/** What `requireSudo` resolves with: the agent and the sudo grant its token carries. */
export interface SudoGrant {
  session: AgentSession;
  /** The step-up whose approval granted it. */
  stepUpId: string;
  /** ISO 8601: when the human approved (`auth_time`). */
  authTime: string;
  /** The token's scopes. */
  scopes: string[];
}
