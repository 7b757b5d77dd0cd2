import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';

/**
 * State changes that other modules must follow in the same transaction. The module that owns the
 * change emits it; every module that holds rows depending on it handles it for its own tables, so
 * no module writes another's tables and no two modules import each other (ARCHITECTURE.md).
 */
export type CascadeEvent =
  | { type: 'user.deleted'; appId: string; userId: string; now: number }
  | { type: 'agent.revoked'; appId: string; agentId: string; userId: string; model: string; reason: 'deleted_by_app' | 'user_deleted' | 'deleted_by_user'; now: number }
  | { type: 'token.revoked'; appId: string; agentId: string; jti: string; now: number }
  | { type: 'agent.boundaries_changed'; appId: string; agentId: string; boundaries: string[]; now: number };

type Handler<E extends CascadeEvent> = (m: EntityManager, event: E, scope: CascadeScope) => Promise<void>;

/** One cascade's side effects that must wait for its commit (cache invalidation, wake-ups). */
export class CascadeScope {
  private readonly after: (() => Promise<void>)[] = [];

  afterCommit(fn: () => Promise<void>): void {
    this.after.push(fn);
  }

  /** Call once the transaction committed. */
  async committed(): Promise<void> {
    for (const fn of this.after.splice(0)) await fn();
  }
}

@Injectable()
export class Cascades {
  private readonly handlers = new Map<CascadeEvent['type'], Handler<CascadeEvent>[]>();

  on<T extends CascadeEvent['type']>(type: T, handler: Handler<Extract<CascadeEvent, { type: T }>>): void {
    this.handlers.set(type, [...(this.handlers.get(type) ?? []), handler as Handler<CascadeEvent>]);
  }

  /** Runs every handler of the event inside the caller's transaction, in registration order. */
  async emit(m: EntityManager, scope: CascadeScope, event: CascadeEvent): Promise<void> {
    for (const handler of this.handlers.get(event.type) ?? []) await handler(m, event, scope);
  }
}
