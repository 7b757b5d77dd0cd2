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
