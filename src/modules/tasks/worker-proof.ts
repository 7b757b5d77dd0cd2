import { Injectable } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { AppError } from '../../common/errors/app-error.js';
import { DpopError } from '../oauth/dpop.js';
import { DpopProofs } from '../oauth/dpop-proofs.js';

/** RFC 9449 §7.1: the algorithms a worker key (EC P-256 or Ed25519) can sign its proofs with. */
const refuse = (detail: string) => new AppError('invalid_dpop_proof', detail, { headers: { 'WWW-Authenticate': 'DPoP realm="mfa-proxy", error="invalid_dpop_proof", algs="ES256 EdDSA Ed25519"' } });

/** The worker's only credential: a fresh DPoP proof (RFC 9449) signed by the task's worker key. */
@Injectable()
export class WorkerProof {
  constructor(private readonly proofs: DpopProofs) {}

  async verifyOrThrow(req: FastifyRequest, workerJkt: string): Promise<void> {
    let jkt: string;
    try {
      ({ jkt } = await this.proofs.verify(req.headers.dpop, req.method, req.url));
    } catch (err) {
      if (err instanceof DpopError) throw refuse(err.message);
      throw new AppError('service_unavailable', 'replay protection unavailable', { cause: err, headers: { 'Retry-After': '5' } });
    }
    // The proof must be made with the key the task was bound to at creation.
    if (jkt !== workerJkt) throw refuse('the DPoP proof is not signed by this task’s worker key');
  }
}
