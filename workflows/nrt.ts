/**
 * Near-real-time scoring: one long-lived workflow per pipeline answers `score` Workflow Updates. The
 * update handler scores the rows in a local activity (same worker, no task-queue round trip) and returns
 * the predictions; audit rows are written afterwards by a regular activity, batched, off the caller's
 * path. The history grows by one request per update (rows once, as one binary payload), so the workflow
 * continues as new when Temporal suggests it, and ends after an idle hour (the next request starts it
 * again with update-with-start). docs/nrt.md compares this with a workflow per request.
 */
import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  defineQuery,
  defineUpdate,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { ScorelineActivities } from '../activities';
import { groupAudits, nrtAuditRow, NRT_ROLLING_OVER, NRT_UPDATE, type NrtRequest, type NrtResult } from '../src/nrt/protocol';
import type { RunAudit } from '../src/types';
import { describeError, failureType } from './describe';

export const scoreUpdate = defineUpdate<NrtResult, [NrtRequest, Uint8Array]>(NRT_UPDATE);

export interface NrtStats {
  requests: number;
  failed: number;
  rows: number;
  lastRequestAtMs?: number;
}
export const nrtStatsQuery = defineQuery<NrtStats>('stats');

export interface NrtWorkflowInput {
  pipeline: string;
  /** Carried across continue-as-new. */
  stats?: NrtStats;
  /** Roll over once the history holds this many bytes (default 8 MiB; tests set it low). */
  maxHistoryBytes?: number;
  /** Audit rows the previous run could not write yet (its audit store was down). */
  pendingAudits?: { req: NrtRequest; row: RunAudit }[];
}

/** Requests wait for this: short timeout, quick retries (a caller is waiting), bad input not retried. */
const { scoreNrtRows } = proxyLocalActivities<ScorelineActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { maximumAttempts: 3, initialInterval: '50 milliseconds', backoffCoefficient: 2, maximumInterval: '1 second' },
});

/** Nobody waits for the audit rows, so they may retry patiently. */
const { recordNrtAudits } = proxyActivities<ScorelineActivities>({
  startToCloseTimeout: '2 minutes',
  retry: { maximumAttempts: 20, initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

const IDLE_MS = 60 * 60 * 1000;
/** Audit rows wait at most this long (or for this many requests) to be written together. */
const AUDIT_WINDOW_MS = 1000;
const AUDIT_BATCH = 200;
/** Updates one run takes before rolling over (Temporal caps a run at 2,000 by default). */
const MAX_UPDATES_PER_RUN = 1_000;
/** Besides Temporal's own suggestion (4 MiB / 4,096 events on a default server). */
const MAX_HISTORY_BYTES = 8 * 1024 * 1024;

export async function scorelineNrt(input: NrtWorkflowInput): Promise<void> {
  const stats: NrtStats = input.stats ?? { requests: 0, failed: 0, rows: 0 };
  const pending: { req: NrtRequest; row: RunAudit }[] = [...(input.pendingAudits ?? [])];
  const workflowId = workflowInfo().workflowId;
  const maxHistoryBytes = input.maxHistoryBytes ?? MAX_HISTORY_BYTES;
  /** Set once the history is full: new requests are turned away (and retried by the client on the next run). */
  let draining = false;
  let acceptedThisRun = 0;
  const historyFull = () =>
    acceptedThisRun >= MAX_UPDATES_PER_RUN || workflowInfo().continueAsNewSuggested || workflowInfo().historySize > maxHistoryBytes;
  setHandler(nrtStatsQuery, () => stats);
  // One scoring local activity at a time, in the order the requests were accepted. Live, concurrent local
  // activities resolve in activations of their own, in between the loop below; on replay their markers
  // are all in history before the first request completes, so they resolve together, and the loop's
  // commands (its timers, the audit flush) came out in another order: a nondeterminism error once the
  // workflow had to be replayed (a worker restart), and the pipeline's scoring down until terminated.
  // One at a time costs a single client nothing; concurrent clients wait for each other's scoring
  // (measured: docs/nrt.md).
  let scoring: Promise<unknown> = Promise.resolve();
  setHandler(
    scoreUpdate,
    async (req, rows) => {
      acceptedThisRun += 1;
      stats.requests += 1;
      stats.rows += req.rows;
      stats.lastRequestAtMs = Date.now();
      const turn = scoring.then(() => scoreNrtRows(req, rows));
      scoring = turn.catch(() => undefined);
      try {
        const { result, audit } = await turn;
        pending.push({ req, row: audit });
        return result;
      } catch (err) {
        stats.failed += 1;
        const message = describeError(err);
        pending.push({ req, row: nrtAuditRow(req, workflowId, 'failed', { finishedAtMs: Date.now(), error: message }) });
        throw ApplicationFailure.create({ message, type: failureType(err) ?? NRT_FAILED, nonRetryable: true });
      }
    },
    {
      // Rejected updates never reach history: a malformed or misrouted request costs nothing.
      validator: (req, rows) => {
        // Checked per request, not only by the loop below: that loop may be waiting on an audit write
        // while a burst of requests arrives.
        if (draining || historyFull()) throw new Error(NRT_ROLLING_OVER);
        if (!req || typeof req.requestId !== 'string' || typeof req.rows !== 'number') throw new Error('malformed near-real-time request');
        if (req.pipeline !== input.pipeline) throw new Error(`request for pipeline "${req.pipeline}" sent to the workflow of "${input.pipeline}"`);
        if (!rows || typeof (rows as Uint8Array).byteLength !== 'number') throw new Error('request without rows (an Arrow IPC payload)');
      },
    },
  );

  // One batch per call (not "until empty"): under a steady stream `pending` never stays empty, and the
  // loop below must get round to checking the history size.
  const flush = async () => {
    const batch = pending.splice(0);
    if (batch.length === 0) return;
    try {
      await recordNrtAudits(groupAudits(batch));
    } catch {
      // The audit store stayed down through all retries: keep the rows for the next turn rather than
      // failing the workflow (and every request in flight with it).
      pending.unshift(...batch);
    }
  };

  // The waits below wake on what history records (a request scored, a timer), never on historyFull()
  // alone: the history's size changes with workflow tasks that replay does not see (one that only
  // delivered a request the validator turned away), so a wait it ended would end elsewhere on replay.
  // It is checked once awake; a full history is rolled over at most AUDIT_WINDOW_MS later.
  for (;;) {
    const busy = await condition(() => pending.length > 0, IDLE_MS);
    // Collect a window's requests into one audit write: an activity (and a DuckDB or warehouse write)
    // per request competed with the next request for the worker's and the server's CPU.
    if (busy && !historyFull() && patched('nrt-audit-window')) await condition(() => pending.length >= AUDIT_BATCH, AUDIT_WINDOW_MS);
    await flush();
    if (busy && !historyFull()) continue;
    // Idle, or the history is full: let running requests finish and record them, then end or roll over.
    // New requests are turned away meanwhile, or a steady stream of them would never let it finish.
    draining = true;
    await condition(allHandlersFinished);
    await flush();
    if (!busy && pending.length === 0) return;
    await continueAsNew<typeof scorelineNrt>({ pipeline: input.pipeline, stats, maxHistoryBytes: input.maxHistoryBytes, pendingAudits: pending });
  }
}

/** Callers map the Scoreline error type from inside an activity failure (ScorelineInputError, …); this when there is none. */
const NRT_FAILED = 'ScorelineNrtFailed';

/**
 * The alternative measured against `scorelineNrt` (docs/nrt.md): one short workflow per request, started
 * eagerly by a client that shares its connection with a worker; the local activity scores and writes
 * the audit row before the workflow completes with the predictions.
 */
export async function scorelineNrtRequest(req: NrtRequest, rows: Uint8Array): Promise<NrtResult> {
  try {
    const { result } = await scoreNrtRows(req, rows, true);
    return result;
  } catch (err) {
    const message = describeError(err);
    await recordNrtAudits([{ pipeline: req.pipeline, config: req.config, overrides: req.overrides, rows: [nrtAuditRow(req, workflowInfo().workflowId, 'failed', { finishedAtMs: Date.now(), error: message })] }]);
    throw ApplicationFailure.create({ message, type: failureType(err) ?? NRT_FAILED, nonRetryable: true });
  }
}
