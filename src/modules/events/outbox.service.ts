import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { Clock } from '../../common/clock.js';
import { Cipher } from '../../common/crypto/cipher.js';
import { newEventId } from '../../common/ids.js';
import { sqlLiteral } from '../../database/pg-params.js';
import type { SqliteSession } from '../../database/sqlite-serial.js';
import { AppsService } from '../apps/apps.service.js';
import { openEventPayload, sealEventData, type EventPayload } from './outbox-payload.js';
import type { OutboxEntity } from './outbox.entity.js';
import { OutboxRepository } from './outbox.repository.js';

/** The columns an event written by insertSelectSql takes from its relation (carried() gives them). */
export const OUTBOX_CARRIED = ['event_id'] as const;

export type EventType =
  | 'step_up.created'
  | 'step_up.approved'
  | 'step_up.denied'
  | 'step_up.expired'
  | 'step_up.cancelled'
  | 'mfa_proxy_token.consumed'
  | 'agent.revoked'
  | 'agent.cooldown'
  | 'agent.suspended'
  | 'task.ended'
  | 'connection.reauth_required'
  | typeof PING_EVENT
  | typeof PUSH_EVENT;

/** A CIBA ping (CIBA Core §10.2): delivered to the agent's endpoint by PingDispatcher, never to the app. */
export const PING_EVENT = 'ciba.ping';

/** A Web Push to one subscription of a human: delivered by PushDispatcher (modules/push), never to the app. */
export const PUSH_EVENT = 'push.notification';

/** Runs inside the transaction that adds an event of its type (a failure rolls the whole change back). */
export type AddedInListener = (m: EntityManager, event: { id: string; appId: string; type: EventType; data: Record<string, unknown> }) => Promise<void>;

/**
 * Events of an app without a webhookUrl are written finished, as `no_endpoint`, instead of
 * pending for the webhook dispatcher to find, claim and finish the same way in another write.
 * The apps are read in the same transaction after the events' clock reading, so every event so
 * marked was due before the reading that found no URL: the dispatcher's own rule (an app that
 * sets a URL gets every event created after it). The stream carries them all the same; the app
 * may retry one (POST /v1/webhook-deliveries/{id}/retry) once it has a URL.
 */
function markWithoutEndpoint(rows: OutboxEntity[], appsWithoutWebhook: ReadonlySet<string>): void {
  for (const row of rows) if (appsWithoutWebhook.has(row.appId)) row.deliveryStatus = 'no_endpoint';
}

const appsOf = (rows: OutboxEntity[]) => [...new Set(rows.map((r) => r.appId))];

/**
 * The transactional outbox: an event is written with the change that causes it, or not at all.
 * Capabilities of the human in the data (`approvalUrl`) are sealed at rest and opened only to
 * deliver (outbox-payload.ts).
 */
@Injectable()
export class OutboxService {
  private readonly addedIn = new Map<EventType, AddedInListener[]>();

  constructor(
    private readonly repo: OutboxRepository,
    private readonly clock: Clock,
    private readonly cipher: Cipher,
    private readonly apps: AppsService,
  ) {}

  async add(m: EntityManager, appId: string, type: EventType, data: Record<string, unknown>): Promise<string> {
    const row = this.row(appId, type, data);
    await this.repo.insert(m, row);
    await this.notifyAddedIn(m, [{ id: row.id, appId, type, data }]);
    return row.id;
  }

  /**
   * `listener` runs in the transaction of every event of `type` added from now on, after its row
   * (the push module fans `step_up.created` out to a push per subscription this way: written with
   * the step-up or not at all). Added rows of the outbox's own kinds (pings, pushes) never notify.
   */
  onAddedIn(type: EventType, listener: AddedInListener): void {
    this.addedIn.set(type, [...(this.addedIn.get(type) ?? []), listener]);
  }

  private async notifyAddedIn(m: EntityManager, events: { id: string; appId: string; type: EventType; data: Record<string, unknown> }[]): Promise<void> {
    if (this.addedIn.size === 0) return;
    for (const event of events) for (const listener of this.addedIn.get(event.type) ?? []) await listener(m, event);
  }

  /**
   * Web Pushes in the caller's transaction, one row per subscription (delivery status `push`),
   * delivered by PushDispatcher. `data` is public (no capability: the subscription's endpoint and
   * keys stay in their own sealed row); never a webhook or stream event.
   */
  async addPushes(m: EntityManager, appId: string, pushes: Record<string, unknown>[]): Promise<void> {
    const rows = pushes.map((data) => Object.assign(this.row(appId, PUSH_EVENT, data), { deliveryStatus: 'push' as const }));
    await this.repo.insertMany(m, rows);
  }

  /**
   * A ping to a client's endpoint (CIBA ping mode) in the caller's transaction: POSTs `body` as
   * JSON with `Authorization: Bearer <bearer>` (both sealed at rest), retried, SSRF-guarded. The
   * row is the app's (tenancy) but is neither a webhook nor a stream event.
   */
  async addPing(m: EntityManager, appId: string, p: { endpoint: string; bearer: string; body: Record<string, unknown>; agentId: string; stepUpId: string }): Promise<string> {
    const row = this.row(appId, PING_EVENT, { agentId: p.agentId, stepUpId: p.stepUpId, endpoint: p.endpoint, pingBody: JSON.stringify(p.body), pingBearer: p.bearer });
    row.deliveryStatus = 'ping';
    await this.repo.insert(m, row);
    return row.id;
  }

  /**
   * Several events in the caller's transaction, in one statement where the database allows.
   * Those of an app without a webhookUrl are written `no_endpoint` (markWithoutEndpoint): one
   * query for the whole batch. A single event (`add`) is written pending
   * and finished by the dispatcher in bulk: a query per event would cost a transaction that adds
   * many (a cascade) more than the dispatcher's one statement for many rows.
   */
  async addMany(m: EntityManager, events: { appId: string; type: EventType; data: Record<string, unknown> }[]): Promise<void> {
    const rows = events.map((e) => this.row(e.appId, e.type, e.data));
    markWithoutEndpoint(rows, await this.apps.appsWithoutWebhook(m, appsOf(rows)));
    await this.repo.insertMany(m, rows);
    await this.notifyAddedIn(m, rows.map((r, i) => ({ id: r.id, appId: r.appId, type: events[i].type, data: events[i].data })));
  }

  /**
   * SQLite: addMany inside the caller's synchronous transaction (onSqliteConnection), one prepared
   * statement per event. Returns the rows' delivery statuses: pass them to addedBy once the
   * transaction has committed. Types with listeners (onAddedIn) are added with addMany.
   */
  addManySqlite(db: SqliteSession, events: { appId: string; type: EventType; data: Record<string, unknown> }[]): Set<string> {
    for (const e of events) if (this.addedIn.has(e.type)) throw new Error(`events of type ${e.type} have listeners (onAddedIn): add them with addMany`);
    const rows = events.map((e) => this.row(e.appId, e.type, e.data));
    markWithoutEndpoint(rows, this.apps.appsWithoutWebhookSqlite(db, appsOf(rows)));
    this.repo.insertManySqlite(db, rows);
    return new Set(rows.map((r) => r.deliveryStatus));
  }

  /**
   * PostgreSQL: an INSERT (for a WITH clause) of one event of `type` per row of `relation`, a
   * relation of the caller's statement carrying the OUTBOX_CARRIED columns (carried()): the event
   * is written by the statement that makes its change, as addMany would write it. `appId`, `data`
   * (a json expression: never a sealed field, SEALED_FIELDS), `createdAt` (ms, bigint) and
   * `createdIso` (its ISO 8601 text) are SQL expressions. An app without a webhookUrl gets its event
   * finished, no_endpoint, read by the same statement (markWithoutEndpoint's rule). It returns each
   * row's delivery_status: pass them to addedBy once the statement has committed.
   */
  insertSelectSql(relation: string, e: { appId: string; type: EventType; data: string; createdAt: string; createdIso: string }): string {
    // Listeners run in the adding transaction, which a statement does not have.
    if (this.addedIn.has(e.type)) throw new Error(`events of type ${e.type} have listeners (onAddedIn): add them with addMany`);
    const id = `${relation}.event_id`;
    const type = sqlLiteral(e.type);
    const payload = `json_build_object('id', ${id}, 'type', ${type}, 'createdAt', ${e.createdIso}, 'data', ${e.data})::text`;
    const status = `CASE WHEN ${this.apps.withoutWebhookSql(e.appId)} THEN 'no_endpoint' ELSE 'pending' END`;
    return this.repo.insertSelectSql(relation, {
      id, app_id: e.appId, type, payload, created_at: e.createdAt, delivered_at: 'NULL', delivery_status: status, attempts: '0', next_attempt_at: e.createdAt,
      claimed_until: 'NULL', claimed_by: 'NULL', last_error: 'NULL', stream_seq: 'NULL',
    });
  }

  /** The OUTBOX_CARRIED values of one event of insertSelectSql: a new event id, of the statement's time `at` (its createdAt). */
  carried(at: number): string[] {
    return [newEventId(at)];
  }

  /** Events of these delivery statuses were added by a statement that has committed (insertSelectSql): the dispatchers wake. */
  addedBy(statuses: Iterable<string>): void {
    this.repo.addedBy(new Set(statuses));
  }

  private row(appId: string, type: EventType, data: Record<string, unknown>): OutboxEntity {
    // One reading for both: events are published in (createdAt, id) order.
    const createdAt = this.clock.now();
    const id = newEventId(createdAt);
    return {
      id, appId, type, payload: { id, type, createdAt: new Date(createdAt).toISOString(), data: sealEventData(this.cipher, id, data) }, createdAt, deliveredAt: null,
      deliveryStatus: 'pending', attempts: 0, nextAttemptAt: createdAt, claimedUntil: null, claimedBy: null, lastError: null, streamSeq: null,
    };
  }

  /** The payload as delivered (webhook body, SSE data). Throws DecryptionError if a sealed field does not open. */
  deliverable(row: OutboxEntity): EventPayload {
    return openEventPayload(this.cipher, row.payload as unknown as EventPayload);
  }
}
