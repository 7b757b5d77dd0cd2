import { describe, expect, it } from 'vitest';
import { type DashboardData, dashboardPage, renderSection, SECTIONS } from './dashboard-page.js';

/** Markup, a bidi override and a zero-width space: what an agent (or app) could write to mislead. */
const EVIL = '<img src=x onerror=alert(1)>\u202Eevil\u200B';
const SHOWN = '&lt;img src=x onerror=alert(1)&gt;[U+202E]evil[U+200B]';

function data(text = EVIL, factors = 2): DashboardData {
  const iso = '2030-01-01T12:00:00.000Z';
  return {
    me: { user: { id: 'usr_1', displayName: text }, app: { name: text } },
    stepUps: [
      {
        id: 'stp_1', status: 'pending', app: { name: text }, agent: { id: 'agt_1', name: text, model: text }, user: { displayName: text },
        action: text, resource: text, details: { [text]: text }, detailsHash: 'h', bindingMessage: text, bindingCode: text, taskId: text,
        methods: ['webauthn', 'totp'], expiresAt: iso,
      },
      {
        id: 'stp_2', status: 'pending', app: { name: text }, agent: { id: 'agt_1', name: text, model: text }, user: { displayName: text },
        action: text, resource: null, details: {}, detailsHash: 'h', bindingMessage: null, bindingCode: 'ABC123', taskId: null,
        methods: ['webauthn'], expiresAt: iso, grant: { type: 'sudo', scopes: [text], duration: 600 },
      },
      {
        id: 'stp_3', status: 'pending', app: { name: text }, agent: { id: 'agt_1', name: text, model: text }, user: { displayName: text },
        action: text, resource: text, details: {}, detailsHash: 'h', bindingMessage: null, bindingCode: 'ABC123', taskId: null,
        methods: ['totp'], expiresAt: iso, transactionChallenge: { describedBy: 'app', issuer: text, txn: text, reason: text },
      },
    ],
    agents: [{ id: 'agt_1', name: text, model: text, status: 'active', permissionBoundaries: [text], lastUsedAt: iso }],
    grants: { sudo: [{ stepUpId: 'stp_9', agentId: 'agt_1', scopes: [text], expiresAt: iso }], tasks: [{ id: 'tsk_1', taskId: text, agentId: 'agt_1', scopes: [text], expiresAt: iso }] },
    factors: Array.from({ length: factors }, (_, i) => ({ id: `fac_${i}`, type: 'webauthn', name: text, createdAt: iso, lastUsedAt: null })),
    activity: [{ id: 'evt_1', seq: 1, at: iso, requestId: null, actorType: 'agent', actorId: 'agt_1', userId: 'usr_1', agentId: 'agt_1', model: text, taskId: null, type: text, action: text, resource: text, outcome: 'success', status: null, ip: null, prevHash: '', hash: '' }],
  };
}

describe(dashboardPage.name, () => {
  it('shows every string an agent, app or user wrote as text, invisible characters as [U+XXXX]', () => {
    const sut = dashboardPage(data(), { pushAvailable: true });
    expect(sut).not.toContain('<img src=x');
    expect(sut).not.toMatch(/[\u202E\u200B]/);
    // Each place the text appears: page title and header, the three kinds of request, agents, grants, tasks, factors, activity.
    expect(sut.split(SHOWN).length - 1).toBeGreaterThanOrEqual(30);
  });

  it('has no inline script, inline style or event-handler attribute (the pages’ CSP allows none)', () => {
    for (const sut of [dashboardPage(data('plain'), { pushAvailable: true }), ...SECTIONS.map((name) => renderSection(name, data('plain')))]) {
      expect(sut).not.toMatch(/<script(?![^>]*\ssrc=)/);
      expect(sut).not.toMatch(/\sstyle=/);
      expect(sut).not.toMatch(/\son[a-z]+=/);
    }
  });

  it('gives every form field a label and every request its own field ids', () => {
    const sut = dashboardPage(data('plain'), { pushAvailable: false });
    const ids = [...sut.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]);
    expect(new Set(ids).size).toBe(ids.length);
    for (const [, id] of sut.matchAll(/<input id="([^"]+)"/g)) expect(sut).toContain(`<label for="${id}">`);
    expect(sut).not.toContain('/me/push.js');
  });

  it('offers no Remove for the last factor', () => {
    expect(renderSection('factors', data('plain', 1))).not.toContain('data-act="remove-factor"');
    expect(renderSection('factors', data('plain', 2)).split('data-act="remove-factor"').length - 1).toBe(2);
  });
});
