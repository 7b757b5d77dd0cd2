import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { AuditEventEntity } from './audit-event.entity.js';
import { canonicalJson } from '../../common/canonical-json.js';
import { chainBody, chainHash, ChainWalker, GENESIS_HASH } from './chain.js';

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

describe(chainBody.name, () => {
  const base = { id: 'evt_1', appId: 'app_1', at: 1764950000123, requestId: 'req-1', actorType: 'agent', actorId: 'agt_1', userId: 'usr_1', agentId: 'agt_1', model: 'claude-sonnet-4', taskId: null, type: 'http.request', action: 'GET /v1/whoami', resource: null, outcome: 'success', status: 200, ip: '127.0.0.1', details: null } as AuditEventEntity;

  it('is the RFC 8785 canonical JSON of the covered fields, for every kind of value a column holds', () => {
    const variants: Partial<AuditEventEntity>[] = [
      {},
      { requestId: undefined as unknown as null, ip: null, model: null },
      { resource: 'drive://Q3 "final" \\ report\n\u2028 ü 😀', action: '\u0000\u001f\u007f' },
      { at: 0, status: 429, model: 'x'.repeat(300) },
      { at: '1764950000123' as unknown as number }, // PostgreSQL bigint columns can come back as text
    ];
    for (const v of variants) {
      const e = { ...base, ...v } as AuditEventEntity;
      const { details: _, ...covered } = e;
      expect(chainBody(e, 42)).toBe(canonicalJson({ ...covered, seq: 42 }));
    }
  });

  it('covers details, canonically, when present', () => {
    const e = { ...base, details: { z: 1, a: [true, { y: null, b: 'é' }] } } as AuditEventEntity;
    expect(chainBody(e, 7)).toBe(canonicalJson({ ...base, seq: 7, details: e.details }));
    expect(chainHash(GENESIS_HASH, e, 7)).not.toBe(chainHash(GENESIS_HASH, { ...e, details: { z: 2, a: [true, { y: null, b: 'é' }] } } as AuditEventEntity, 7));
  });

  it('hashes SHA-256(prevHash, a newline, the body) in UTF-8, as chains sealed before were hashed', () => {
    const prev = 'f'.repeat(64);
    for (const e of [
      { ...chain(1)[0], model: 'modèle 🤖', resource: 'a\uD800b' },
      { ...chain(1)[0], model: 'modèle 🤖', details: { note: 'ü' } },
    ] as AuditEventEntity[]) {
      expect(chainHash(prev, e, 7)).toBe(createHash('sha256').update(prev).update('\n').update(chainBody(e, 7)).digest('hex'));
    }
  });

  it('seals a lone surrogate (escaped) instead of throwing', () => {
    expect(JSON.parse(chainBody({ ...base, resource: 'a\uD800b' } as AuditEventEntity, 1)).resource).toBe('a\uD800b');
  });
});
