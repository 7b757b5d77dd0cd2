import { escapeHtml, layout } from '../../web/html.js';
import type { ApprovalDto } from './dto/approval.dto.js';

const STATUS_TEXT: Record<string, string> = {
  pending: 'Waiting for your decision',
  approved: 'Approved',
  denied: 'Denied',
  expired: 'Expired',
  cancelled: 'Cancelled by the agent',
};

/** A grant's duration as the human reads it, exact: "10 min", "1 min 30 s". */
export function durationText(seconds: number): string {
  const min = Math.floor(seconds / 60);
  const s = seconds % 60;
  return [min ? `${min} min` : '', s ? `${s} s` : ''].filter(Boolean).join(' ') || '0 s';
}

/** Who asks: the agent, its model, the user and the app. */
const asker = (a: ApprovalDto) =>
  `<strong>${escapeHtml(a.agent.name)}</strong> (model <code>${escapeHtml(a.agent.model)}</code>), acting for ${escapeHtml(a.user.displayName)} in <strong>${escapeHtml(a.app.name)}</strong>`;

/** Everything the agent wrote about its request, and the binding code. */
const agentText = (a: ApprovalDto) => `<h3>Details</h3>
  <pre id="details">${escapeHtml(JSON.stringify(a.details, null, 2))}</pre>
  ${a.bindingMessage ? `<h3>Message written by the agent</h3><p class="agent-text" id="binding-message">${escapeHtml(a.bindingMessage)}</p>` : ''}
  <p>Check that the agent shows the same code: <span class="binding" id="binding-code">${escapeHtml(a.bindingCode)}</span></p>`;

const timeLeft = (a: ApprovalDto) =>
  `<dt>Time left</dt><dd><span id="time-left" data-expires-at="${escapeHtml(a.expiresAt)}">until ${escapeHtml(a.expiresAt.replace('T', ' ').slice(0, 19))} UTC</span></dd>`;

/** A single-use token for one action: the action leads. */
function tokenRequest(a: ApprovalDto): { title: string; body: string } {
  return {
    title: `Approve ${a.action}? — ${a.app.name}`,
    body: `<h1>An agent asks for your approval</h1>
<p>${asker(a)}, wants to:</p>
<section aria-labelledby="what-h">
  <h2 id="what-h">Action</h2>
  <dl>
    <dt>Action</dt><dd><code id="action">${escapeHtml(a.action)}</code></dd>
    <dt>Resource</dt><dd><code id="resource">${escapeHtml(a.resource ?? '—')}</code></dd>
    <dt>Grant</dt><dd>One single use of this action</dd>
    <dt>Task</dt><dd><code>${escapeHtml(a.taskId ?? '—')}</code></dd>
    ${timeLeft(a)}
  </dl>
  ${agentText(a)}
</section>`,
  };
}

/**
 * A transaction challenge (TAC): the app signed the description, so it leads, labelled as the
 * app's, with the app's reason; the agent wrote none of it (draft-rosomakho-oauth-txn-challenge-00
 * §4.4: never an agent-written description).
 */
function transactionRequest(a: ApprovalDto): { title: string; body: string } {
  const c = a.transactionChallenge!;
  return {
    title: `Approve ${a.action}? — ${a.app.name}`,
    body: `<h1>${escapeHtml(a.app.name)} asks for your approval</h1>
<p>${asker(a)}, tried an operation that <strong>${escapeHtml(a.app.name)}</strong> wants you to approve first.</p>
<section id="transaction" aria-labelledby="what-h">
  <h2 id="what-h">The operation, as described and signed by ${escapeHtml(a.app.name)}</h2>
  <dl>
    <dt>Action</dt><dd><code id="action">${escapeHtml(a.action)}</code></dd>
    <dt>Resource</dt><dd><code id="resource">${escapeHtml(a.resource ?? '—')}</code></dd>
    <dt>Grant</dt><dd>One single use of this operation</dd>
    <dt>Transaction</dt><dd><code id="txn">${escapeHtml(c.txn)}</code></dd>
    ${timeLeft(a)}
  </dl>
  <h3>Details</h3>
  <pre id="details">${escapeHtml(JSON.stringify(a.details, null, 2))}</pre>
  <h3>Reason given by ${escapeHtml(a.app.name)}</h3>
  <p class="app-text" id="app-reason">${escapeHtml(c.reason)}</p>
</section>`,
  };
}

/**
 * A sudo grant: what is granted (scopes, duration) leads. The action is only the agent's stated
 * purpose; the elevated token is not limited to it, so it must not be what the human reads first.
 */
function sudoRequest(a: ApprovalDto): { title: string; body: string } {
  const scopes = a.grant?.scopes ?? [];
  const duration = durationText(a.grant?.duration ?? 0);
  return {
    title: `Grant temporary access: ${scopes.join(' ')} for ${duration}? — ${a.app.name}`,
    body: `<h1>Grant temporary access for ${escapeHtml(duration)}?</h1>
<p>${asker(a)}, asks for these permissions:</p>
<section id="grant" aria-labelledby="grant-h">
  <h2 id="grant-h">What you grant</h2>
  <dl>
    <dt>Permissions</dt><dd><ul id="grant-scopes">${scopes.map((scope) => `<li><code>${escapeHtml(scope)}</code></li>`).join('')}</ul></dd>
    <dt>Duration</dt><dd><strong id="grant-duration">${escapeHtml(duration)}</strong> from your approval</dd>
  </dl>
  <p>For that time the agent can use these permissions for any request, not only for the purpose it states below.</p>
</section>
<section aria-labelledby="what-h">
  <h2 id="what-h">The agent’s stated purpose</h2>
  <p class="muted">Written by the agent.</p>
  <dl>
    <dt>Stated purpose</dt><dd><code id="action">${escapeHtml(a.action)}</code></dd>
    <dt>Resource</dt><dd><code id="resource">${escapeHtml(a.resource ?? '—')}</code></dd>
    <dt>Task</dt><dd><code>${escapeHtml(a.taskId ?? '—')}</code></dd>
    ${timeLeft(a)}
  </dl>
  ${agentText(a)}
</section>`,
  };
}

/** The approval page: everything the agent wrote is escaped (invisible characters shown), nothing inline runs. */
export function approvalPage(token: string, a: ApprovalDto): string {
  const pending = a.status === 'pending';
  const { title, body } = a.transactionChallenge ? transactionRequest(a) : a.grant?.type === 'sudo' ? sudoRequest(a) : tokenRequest(a);
  return layout(
    title,
    `${body}
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
