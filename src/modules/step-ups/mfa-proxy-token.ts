import { Inject, Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { KeysService } from '../keys/keys.service.js';
import type { StepUpEntity } from './step-up.entity.js';

export const MFA_PROXY_TYP = 'mfa-proxy+jwt';
/** The jti of every single-use token we mint (MFA-proxy and TAC tokens): a random UUID, lower case. */
const TOKEN_JTI = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Whether `v` has the form of a jti we mint: nothing else is ever looked up or consumed. */
export function isTokenJti(v: unknown): v is string {
  return typeof v === 'string' && TOKEN_JTI.test(v);
}

/** API.md: default 120 s (30..600). */
export const MFA_PROXY_TOKEN_TTL_S = 120;

/** The claims of an MFA-proxy token (API.md): one approved step-up, for one agent and one exact action. */
export interface MfaProxyClaims {
  iss: string; aud: string; sub: string; client_id: string; act: { sub: string }; jti: string; iat: number; exp: number;
  auth_time: number; amr: string[]; step_up_id: string; action: string; resource: string | null; details_hash: string; model: string; task_id: string | null;
}

/** Mints the single-use token of an approved step-up at hand-out. Its jti and its hash are stored (by the caller). */
@Injectable()
export class MfaProxyTokenMinter {
  constructor(
    private readonly keys: KeysService,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async mint(s: StepUpEntity): Promise<{ token: string; jti: string; expiresAt: number }> {
    const now = this.clock.nowSeconds();
    const jti = randomUUID();
    const claims: MfaProxyClaims = {
      iss: this.config.issuer,
      aud: s.appId,
      sub: s.userId,
      client_id: s.agentId,
      act: { sub: s.agentId },
      jti,
      iat: now,
      exp: now + MFA_PROXY_TOKEN_TTL_S,
      auth_time: Math.floor((s.decidedAt ?? this.clock.now()) / 1000),
      amr: s.amr ?? [],
      step_up_id: s.id,
      action: s.action,
      resource: s.resource,
      details_hash: s.detailsHash,
      model: s.model,
      task_id: s.taskId,
    };
    return { token: await this.keys.sign({ ...claims }, MFA_PROXY_TYP), jti, expiresAt: claims.exp * 1000 };
  }
}
