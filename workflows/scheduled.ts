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
  startChild,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError, type TypedSearchAttributes } from '@temporalio/common';
import { logicalDateIn } from '../src/schedules/logical-date';
import type { ScheduledRunMemo, ScheduledRunResult } from '../src/schedules/types';
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

  try {
    const result = (await child.result()) as RunResult;
    return { outcome: 'ran', logicalDate, workflowId, result };
  } catch (err) {
    if (isCancellation(err)) throw err; // this workflow was cancelled (and with it, the run)
    throw ApplicationFailure.nonRetryable(`batch run ${workflowId} did not succeed: ${describeError(err)}`, 'ScorelineRunFailed');
  }
}

function modelAttribute(attrs: TypedSearchAttributes): { key: typeof SA_MODEL; value: string }[] {
  const model = attrs.get(SA_MODEL);
  return model === undefined ? [] : [{ key: SA_MODEL, value: model }];
}
