import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { ReplayCache } from '../../common/cache/replay-cache.js';
import { OAuthError } from '../../common/errors/app-error.js';
import { DpopError, verifyDpopProof, type DpopResult } from './dpop.js';

/** The replay cache (Redis) could not be reached: callers fail closed. */
export class DpopUnavailableError extends Error {
  constructor(override readonly cause: unknown) {
    super('replay protection unavailable');
    this.name = 'DpopUnavailableError';
  }
}

/**
 * DPoP proofs (RFC 9449 §4.3) for a request on this service: `htu` is PUBLIC_URL plus the path,
 * the clock, the `iat` window and the replay cache are ours. Throws DpopError for a bad proof and
 * DpopUnavailableError when replay protection is down (never accepts a proof it could not check).
 */
@Injectable()
export class DpopProofs {
  constructor(
    private readonly replay: ReplayCache,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async verify(proof: string | string[] | undefined, htm: string, url: string, accessToken?: string): Promise<DpopResult> {
    try {
      return await verifyDpopProof(proof, {
        htm,
        htu: this.config.publicUrl + url.split('?')[0],
        nowSeconds: this.clock.nowSeconds(),
        iatWindowSeconds: this.config.dpopIatWindowSeconds,
        replay: this.replay,
        ...(accessToken !== undefined ? { accessToken } : {}),
      });
    } catch (err) {
      if (err instanceof DpopError) throw err;
      throw new DpopUnavailableError(err);
    }
  }

  /**
   * The key a token issued at this `/oauth` endpoint is bound to: the thumbprint of the request's
   * DPoP proof, or null without one. RFC 9449 §5: a proof at a token endpoint applies to every
   * grant, extension grants included; a bad one is `invalid_dpop_proof`, and an unchecked one is
   * never accepted (fail closed).
   */
  async jktAtTokenEndpoint(proof: string | string[] | undefined, path: string): Promise<string | null> {
    if (proof === undefined) return null;
    try {
      return (await this.verify(proof, 'POST', path)).jkt;
    } catch (err) {
      if (err instanceof DpopError) throw new OAuthError('invalid_dpop_proof', err.message);
      throw new OAuthError('server_error', 'replay protection unavailable');
    }
  }
}
