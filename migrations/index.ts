import { Foundation1764340000000 } from './1764340000000-Foundation.js';
import { Factors1764350000000 } from './1764350000000-Factors.js';
import { StepUps1764360000000 } from './1764360000000-StepUps.js';
import { AuditChain1764370000000 } from './1764370000000-AuditChain.js';
import { Webhooks1764380000000 } from './1764380000000-Webhooks.js';
import { Tasks1764390000000 } from './1764390000000-Tasks.js';
import { Authority1764400000000 } from './1764400000000-Authority.js';
import { AuditRetention1764420000000 } from './1764420000000-AuditRetention.js';
import { AuditDetails1764440000000 } from './1764440000000-AuditDetails.js';
import { OutboxStreamSequence1764450000000 } from './1764450000000-OutboxStreamSequence.js';
import { TaskCreator1764460000000 } from './1764460000000-TaskCreator.js';
import { OutboxStreamHead1764470000000 } from './1764470000000-OutboxStreamHead.js';
import { OutboxNoEndpointRetention1764490000000 } from './1764490000000-OutboxNoEndpointRetention.js';
import { AuditSealOrder1764500000000 } from './1764500000000-AuditSealOrder.js';
import { CibaNotification1764600000000 } from './1764600000000-CibaNotification.js';
import { TxnChallenge1764700000000 } from './1764700000000-TxnChallenge.js';
import { HumanSessions1764800000000 } from './1764800000000-HumanSessions.js';
import { PushSubscriptions1764900000000 } from './1764900000000-PushSubscriptions.js';
import { ChallengePurpose1764950000000 } from './1764950000000-ChallengePurpose.js';
import { StepUpsFillfactor1765000000000 } from './1765000000000-StepUpsFillfactor.js';
import { AgentActivity1765100000000 } from './1765100000000-AgentActivity.js';
import { IssuedTokenHash1765200000000 } from './1765200000000-IssuedTokenHash.js';
import { StepUpHistoryIndexes1765300000000 } from './1765300000000-StepUpHistoryIndexes.js';
import { OutboxUnpublishedOrder1765400000000 } from './1765400000000-OutboxUnpublishedOrder.js';
import { OutboxDeliveriesOrder1765500000000 } from './1765500000000-OutboxDeliveriesOrder.js';
import { VerifyWriteIndexes1765600000000 } from './1765600000000-VerifyWriteIndexes.js';

/** Every migration, in order. Listed explicitly: ESM has no reliable glob import. */
export const MIGRATIONS = [Foundation1764340000000, Factors1764350000000, StepUps1764360000000, AuditChain1764370000000, Webhooks1764380000000, Tasks1764390000000, Authority1764400000000, AuditRetention1764420000000, AuditDetails1764440000000, OutboxStreamSequence1764450000000, TaskCreator1764460000000, OutboxStreamHead1764470000000, OutboxNoEndpointRetention1764490000000, AuditSealOrder1764500000000, CibaNotification1764600000000, TxnChallenge1764700000000, HumanSessions1764800000000, PushSubscriptions1764900000000, ChallengePurpose1764950000000, StepUpsFillfactor1765000000000, AgentActivity1765100000000, IssuedTokenHash1765200000000, StepUpHistoryIndexes1765300000000, OutboxUnpublishedOrder1765400000000, OutboxDeliveriesOrder1765500000000, VerifyWriteIndexes1765600000000];
