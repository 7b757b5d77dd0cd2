import { Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import { PushSubscriptionEntity } from './push-subscription.entity.js';

/** Every query of push_subscriptions; each filters by app (and user where a human asks). */
@Injectable()
export class PushSubscriptionsRepository {
  constructor(readonly ds: DataSource) {}

  private repo(m?: EntityManager) {
    return (m ?? this.ds.manager).getRepository(PushSubscriptionEntity);
  }

  /** The row of an endpoint in this app, whoever's it is (ux_push_subscriptions_endpoint). */
  findByEndpointHash(m: EntityManager, appId: string, endpointHash: string): Promise<PushSubscriptionEntity | null> {
    return this.repo(m).findOneBy({ appId, endpointHash });
  }

  /** A subscription of this user (ix_push_subscriptions_user), or null. */
  findForUser(appId: string, userId: string, id: string): Promise<PushSubscriptionEntity | null> {
    return this.repo().findOneBy({ appId, userId, id });
  }

  /** A subscription by id within the app: the dispatcher's read at delivery. */
  find(appId: string, id: string): Promise<PushSubscriptionEntity | null> {
    return this.repo().findOneBy({ appId, id });
  }

  /** Ids and push-service origins of a user's subscriptions: the fan-out, in the creating transaction. */
  listForUser(m: EntityManager, appId: string, userId: string): Promise<Pick<PushSubscriptionEntity, 'id' | 'endpointOrigin'>[]> {
    return this.repo(m).find({ select: { id: true, endpointOrigin: true }, where: { appId, userId }, order: { createdAt: 'ASC', id: 'ASC' } });
  }

  countForUser(m: EntityManager, appId: string, userId: string): Promise<number> {
    return this.repo(m).countBy({ appId, userId });
  }

  async insert(m: EntityManager, row: PushSubscriptionEntity): Promise<void> {
    await m.insert(PushSubscriptionEntity, row);
  }

  /** New keys for a re-registered endpoint of the same user (same row, same id). */
  async updateKeys(m: EntityManager, appId: string, id: string, patch: Pick<PushSubscriptionEntity, 'p256dhEnc' | 'authEnc' | 'updatedAt'>): Promise<void> {
    await m.update(PushSubscriptionEntity, { appId, id }, patch);
  }

  /** True when this call deleted the row. */
  async delete(appId: string, id: string, m?: EntityManager, userId?: string): Promise<boolean> {
    const res = await (m ?? this.ds.manager).delete(PushSubscriptionEntity, { appId, id, ...(userId ? { userId } : {}) });
    return (res.affected ?? 0) > 0;
  }

  /** The user.deleted cascade. */
  async deleteForUser(m: EntityManager, appId: string, userId: string): Promise<void> {
    await m.delete(PushSubscriptionEntity, { appId, userId });
  }
}
