import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { AuditLog } from '../../common/audit-log.js';
import type { HumanPrincipal } from '../../common/auth/human.js';
import { Cascades } from '../../common/cascade.js';
import { Clock } from '../../common/clock.js';
import { Cipher, type CipherContext } from '../../common/crypto/cipher.js';
import { sha256 } from '../../common/crypto/tokens.js';
import { AppError, notFound } from '../../common/errors/app-error.js';
import { isId, newId } from '../../common/ids.js';
import { resolvePublicAddress } from '../../common/net/ssrf.js';
import { isUniqueViolation } from '../../database/errors.js';
import { Serializer } from '../../database/serializer.js';
import { OutboxService } from '../events/outbox.service.js';
import type { CreatePushSubscriptionDto, CreatedPushSubscriptionDto } from './dto/push.dto.js';
import { pushEndpointProblem, pushKeysOrProblem } from './push-endpoint.js';
import { PushSubscriptionEntity } from './push-subscription.entity.js';
import { PushSubscriptionsRepository } from './push-subscriptions.repository.js';

/** Subscriptions one human may hold (browsers and devices); a dead one goes at its first 404/410. */
export const MAX_SUBSCRIPTIONS_PER_USER = 10;
/** How long the registration waits for the endpoint's name to resolve. */
const RESOLVE_TIMEOUT_MS = 5_000;

const aad = (id: string, column: 'endpoint_enc' | 'p256dh_enc' | 'auth_enc'): CipherContext => ({ table: 'push_subscriptions', column, id });

/** What a delivery needs of a subscription, opened. */
export interface OpenSubscription {
  id: string;
  userId: string;
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

/**
 * Web Push subscriptions of the signed-in human (API.md v1.1 "Web Push") and the fan-out of a
 * `step_up.created` event into one push per subscription, in the transaction that creates the
 * step-up (OutboxService.onAddedIn): a push is written with its step-up or not at all.
 */
@Injectable()
export class PushService implements OnModuleInit {
  constructor(
    private readonly repo: PushSubscriptionsRepository,
    private readonly outbox: OutboxService,
    private readonly cipher: Cipher,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly cascades: Cascades,
    private readonly serializer: Serializer,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.outbox.onAddedIn('step_up.created', (m, e) => this.fanOutIn(m, e.appId, e.data));
    // A deleted user's subscriptions go with it, in the deletion's transaction.
    this.cascades.on('user.deleted', (m, e) => this.repo.deleteForUser(m, e.appId, e.userId));
  }

  vapidPublicKey(): { publicKey: string } {
    return { publicKey: this.config.vapid.publicKey };
  }

  /**
   * Registers (or refreshes) a browser's subscription for this human. The same endpoint again is
   * the same subscription (new keys, same id); an endpoint another user of the app registered
   * moves to this one (one browser profile, the human signed in now), so nobody's prompts reach
   * another's browser.
   */
  async subscribe(human: HumanPrincipal, dto: CreatePushSubscriptionDto): Promise<CreatedPushSubscriptionDto> {
    const problem = pushEndpointProblem(dto.endpoint, this.config.webhookAllowPrivate);
    if (problem) throw new AppError('validation_failed', problem);
    const keys = pushKeysOrProblem(dto.keys);
    if (typeof keys === 'string') throw new AppError('validation_failed', keys);
    const url = new URL(dto.endpoint);
    // The SSRF guard of webhooks, as at delivery: every address the name resolves to must be public.
    await this.resolvableOrThrow(url);
    const endpointHash = sha256(dto.endpoint).toString('hex');
    const now = this.clock.now();
    try {
      return await this.serializer.run(`push-subscriptions:${human.appId}:${human.userId}`, async (m) => {
        const existing = await this.repo.findByEndpointHash(m, human.appId, endpointHash);
        if (existing?.userId === human.userId) {
          await this.repo.updateKeys(m, human.appId, existing.id, { p256dhEnc: this.cipher.encrypt(keys.p256dh, aad(existing.id, 'p256dh_enc')), authEnc: this.cipher.encrypt(keys.auth, aad(existing.id, 'auth_enc')), updatedAt: now });
          return { id: existing.id };
        }
        if (existing) await this.repo.delete(human.appId, existing.id, m);
        if ((await this.repo.countForUser(m, human.appId, human.userId)) >= MAX_SUBSCRIPTIONS_PER_USER) {
          throw new AppError('conflict', `at most ${MAX_SUBSCRIPTIONS_PER_USER} push subscriptions per user: delete one first`);
        }
        const id = newId('pushSubscription');
        await this.repo.insert(m, Object.assign(new PushSubscriptionEntity(), {
          id, appId: human.appId, userId: human.userId, endpointHash, endpointOrigin: url.origin.slice(0, 300),
          endpointEnc: this.cipher.encrypt(dto.endpoint, aad(id, 'endpoint_enc')),
          p256dhEnc: this.cipher.encrypt(keys.p256dh, aad(id, 'p256dh_enc')),
          authEnc: this.cipher.encrypt(keys.auth, aad(id, 'auth_enc')),
          createdAt: now, updatedAt: now,
        }));
        await this.audit.record(m, { appId: human.appId, type: 'push_subscription.created', outcome: 'success', userId: human.userId, resource: id });
        return { id };
      });
    } catch (err) {
      // Another user registered the same endpoint at the same moment.
      if (isUniqueViolation(err)) throw new AppError('conflict', 'this endpoint was being registered at the same time; try again');
      throw err;
    }
  }

  async unsubscribe(human: HumanPrincipal, id: string): Promise<void> {
    // Another user's subscription is not found (API.md: never 403 across owners).
    if (!isId('pushSubscription', id)) throw notFound('push subscription');
    const deleted = await this.repo.ds.transaction(async (m) => {
      if (!(await this.repo.delete(human.appId, id, m, human.userId))) return false;
      await this.audit.record(m, { appId: human.appId, type: 'push_subscription.deleted', outcome: 'success', userId: human.userId, resource: id });
      return true;
    });
    if (!deleted) throw notFound('push subscription');
  }

  /** A subscription opened for delivery, or null when it is gone (deleted, moved, cascaded). */
  async openForDelivery(appId: string, id: string): Promise<OpenSubscription | null> {
    const s = await this.repo.find(appId, id);
    if (!s) return null;
    return {
      id: s.id,
      userId: s.userId,
      endpoint: this.cipher.decryptString(s.endpointEnc, aad(s.id, 'endpoint_enc')),
      keys: { p256dh: this.cipher.decryptString(s.p256dhEnc, aad(s.id, 'p256dh_enc')), auth: this.cipher.decryptString(s.authEnc, aad(s.id, 'auth_enc')) },
    };
  }

  /** The push service answered 404/410 (RFC 8030 §7.3: the subscription expired): it goes. */
  async removeGone(appId: string, id: string): Promise<void> {
    await this.repo.delete(appId, id);
  }

  /**
   * In the transaction that adds `step_up.created`: one push row per subscription of the user. The
   * rows carry only public data; the endpoint and keys are read (and opened) at delivery.
   */
  private async fanOutIn(m: EntityManager, appId: string, data: Record<string, unknown>): Promise<void> {
    if (typeof data.userId !== 'string' || typeof data.stepUpId !== 'string') return;
    const subscriptions = await this.repo.listForUser(m, appId, data.userId);
    if (subscriptions.length === 0) return;
    await this.outbox.addPushes(m, appId, subscriptions.map((s) => ({
      subscriptionId: s.id, origin: s.endpointOrigin, userId: data.userId, stepUpId: data.stepUpId, agentId: data.agentId,
      action: data.action, bindingCode: data.bindingCode, expiresAt: data.expiresAt,
    })));
  }

  private async resolvableOrThrow(url: URL): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        resolvePublicAddress(url, this.config.webhookAllowPrivate),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), RESOLVE_TIMEOUT_MS))),
      ]);
    } catch {
      throw new AppError('validation_failed', 'endpoint must resolve to a public address');
    } finally {
      clearTimeout(timer);
    }
  }
}
