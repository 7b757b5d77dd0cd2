import { Inject, Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { KeysService } from '../keys/keys.service.js';
import type { StepUpEntity } from './step-up.entity.js';

/** RFC 9068: the token of a transaction challenge is an OAuth access token for the app's resource. */
export const TXN_TOKEN_TYP = 'at+jwt';
/** API.md (TAC): at most 120 s; it authorizes one operation (draft-rosomakho-oauth-txn-challenge-00 §5.4). */
export const TXN_TOKEN_TTL_S = 120;

/**
 * What a TAC step-up keeps in `backchannel_data` (set by the txn-authorization module, read here
 * at hand-out and by the approval page): the transaction, the app's resource (the token's
 * audience), the app's reason, the challenge's jti and its one authorization detail.
 */
export interface TxnStepUpData {
  txn: string;
  audience: string;
  reason: string;
  challengeJti: string;
  authorizationDetails: Record<string, unknown>[];
}

/** The claims of a TAC access token (API.md, TAC; RFC 9068 §2.2, RFC 9396 §9, RFC 8417 `txn`, RFC 8693 `act`, RFC 9449 `cnf`). */
export interface TxnTokenClaims {
  iss: string;
  sub: string;
  aud: string;
  client_id: string;
  act: { sub: string };
  jti: string;
  iat: number;
  exp: number;
  txn: string;
  authorization_details: Record<string, unknown>[];
  cnf?: { jkt: string };
}

/** The TAC data of a step-up, or null when it is not a complete TAC step-up. */
export function txnDataOf(s: Pick<StepUpEntity, 'initiator' | 'backchannelData'>): TxnStepUpData | null {
  const d = s.initiator === 'txn' ? s.backchannelData : null;
  if (!d || typeof d.txn !== 'string' || typeof d.audience !== 'string' || typeof d.reason !== 'string' || !Array.isArray(d.authorizationDetails)) return null;
  return d as unknown as TxnStepUpData;
}

/**
 * Mints the access token of an approved TAC step-up at hand-out (as MfaProxyTokenMinter does for
 * MFA-proxy tokens): audience the app's resource, the challenge's `txn` and authorization details,
 * the agent as actor and client, the user as subject, bound to the poll's DPoP key when it sent a
 * proof. Its jti and its hash are stored (by the caller); the app consumes it once through verify.
 */
@Injectable()
export class TxnTokenMinter {
  constructor(
    private readonly keys: KeysService,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async mint(s: StepUpEntity, jkt: string | null): Promise<{ token: string; jti: string; expiresAt: number }> {
    const data = txnDataOf(s);
    if (!data) throw new Error(`step-up ${s.id} is not a transaction challenge's`);
    const now = this.clock.nowSeconds();
    const jti = randomUUID();
    const claims: TxnTokenClaims = {
      iss: this.config.issuer,
      sub: s.userId,
      aud: data.audience,
      client_id: s.agentId,
      act: { sub: s.agentId },
      jti,
      iat: now,
      exp: now + TXN_TOKEN_TTL_S,
      txn: data.txn,
      authorization_details: data.authorizationDetails,
      ...(jkt ? { cnf: { jkt } } : {}),
    };
    return { token: await this.keys.sign({ ...claims }, TXN_TOKEN_TYP), jti, expiresAt: claims.exp * 1000 };
  }
}
