/**
 * What a Temporal Schedule starts: turn the nominal time into the logical date, then run the batch
 * workflow for that date as a child with the usual id `scoreline/<pipeline>/<date>`.
 *
 * Why not let the schedule start `scorelineBatchRun` directly: the server names scheduled workflows
 * `<base id>-<nominal time>`, so they could never carry the per-date id, and the per-date id (with its
 * conflict policy) is what guarantees that a date never runs twice at once — across cron times,
 * backfills, `scoreline run` and the API alike. This workflow is that bridge; it ends as its batch run
 * ends (failing when it fails, which is what the schedule's `pause_on_failure` watches).
 */
import {
  ApplicationFailure,
  isCancellation,
  ParentClosePolicy,
  proxyActivities,
  startChild,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError, type TypedSearchAttributes } from '@temporalio/common';
import type { ScorelineActivities } from '../activities';
import { addDays, logicalDateIn } from '../src/schedules/logical-date';
import type { RescoredDate, ScheduledRunMemo, ScheduledRunResult } from '../src/schedules/types';
import { BATCH_WORKFLOW, batchWorkflowId, SA_LOGICAL_DATE, SA_MODEL, SA_PIPELINE, SA_SCHEDULED_START, SA_TRIGGER } from '../src/search-attributes';
import type { RunInput, RunResult } from '../src/types';
import { describeError } from './describe';

export async function scorelineScheduledRun(input: RunInput): Promise<ScheduledRunResult> {
  const info = workflowInfo();
  // The nominal time (before jitter); a start by hand (no schedule) counts as nominal "now".
  const nominal = info.typedSearchAttributes.get(SA_SCHEDULED_START) ?? info.startTime;
  // Computed in workflow code (Intl, no activity): the result is fixed in history by the child's id.
  const logicalDate = input.date ?? logicalDateIn(nominal, input.timezone ?? 'UTC');
  const workflowId = batchWorkflowId(input.pipeline, logicalDate);
  const memo: ScheduledRunMemo = { logical_date: logicalDate, run_workflow_id: workflowId, outcome: 'started' };

  // Our search attributes only where the schedule set them (i.e. the cluster has them registered).
  const tagged = info.typedSearchAttributes.get(SA_PIPELINE) !== undefined;
  const logicalDateValue = new Date(`${logicalDate}T00:00:00Z`);
  if (tagged) upsertSearchAttributes([{ key: SA_LOGICAL_DATE, value: logicalDateValue }]);

  const childInput: RunInput = { ...input, date: logicalDate, trigger: 'schedule' };
  let child;
  try {
    child = await startChild(BATCH_WORKFLOW, {
      workflowId,
      args: [childInput],
      taskQueue: info.taskQueue,
      workflowIdReusePolicy: 'ALLOW_DUPLICATE', // a date that ran before may run again: it replaces its partition
      // Cancelled, not terminated, with this workflow (overlap cancel_other/terminate_other, or by hand):
      // the batch run then removes what it staged and records "cancelled".
      parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
      typedSearchAttributes: tagged
        ? ([
            { key: SA_PIPELINE, value: input.pipeline },
            { key: SA_LOGICAL_DATE, value: logicalDateValue },
            { key: SA_TRIGGER, value: 'schedule' },
            ...modelAttribute(info.typedSearchAttributes),
          ] as never)
        : undefined,
      memo: { pipeline: input.pipeline, logical_date: logicalDate, scheduled_for: nominal.toISOString() },
    });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    // The date is already being scored (another cron time, a backfill, `scoreline run`): not twice at once.
    const reason = `${workflowId} is already running`;
    upsertMemo({ ...memo, outcome: 'skipped', reason } satisfies ScheduledRunMemo);
    return { outcome: 'skipped', logicalDate, workflowId, reason };
  }
  upsertMemo({ ...memo, run_id: child.firstExecutionRunId });

  // `rescore_window: Nd`: beside the date's run, re-check the N days before it (late-arriving data).
  // Only pipelines that set it run this code, so histories of other schedules are unchanged.
  const windowDays = rescoreWindowDays(input.config);
  const rescoring = windowDays > 0 ? rescoreWindow(input, logicalDate, windowDays, tagged, info.typedSearchAttributes) : undefined;

  let result: RunResult | undefined;
  let failure: unknown;
  try {
    result = (await child.result()) as RunResult;
  } catch (err) {
    failure = err;
  }
  const rescored = rescoring && (await rescoring);
  if (rescored) upsertMemo({ ...memo, run_id: child.firstExecutionRunId, rescored: rescored.map((r) => `${r.logicalDate}: ${r.outcome}`).join(', ') });
  if (failure !== undefined) {
    if (isCancellation(failure)) throw failure; // this workflow was cancelled (and with it, the run)
    throw ApplicationFailure.nonRetryable(`batch run ${workflowId} did not succeed: ${describeError(failure)}`, 'ScorelineRunFailed');
  }
  return { outcome: 'ran', logicalDate, workflowId, result: result!, ...(rescored && { rescored }) };
}

/** Planning reads metadata (a stat per file; a snapshot and one aggregate query for a warehouse). */
const { changedDates } = proxyActivities<ScorelineActivities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 3, initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

/** `3d` → 3; 0 when the pipeline sets no rescore_window (validated by the pipeline schema). */
function rescoreWindowDays(config: unknown): number {
  const window = (config as { rescore_window?: unknown } | undefined)?.rescore_window;
  const m = typeof window === 'string' ? /^(\d+)d$/.exec(window) : null;
  return m ? Number(m[1]) : 0;
}

/**
 * The `rescore_window` re-check: one activity tells which of the previous days changed (input
 * fingerprint or model sha256 against the date's last succeeded run), then each changed day is
 * rescored as its own batch run `scoreline/<pipeline>/<date>`, one after another. Never throws: the
 * scheduled run's outcome stays that of its own date; each rescore's outcome is in the result and memo
 * (and a failed rescore alerts like any failed run).
 */
async function rescoreWindow(input: RunInput, logicalDate: string, days: number, tagged: boolean, attrs: TypedSearchAttributes): Promise<RescoredDate[]> {
  const dates: string[] = [];
  for (let i = days; i >= 1; i--) dates.push(addDays(logicalDate, -i));
  let plan: Awaited<ReturnType<typeof changedDates>>;
  try {
    plan = await changedDates({ input: { ...input, trigger: 'schedule' }, dates });
  } catch (err) {
    if (isCancellation(err)) throw err;
    return dates.map((d) => ({ logicalDate: d, outcome: 'error' as const, reason: `re-check failed: ${describeError(err)}` }));
  }
  const out: RescoredDate[] = [];
  for (const d of plan) {
    if (!d.run) {
      out.push({ logicalDate: d.logical_date, outcome: 'unchanged', reason: d.reason });
      continue;
    }
    const workflowId = batchWorkflowId(input.pipeline, d.logical_date);
    const dateValue = new Date(`${d.logical_date}T00:00:00Z`);
    try {
      const child = await startChild(BATCH_WORKFLOW, {
        workflowId,
        args: [{ ...input, date: d.logical_date, trigger: 'schedule' } satisfies RunInput],
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        typedSearchAttributes: tagged
          ? ([{ key: SA_PIPELINE, value: input.pipeline }, { key: SA_LOGICAL_DATE, value: dateValue }, { key: SA_TRIGGER, value: 'schedule' }, ...modelAttribute(attrs)] as never)
          : undefined,
        memo: { pipeline: input.pipeline, logical_date: d.logical_date, rescore_of: logicalDate, reason: d.reason },
      });
      try {
        await child.result();
        out.push({ logicalDate: d.logical_date, outcome: 'succeeded', reason: d.reason, workflowId });
      } catch (err) {
        if (isCancellation(err)) throw err;
        out.push({ logicalDate: d.logical_date, outcome: 'failed', reason: `${d.reason}; the rescore failed: ${describeError(err)}`, workflowId });
      }
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      out.push({ logicalDate: d.logical_date, outcome: 'skipped', reason: `${workflowId} is already running`, workflowId });
    }
  }
  return out;
}

function modelAttribute(attrs: TypedSearchAttributes): { key: typeof SA_MODEL; value: string }[] {
  const model = attrs.get(SA_MODEL);
  return model === undefined ? [] : [{ key: SA_MODEL, value: model }];
}
