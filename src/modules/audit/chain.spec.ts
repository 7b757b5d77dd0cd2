import { describe, expect, it } from 'vitest';
import type { AuditEventEntity } from './audit-event.entity.js';
import { chainHash, ChainWalker, GENESIS_HASH } from './chain.js';

function chain(n: number): AuditEventEntity[] {
  const out: AuditEventEntity[] = [];
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const e = { id: `evt_${seq}`, appId: 'app_1', at: 1000 + seq, requestId: null, actorType: 'agent', actorId: 'agt_1', userId: 'usr_1', agentId: 'agt_1', model: 'm', taskId: 't', type: 'x', action: 'a', resource: null, outcome: 'success', status: 200, ip: null } as AuditEventEntity;
    e.seq = seq;
    e.prevHash = prev;
    e.hash = chainHash(prev, e, seq);
    prev = e.hash;
    out.push(e);
  }
  return out;
}

const walk = (events: AuditEventEntity[], head = { lastSeq: 5, lastHash: chain(5)[4].hash! }) => {
  const sut = new ChainWalker();
  for (const e of events) sut.add(e);
  return sut.finish(head);
};

describe(ChainWalker.name, () => {
  it('accepts an intact chain', () => {
    expect(walk(chain(5))).toEqual({ valid: true, count: 5, headHash: chain(5)[4].hash });
  });

  it('reports an edited event', () => {
    const events = chain(5);
    events[2] = { ...events[2], resource: 'changed' } as AuditEventEntity;
    expect(walk(events)).toMatchObject({ valid: false, firstBadSeq: 3 });
  });

  it('reports a deleted event, and a deleted tail', () => {
    const events = chain(5);
    expect(walk([...events.slice(0, 1), ...events.slice(2)])).toMatchObject({ valid: false, firstBadSeq: 2 });
    expect(walk(events.slice(0, 4))).toMatchObject({ valid: false, firstBadSeq: 5 });
  });

  it('reports reordered events', () => {
    const events = chain(5);
    const swapped = [events[0], { ...events[2], seq: 2 }, { ...events[1], seq: 3 }, events[3], events[4]] as AuditEventEntity[];
    expect(walk(swapped)).toMatchObject({ valid: false, firstBadSeq: 2 });
  });
});
