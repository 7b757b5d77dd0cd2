import { escapeHtml, layout } from '../../web/html.js';
import type { ApprovalDto } from './dto/approval.dto.js';

const STATUS_TEXT: Record<string, string> = {
  pending: 'Waiting for your decision',
  approved: 'Approved',
  denied: 'Denied',
  expired: 'Expired',
  cancelled: 'Cancelled by the agent',
};

/** The approval page: everything the agent wrote is escaped (bidi controls shown), nothing inline runs. */
export function approvalPage(token: string, a: ApprovalDto): string {
  const pending = a.status === 'pending';
  const grant = a.grant?.type === 'sudo'
    ? `<dt>Grant</dt><dd>Temporary elevation for ${escapeHtml(Math.round((a.grant.duration ?? 0) / 60))} min: <code>${escapeHtml((a.grant.scopes ?? []).join(' '))}</code></dd>`
    : `<dt>Grant</dt><dd>One single use of this action</dd>`;
  return layout(
    `Approve ${a.action}? — ${a.app.name}`,
    `<h1>An agent asks for your approval</h1>
<p><strong>${escapeHtml(a.agent.name)}</strong> (model <code>${escapeHtml(a.agent.model)}</code>), acting for ${escapeHtml(a.user.displayName)} in <strong>${escapeHtml(a.app.name)}</strong>, wants to:</p>
<section aria-labelledby="what-h">
  <h2 id="what-h">Action</h2>
  <dl>
    <dt>Action</dt><dd><code id="action">${escapeHtml(a.action)}</code></dd>
    <dt>Resource</dt><dd><code id="resource">${escapeHtml(a.resource ?? '—')}</code></dd>
    ${grant}
    <dt>Task</dt><dd><code>${escapeHtml(a.taskId ?? '—')}</code></dd>
    <dt>Time left</dt><dd><span id="time-left" data-expires-at="${escapeHtml(a.expiresAt)}">until ${escapeHtml(a.expiresAt.replace('T', ' ').slice(0, 19))} UTC</span></dd>
  </dl>
  <h3>Details</h3>
  <pre id="details">${escapeHtml(JSON.stringify(a.details, null, 2))}</pre>
  ${a.bindingMessage ? `<h3>Message written by the agent</h3><p class="agent-text" id="binding-message">${escapeHtml(a.bindingMessage)}</p>` : ''}
  <p>Check that the agent shows the same code: <span class="binding" id="binding-code">${escapeHtml(a.bindingCode)}</span></p>
</section>
<p id="outcome" role="status" aria-live="polite"><strong>${escapeHtml(STATUS_TEXT[a.status] ?? a.status)}</strong></p>
<section id="actions" aria-labelledby="decide-h"${pending ? '' : ' hidden'}>
  <h2 id="decide-h">Your decision</h2>
  ${a.methods.includes('webauthn') ? '<button id="approve-passkey" type="button">Approve with passkey</button>' : ''}
  ${a.methods.includes('totp') ? `<form id="totp-form" novalidate>
    <label for="totp-code">Code from your authenticator app</label>
    <input id="totp-code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6">
    <button type="submit" id="approve-code">Approve with code</button>
  </form>` : ''}
  <button id="deny" type="button" class="danger">Deny</button>
</section>
<p id="status" role="alert"></p>
<script src="/assets/simplewebauthn-browser.js"></script>
<script src="/assets/approve.js"></script>`,
    ` data-token="${escapeHtml(token)}"`,
  );
}
