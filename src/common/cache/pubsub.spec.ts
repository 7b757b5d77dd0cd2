import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { RedisPubSub } from './pubsub.js';

/** A subscriber connection whose SUBSCRIBE commands Redis confirms when the test says so. */
function subscriber() {
  const confirm: (() => void)[] = [];
  const conn = {
    on: () => conn,
    subscribe: () => new Promise<void>((resolve) => confirm.push(resolve)),
  };
  return { conn: conn as unknown as Redis, confirmAll: () => confirm.splice(0).forEach((c) => c()) };
}

describe(RedisPubSub.name, () => {
  it('subscribed() waits until Redis has confirmed every subscription made so far (boot waits for it)', async () => {
    const { conn, confirmAll } = subscriber();
    const sut = new RedisPubSub({} as Redis, conn, 'test:', () => undefined);
    sut.subscribe('agent.changed', () => undefined);
    sut.subscribe('step_up.changed', () => undefined);
    let done = false;
    const ready = sut.subscribed().then(() => (done = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(done).toBe(false);
    confirmAll();
    await ready;
    expect(done).toBe(true);
  });
});

describe(`${RedisPubSub.name} after Redis was unreachable`, () => {
  it('every channel is subscribed again on every ready connection, whether it failed before or not', async () => {
    const handlers = new Map<string, () => void>();
    const sent: string[] = [];
    let reachable = false;
    const conn = {
      on: (event: string, handler: () => void) => (handlers.set(event, handler), conn),
      subscribe: (channel: string) => {
        sent.push(channel);
        return reachable || channel === 'test:confirmed' ? Promise.resolve() : Promise.reject(new Error('Connection is closed.'));
      },
    };
    let resets = 0;
    const sut = new RedisPubSub({} as Redis, conn as unknown as Redis, 'test:', () => resets++);
    sut.subscribe('confirmed', () => undefined);
    sut.subscribe('agent.changed', () => undefined);
    await sut.subscribed(); // settles though one failed
    expect(sent).toEqual(['test:confirmed', 'test:agent.changed']);

    reachable = true;
    handlers.get('ready')!();
    expect(resets).toBe(1);
    await sut.subscribed();
    expect(sent.slice(2).sort()).toEqual(['test:agent.changed', 'test:confirmed']);

    // ioredis does not re-subscribe this connection itself (createRedis): every reconnect does it here.
    handlers.get('ready')!();
    expect(sent.slice(4).sort()).toEqual(['test:agent.changed', 'test:confirmed']);
  });

  it('caches are reset when the connection is ready, and again once Redis has confirmed the subscriptions (what was announced in between is lost)', async () => {
    const handlers = new Map<string, () => void>();
    const confirm: (() => void)[] = [];
    const conn = {
      on: (event: string, handler: () => void) => (handlers.set(event, handler), conn),
      subscribe: () => new Promise<void>((resolve) => confirm.push(resolve)),
    };
    let resets = 0;
    const sut = new RedisPubSub({} as Redis, conn as unknown as Redis, 'test:', () => resets++);
    sut.subscribe('agent.changed', () => undefined);
    sut.subscribe('app-key.revoked', () => undefined);
    confirm.splice(0).forEach((c) => c());
    await sut.subscribed();
    expect(resets).toBe(0);

    handlers.get('ready')!();
    expect(resets).toBe(1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(resets).toBe(1); // not before Redis has confirmed
    confirm.splice(0).forEach((c) => c());
    await sut.subscribed();
    await new Promise((resolve) => setImmediate(resolve));
    expect(resets).toBe(2);
  });
});
