export { MfaProxyApp, transactionTokenOf, type MfaProxyAppOptions } from './app.js';
export { AgentAuthError, ApprovalRequiredError, MfaProxyError } from './errors.js';
export type { ActionDescriptor, AgentSession, Approved, ApprovalSpec, IncomingRequest, MfaProxyEvent, SudoGrant, SudoSpec, VerifiedApproval, VerifyInput, VerifyResult } from './types.js';
