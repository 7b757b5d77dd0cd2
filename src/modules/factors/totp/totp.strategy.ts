import { Injectable } from '@nestjs/common';
import { generateSecret, generateURI, verify } from 'otplib';
import QRCode from 'qrcode';
import { DataSource, type EntityManager } from 'typeorm';
import { Cipher } from '../../../common/crypto/cipher.js';
import { Clock } from '../../../common/clock.js';
import { newId } from '../../../common/ids.js';
import type { UserEntity } from '../../users/user.entity.js';
import { FactorEntity } from '../factor.entity.js';
import type { FactorStrategy } from '../factor-strategy.js';
import { TotpSecretEntity } from './totp-secret.entity.js';

/** RFC 6238 parameters every authenticator app understands. */
export const TOTP_PERIOD = 30;
export const TOTP_DIGITS = 6;
/** 160 bits: RFC 4226 §4 recommends at least this for HMAC-SHA1. */
export const TOTP_SECRET_BYTES = 20;
const CODE = /^\d{6}$/;

const aad = (factorId: string) => ({ table: 'totp_secrets', column: 'secret_enc', id: factorId });

export interface CreatedTotp {
  factorId: string;
  secret: string;
  otpauthUri: string;
  qrSvg: string;
}

@Injectable()
export class TotpStrategy implements FactorStrategy {
  readonly type = 'totp' as const;
  readonly amr = ['otp'] as const;

  constructor(
    private readonly ds: DataSource,
    private readonly cipher: Cipher,
    private readonly clock: Clock,
  ) {}

  /** A new, inactive TOTP factor. The secret is returned here only, and never logged. */
  async create(user: UserEntity, issuer: string, name: string): Promise<CreatedTotp> {
    const factorId = newId('factor');
    const secret = generateSecret({ length: TOTP_SECRET_BYTES });
    const otpauthUri = generateURI({ issuer, label: user.email ?? user.displayName, secret, digits: TOTP_DIGITS, period: TOTP_PERIOD, algorithm: 'sha1' });
    await this.ds.transaction(async (m) => {
      await m.insert(FactorEntity, { id: factorId, appId: user.appId, userId: user.id, type: 'totp', name, status: 'pending', createdAt: this.clock.now(), lastUsedAt: null });
      await m.insert(TotpSecretEntity, { factorId, appId: user.appId, userId: user.id, secretEnc: this.cipher.encrypt(secret, aad(factorId)), lastUsedStep: null });
    });
    const qrSvg = await QRCode.toString(otpauthUri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
    return { factorId, secret, otpauthUri, qrSvg };
  }

  /**
   * Checks a code (±1 step) and consumes its time step: a code of a step not newer than the last
   * accepted one is refused, and the step is advanced by one conditional update so two racing
   * requests cannot both pass. Returns the step, or null when the code is refused.
   */
  async consumeCode(m: EntityManager, appId: string, factorId: string, code: string): Promise<number | null> {
    if (typeof code !== 'string' || !CODE.test(code)) return null;
    const row = await m.findOneBy(TotpSecretEntity, { appId, factorId });
    if (!row) return null;
    const secret = this.cipher.decryptString(row.secretEnc, aad(factorId));
    const result = await verify({
      secret,
      token: code,
      epoch: this.clock.nowSeconds(),
      period: TOTP_PERIOD,
      digits: TOTP_DIGITS,
      epochTolerance: TOTP_PERIOD, // RFC 6238 §5.2: one step either side
      ...(row.lastUsedStep !== null ? { afterTimeStep: row.lastUsedStep } : {}),
    });
    if (!result.valid || !('timeStep' in result)) return null;
    const step = result.timeStep;
    const res = await m
      .createQueryBuilder()
      .update(TotpSecretEntity)
      .set({ lastUsedStep: step })
      .where('app_id = :appId AND factor_id = :factorId AND (last_used_step IS NULL OR last_used_step < :step)', { appId, factorId, step })
      .execute();
    return (res.affected ?? 0) === 1 ? step : null;
  }

  async removeData(m: EntityManager, factor: FactorEntity): Promise<void> {
    await m.delete(TotpSecretEntity, { appId: factor.appId, factorId: factor.id });
  }
}
