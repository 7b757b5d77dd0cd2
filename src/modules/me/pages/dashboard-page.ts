import { escapeHtml, layout } from '../../../web/html.js';
import { durationText } from '../../approvals/approval-page.js';
import type { AuditEventDto } from '../../audit/dto/audit.dto.js';
import type { MeAgentDto, MeFactorDto, MeGrantsDto, MeStepUpDto } from '../dto/dashboard.dto.js';
import type { MeDto } from '../dto/me.dto.js';

/**
 * The human's dashboard (API.md v1.1 "Humans"), rendered on the server with the approval page's
 * rules: every string goes through escapeHtml (markup escaped, invisible characters shown as
 * [U+XXXX]), no inline script or style (the pages' CSP), real buttons and forms. Each section is
 * also served alone (GET /me/sections/:name) so the page's script refreshes it with the same
 * renderer: there is one escaping rule, here, not a second one in the browser.
 */

export interface DashboardData {
  me: MeDto;
  stepUps: MeStepUpDto[];
  agents: MeAgentDto[];
  grants: MeGrantsDto;
  factors: MeFactorDto[];
  activity: AuditEventDto[];
}

export const SECTIONS = ['approvals', 'agents', 'grants', 'factors', 'activity'] as const;
export type SectionName = (typeof SECTIONS)[number];

const e = escapeHtml;

/** A point in time: exact UTC in the markup, shown in the reader's time zone by the script. */
const time = (iso: string | null | undefined, empty = 'never') =>
  iso ? `<time datetime="${e(iso)}">${e(iso.replace('T', ' ').slice(0, 16))} UTC</time>` : `<span class="muted">${e(empty)}</span>`;

/** Time left until `iso`, counted down by the script; without it, the end as a time. */
const timeLeft = (iso: string) => `<span class="time-left" data-expires-at="${e(iso)}">until ${e(iso.replace('T', ' ').slice(11, 19))} UTC</span>`;

const codes = (list: string[], cls = 'scopes') =>
  list.length ? `<ul class="${cls}">${list.map((s) => `<li><code>${e(s)}</code></li>`).join('')}</ul>` : '<span class="muted">none</span>';

/** A field id unique on the page (several step-ups are shown at once). */
const fid = (stepUpId: string, name: string) => `${name}-${e(stepUpId)}`;

function stepUpHeading(s: MeStepUpDto): string {
  if (s.transactionChallenge) return `${e(s.app.name)} asks you to approve <code>${e(s.action)}</code>`;
  if (s.grant?.type === 'sudo') return `Grant temporary access for ${e(durationText(s.grant.duration ?? 0))}?`;
  return `Approve <code>${e(s.action)}</code>?`;
}

/** What is asked, as on the approval page: for sudo the grant leads, for a TAC the app's signed description. */
function stepUpFacts(s: MeStepUpDto): string {
  const rows: string[] = [];
  if (s.grant?.type === 'sudo') {
    rows.push(`<dt>Permissions</dt><dd>${codes(s.grant.scopes ?? [])}</dd>`);
    rows.push(`<dt>Duration</dt><dd><strong>${e(durationText(s.grant.duration ?? 0))}</strong> from your approval, for any request, not only the purpose below</dd>`);
    rows.push(`<dt>Stated purpose</dt><dd><code class="action">${e(s.action)}</code> <span class="muted">(written by the agent)</span></dd>`);
  } else {
    rows.push(`<dt>Action</dt><dd><code class="action">${e(s.action)}</code></dd>`);
  }
  rows.push(`<dt>Resource</dt><dd><code class="resource">${e(s.resource ?? '—')}</code></dd>`);
  if (s.grant?.type !== 'sudo') rows.push(`<dt>Grant</dt><dd>One single use of this ${s.transactionChallenge ? 'operation' : 'action'}</dd>`);
  if (s.transactionChallenge) rows.push(`<dt>Transaction</dt><dd><code>${e(s.transactionChallenge.txn)}</code></dd>`);
  rows.push(`<dt>Task</dt><dd><code>${e(s.taskId ?? '—')}</code></dd>`);
  rows.push(`<dt>Time left</dt><dd>${timeLeft(s.expiresAt)}</dd>`);
  return `<dl>${rows.join('')}</dl>`;
}

function stepUpText(s: MeStepUpDto): string {
  const reason = s.transactionChallenge
    ? `<h4>Reason given by ${e(s.app.name)}</h4><p class="app-text">${e(s.transactionChallenge.reason)}</p>`
    : '';
  const message = s.bindingMessage ? `<h4>Message written by the agent</h4><p class="agent-text binding-message">${e(s.bindingMessage)}</p>` : '';
  return `<details class="details"${Object.keys(s.details ?? {}).length ? ' open' : ''}><summary>Details${s.transactionChallenge ? ` (signed by ${e(s.app.name)})` : ' (written by the agent)'}</summary>
<pre class="details-json">${e(JSON.stringify(s.details, null, 2))}</pre></details>
${reason}${message}
<p class="binding-line">Check that the agent shows the same code: <span class="binding">${e(s.bindingCode)}</span></p>`;
}

/** One pending step-up with inline approve (passkey or code) and deny, keyed by its id for live updates. */
export function stepUpCard(s: MeStepUpDto): string {
  const h = fid(s.id, 'stepup-h');
  const code = fid(s.id, 'code');
  return `<article class="card step-up" id="step-up-${e(s.id)}" data-step-up="${e(s.id)}" aria-labelledby="${h}">
<h3 id="${h}" tabindex="-1">${stepUpHeading(s)}</h3>
<p class="asker"><strong>${e(s.agent.name)}</strong> (model <code>${e(s.agent.model)}</code>), acting for ${e(s.user.displayName)} in <strong>${e(s.app.name)}</strong></p>
${stepUpFacts(s)}
${stepUpText(s)}
<div class="decide" role="group" aria-label="Your decision">
${s.methods.includes('webauthn') ? '<button type="button" data-act="approve-passkey">Approve with passkey</button>' : ''}
${s.methods.includes('totp') ? `<form class="code-form" data-act="approve-code" novalidate>
<label for="${code}">Code from your authenticator app</label>
<span class="inline"><input id="${code}" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6"><button type="submit">Approve with code</button></span>
</form>` : ''}
<button type="button" class="danger" data-act="deny">Deny</button>
</div>
<p class="card-status" role="status" aria-live="polite"></p>
</article>`;
}

function approvals(d: Pick<DashboardData, 'stepUps'>): string {
  if (d.stepUps.length === 0) return '<p class="empty muted">Nothing is waiting for you. New requests appear here by themselves.</p>';
  return d.stepUps.map(stepUpCard).join('\n');
}

function agents(d: Pick<DashboardData, 'agents'>): string {
  if (d.agents.length === 0) return '<p class="empty muted">No agents act for you.</p>';
  return `<ul class="rows">${d.agents
    .map((a) => {
      const suspended = a.status === 'suspended';
      return `<li class="row agent" data-agent="${e(a.id)}" data-name="${e(a.name)}">
<div class="row-main"><h3>${e(a.name)} <span class="badge ${suspended ? 'warn' : 'ok'}">${suspended ? 'suspended' : 'active'}</span></h3>
<dl><dt>Model</dt><dd><code>${e(a.model)}</code></dd>
<dt>May ask for</dt><dd>${codes(a.permissionBoundaries)}</dd>
<dt>Last use</dt><dd>${time(a.lastUsedAt)}</dd></dl></div>
<div class="row-actions">
${suspended ? '<button type="button" class="secondary" data-act="resume">Resume</button>' : '<button type="button" class="secondary" data-act="suspend">Suspend</button>'}
<button type="button" class="danger" data-act="revoke" aria-label="Revoke ${e(a.name)}…">Revoke…</button>
</div>
<div class="confirm" hidden><p>Revoke <strong>${e(a.name)}</strong> for good? Its tokens stop working at once, its pending requests are cancelled and its tasks end.</p>
<button type="button" class="danger" data-act="revoke-confirm">Yes, revoke ${e(a.name)}</button> <button type="button" class="secondary" data-act="revoke-cancel">Cancel</button></div>
</li>`;
    })
    .join('\n')}</ul>`;
}

function grants(d: Pick<DashboardData, 'grants' | 'agents'>): string {
  const names = new Map(d.agents.map((a) => [a.id, a.name]));
  const agent = (id: string) => `<strong>${e(names.get(id) ?? id)}</strong>`;
  const sudo = d.grants.sudo.map(
    (g) => `<li class="row grant" data-grant="${e(g.stepUpId)}">
<div class="row-main"><h3>Temporary access of ${agent(g.agentId)}</h3>
<dl><dt>Permissions</dt><dd>${codes(g.scopes)}</dd><dt>Time left</dt><dd>${timeLeft(g.expiresAt)}</dd></dl></div>
<div class="row-actions"><button type="button" class="danger" data-act="end-grant">End now</button></div></li>`,
  );
  const tasks = d.grants.tasks.map(
    (t) => `<li class="row task" data-task="${e(t.id)}">
<div class="row-main"><h3>Task <code>${e(t.taskId)}</code> of ${agent(t.agentId)}</h3>
<dl><dt>Permissions</dt><dd>${codes(t.scopes)}</dd><dt>Time left</dt><dd>${timeLeft(t.expiresAt)}</dd></dl></div>
<div class="row-actions"><button type="button" class="danger" data-act="end-task">End now</button></div></li>`,
  );
  if (sudo.length + tasks.length === 0) return '<p class="empty muted">No temporary access and no running tasks.</p>';
  return `<ul class="rows">${[...sudo, ...tasks].join('\n')}</ul>`;
}

const FACTOR_TYPE: Record<string, string> = { webauthn: 'Passkey', totp: 'Authenticator app' };

function factors(d: Pick<DashboardData, 'factors'>): string {
  const last = d.factors.length <= 1;
  const list = d.factors
    .map(
      (f) => `<li class="row factor" data-factor="${e(f.id)}" data-name="${e(f.name)}">
<div class="row-main"><h3>${e(FACTOR_TYPE[f.type] ?? f.type)}: ${e(f.name)}</h3>
<p class="muted small">Added ${time(f.createdAt)} · last used ${time(f.lastUsedAt)}</p></div>
<div class="row-actions">${last ? '<p class="muted small">Your only factor: add another before removing it.</p>' : `<button type="button" class="secondary" data-act="remove-factor" aria-label="Remove ${e(f.name)}">Remove</button>`}</div></li>`,
    )
    .join('\n');
  return `<ul class="rows">${list}</ul>`;
}

const OUTCOME: Record<string, string> = { success: 'ok', failure: 'failed', denied: 'refused' };
/** Who did it, from the event's actor (its agent, if any, is what it concerns). */
const BY: Record<string, string> = { user: 'by you', human: 'by you', agent: 'by the agent', app: 'by the app', operator: 'by the operator', system: 'automatic' };

function activity(d: Pick<DashboardData, 'activity' | 'agents'>): string {
  if (d.activity.length === 0) return '<p class="empty muted">Nothing yet.</p>';
  const names = new Map(d.agents.map((a) => [a.id, a.name]));
  return `<ol class="activity">${d.activity
    .map(
      (ev) => `<li><span class="when">${time(ev.at)}</span> <code class="type">${e(ev.type)}</code>${ev.action ? ` <code>${e(ev.action)}</code>` : ''}${
        ev.agentId ? ` <span class="muted">·</span> ${e(names.get(ev.agentId) ?? ev.agentId)}` : ''
      } <span class="muted">${e(BY[ev.actorType] ?? ev.actorType)}</span> <span class="outcome ${e(ev.outcome)}">${e(OUTCOME[ev.outcome] ?? ev.outcome)}</span></li>`,
    )
    .join('\n')}</ol>`;
}

/** One section's inner HTML (what GET /me/sections/:name returns and the page holds). */
export function renderSection(name: SectionName, d: Partial<DashboardData>): string {
  switch (name) {
    case 'approvals':
      return approvals(d as DashboardData);
    case 'agents':
      return agents(d as DashboardData);
    case 'grants':
      return grants(d as DashboardData);
    case 'factors':
      return factors(d as DashboardData);
    case 'activity':
      return activity(d as DashboardData);
  }
}

const TITLES: Record<SectionName, string> = {
  approvals: 'Waiting for your approval',
  agents: 'Your agents',
  grants: 'Temporary access and tasks',
  factors: 'Your sign-in factors',
  activity: 'Recent activity',
};

const section = (name: SectionName, d: DashboardData, extra = '') => `<section id="${name}" class="panel panel-${name}" aria-labelledby="${name}-h">
<h2 id="${name}-h" tabindex="-1">${TITLES[name]}${name === 'approvals' ? ` <span class="count" id="approvals-count">${d.stepUps.length ? `(${d.stepUps.length})` : ''}</span>` : ''}</h2>
<div class="section-body" data-section="${name}" aria-busy="false">${renderSection(name, d)}</div>
${extra}</section>`;

/** The form for a new factor: passkey (name, then the browser's prompt) or authenticator app (QR, then a code). */
const addFactor = `<div class="add-factor">
<h3>Add a factor</h3>
<p class="muted small">For your safety this works only within 5 minutes of signing in or approving with a factor.</p>
<label for="new-passkey-name">Name of the new passkey</label>
<span class="inline"><input id="new-passkey-name" maxlength="100" placeholder="e.g. Laptop"><button type="button" data-act="add-passkey">Add a passkey</button></span>
<label for="new-totp-name">Name of the authenticator app</label>
<span class="inline"><input id="new-totp-name" maxlength="100" placeholder="e.g. Phone"><button type="button" data-act="add-totp">Add an authenticator app</button></span>
<form id="totp-confirm" class="totp-setup" hidden novalidate>
<p>Scan this QR code with your authenticator app, or type the key by hand.</p>
<img id="totp-qr" class="qr" alt="QR code of the new authenticator key">
<p>Key: <code id="totp-secret"></code></p>
<label for="totp-confirm-code">The 6-digit code it shows</label>
<span class="inline"><input id="totp-confirm-code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6"><button type="submit">Confirm</button></span>
</form>
</div>`;

/** The whole dashboard. `pushAvailable`: the Web Push helper (/me/push.js) is mounted. */
export function dashboardPage(d: DashboardData, opts: { pushAvailable: boolean }): string {
  return layout(
    `Your agents — ${d.me.app.name}`,
    `<header class="top">
<div><h1>Your agents in ${e(d.me.app.name)}</h1>
<p class="muted">Signed in as <strong>${e(d.me.user.displayName)}</strong></p></div>
<div class="top-actions">
${opts.pushAvailable ? '<button type="button" class="secondary" data-mpx-push>Turn on push notifications</button>' : ''}
<button type="button" class="secondary" id="sign-out">Sign out</button>
</div>
</header>
<p id="live" class="live" role="status" aria-live="polite"></p>
<div class="dashboard">
${section('approvals', d)}
${section('agents', d)}
${section('grants', d)}
${section('factors', d, addFactor)}
${section('activity', d)}
</div>
<script src="/assets/simplewebauthn-browser.js"></script>
${opts.pushAvailable ? '<script src="/me/push.js"></script>' : ''}
<script src="/assets/dashboard.js"></script>`,
    ' class="dashboard-page"',
    ['/assets/dashboard.css'],
  );
}
