export { MfaProxyAgent, type Approval, type MfaProxyAgentOptions, type PendingStepUp, type StepUpOptions, type StepUpRequest } from './agent.js';
export { MfaProxyWorker, type MfaProxyWorkerOptions } from './worker.js';
export { MfaProxyError, StepUpCancelledError, StepUpDeniedError, StepUpError, StepUpExpiredError } from './errors.js';
export { parseWwwAuthenticate, type Challenge } from './www-authenticate.js';
