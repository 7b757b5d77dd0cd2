import { describe, expect, it, vi } from 'vitest';
import type { PubSub } from '../../common/cache/pubsub.js';
import { OutboxPublisher } from './outbox-publisher.js';
import type { OutboxRepository, PublishResult } from './outbox.repository.js';

/** A repository that publishes `published` rows per round and records each round's start and probe. */
function repository(published: () => number) {
  const rounds: { at: number; probe: boolean }[] = [];
  let onCommit = () => {};
  const repo = {
    onAddedCommitted: (fn: () => void) => (onCommit = fn),
    publish: async (_limit: number, probe: boolean): Promise<PublishResult> => {
      rounds.push({ at: performance.now(), probe });
      await new Promise((resolve) => setImmediate(resolve));
      return { published: published(), head: rounds.length, pending: false };
    },
  } as unknown as OutboxRepository;
  return { repo, rounds, commit: () => onCommit() };
}

const pubsub = { publish: async () => undefined } as unknown as PubSub;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe(OutboxPublisher.name, () => {
  it('under a steady stream of commits, starts a round at most every 50 ms, each publishing what committed before it', async () => {
    const { repo, rounds, commit } = repository(() => 12);
    const sut = new OutboxPublisher(repo, pubsub);
    sut.onApplicationBootstrap();
    try {
      const until = performance.now() + 400;
      while (performance.now() < until) {
        commit();
        await sleep(1);
      }
    } finally {
      await sut.onApplicationShutdown();
    }
    // Without the gap a round followed every commit: hundreds in 400 ms.
    expect(rounds.length).toBeGreaterThanOrEqual(3);
    expect(rounds.length).toBeLessThanOrEqual(10);
    for (let i = 1; i < rounds.length; i++) expect(rounds[i].at - rounds[i - 1].at, `round ${i + 1}`).toBeGreaterThanOrEqual(45);
    // After a commit there are rows: no probe first (the first round is bootstrap's, which probes).
    expect(rounds.slice(1).every((r) => !r.probe)).toBe(true);
  });

  it('goes on at once after a full batch (a backlog is published as fast as it can be)', async () => {
    let left = 3;
    const { repo, rounds } = repository(() => (left-- > 0 ? 500 : 0));
    const sut = new OutboxPublisher(repo, pubsub);
    sut.onApplicationBootstrap();
    try {
      await vi.waitFor(() => expect(rounds).toHaveLength(4), { timeout: 2_000, interval: 5 });
    } finally {
      await sut.onApplicationShutdown();
    }
    // No 50 ms gap behind a full round (each round here takes one turn of the event loop).
    for (let i = 1; i < 4; i++) expect(rounds[i].at - rounds[i - 1].at, `round ${i + 1}`).toBeLessThan(45);
  });

  it('publishes at once when idle: the first commit after a quiet spell is not held back', async () => {
    const { repo, rounds, commit } = repository(() => 1);
    const sut = new OutboxPublisher(repo, pubsub);
    sut.onApplicationBootstrap();
    try {
      await sleep(80);
      const before = rounds.length;
      commit();
      // Started within the commit's own turn of the event loop: no timer stood in between.
      for (let i = 0; i < 5; i++) await Promise.resolve();
      expect(rounds).toHaveLength(before + 1);
      expect(rounds[before].probe).toBe(false);
    } finally {
      await sut.onApplicationShutdown();
    }
  });
});
