import { Inject, Injectable } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { ReplayCache } from '../../common/cache/replay-cache.js';
import { AppError } from '../../common/errors/app-error.js';
import { DpopError, verifyDpopProof } from '../oauth/dpop.js';

const refuse = (detail: string) => new AppError('invalid_dpop_proof', detail, { headers: { 'WWW-Authenticate': 'DPoP error="invalid_dpop_proof", algs="ES256 EdDSA"' } });

/** The worker's only credential: a fresh DPoP proof (RFC 9449) signed by the task's worker key. */
@Injectable()
export class WorkerProof {
  constructor(
    private readonly replay: ReplayCache,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async verifyOrThrow(req: FastifyRequest, workerJkt: string): Promise<void> {
    let jkt: string;
    try {
      ({ jkt } = await verifyDpopProof(req.headers.dpop, {
        htm: req.method,
        htu: this.config.publicUrl + req.url.split('?')[0],
        nowSeconds: this.clock.nowSeconds(),
        iatWindowSeconds: this.config.dpopIatWindowSeconds,
        replay: this.replay,
      }));
    } catch (err) {
      if (err instanceof DpopError) throw refuse(err.message);
      // The replay cache (Redis) cannot be reached: fail closed.
      throw new AppError('service_unavailable', 'replay protection unavailable', { cause: err, headers: { 'Retry-After': '5' } });
    }
    // The proof must be made with the key the task was bound to at creation.
    if (jkt !== workerJkt) throw refuse('the DPoP proof is not signed by this task’s worker key');
  }
}
