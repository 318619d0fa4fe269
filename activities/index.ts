/**
 * Thin activities: heartbeat, map Scoreline's errors to Temporal failures, and call src/run.
 * A non-retryable ScorelineError (bad config, bad input, broken model) becomes a non-retryable
 * ApplicationFailure, so the run fails at once with the message a user can act on.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import * as alerts from '../src/alerts';
import type { PipelineConfig } from '../src/config/pipeline';
import { ScorelineError } from '../src/errors';
import * as nrt from '../src/nrt/score';
import { instrumentActivities } from '../src/obs/activity';
import type { NrtAuditGroup, NrtRequest } from '../src/nrt/protocol';
import * as batch from '../src/run/batch';
import type { RunContext } from '../src/run/context';
import { profileRun, type ProfileArgs } from '../src/run/profile';
import { changedDates, type ChangedDatesArgs } from '../src/run/backfill';
import type { RunInput, RunRef } from '../src/types';

/**
 * A run's step with its heartbeats: the step's own (between stages), and, when the activity has a
 * heartbeat timeout, one every third of it repeating the last details while the step runs. So an attempt
 * is given up (and retried elsewhere) when its worker died or its event loop stalled, not because one
 * stage (a big chunk's inference, a slow warehouse commit) outlasted the timeout.
 */
async function withHeartbeats<T>(fn: (hooks: batch.StepHooks) => Promise<T>): Promise<T> {
  const ctx = Context.current();
  let last: unknown;
  const hooks: batch.StepHooks = {
    heartbeat: (details) => {
      last = details;
      ctx.heartbeat(details);
    },
    throwIfCancelled: () => {
      // The reason is the SDK's CancelledFailure: thrown, it reports the activity as cancelled.
      if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
    },
    attempt: ctx.info.attempt,
  };
  const timeoutMs = ctx.info.heartbeatTimeoutMs;
  const ticker = timeoutMs ? setInterval(() => ctx.heartbeat(last), Math.max(250, Math.floor(timeoutMs / 3))) : undefined;
  try {
    return await fn(hooks);
  } finally {
    if (ticker) clearInterval(ticker);
  }
}

/**
 * A file system that refuses the operation itself refuses every retry alike: a file where a directory
 * goes (ENOTDIR, EISDIR, and EEXIST from a recursive mkdir), no permission, read-only.
 */
const PERMANENT_FS_ERRORS = new Set(['ENOTDIR', 'EISDIR', 'EEXIST', 'EACCES', 'EPERM', 'EROFS']);

async function mapErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ScorelineError && !err.retryable) {
      throw ApplicationFailure.create({ message: err.message, type: err.name, nonRetryable: true });
    }
    if (PERMANENT_FS_ERRORS.has((err as NodeJS.ErrnoException)?.code ?? '')) {
      throw ApplicationFailure.create({ message: (err as Error).message, type: 'ScorelineFileSystemError', nonRetryable: true });
    }
    throw err;
  }
}

/** The activity table, each call observed (src/obs/activity.ts: in-flight gauge, metrics, run-scoped logs). */
export function createActivities(ctx: RunContext) {
  return instrumentActivities(ctx, {
    planRun: (args: batch.PlanArgs) => withHeartbeats((h) => mapErrors(() => batch.planRun(ctx, args, h))),
    checkRunKeys: (args: batch.KeyCheckArgs) => withHeartbeats(() => mapErrors(() => batch.checkRunKeys(ctx, args))),
    scoreChunk: (args: batch.ScoreArgs) => withHeartbeats((h) => mapErrors(() => batch.scoreChunk(ctx, args, h))),
    commitRun: (args: batch.CommitArgs) => withHeartbeats(() => mapErrors(() => batch.commitRun(ctx, args))),
    finishRun: (args: batch.FinishArgs) => withHeartbeats(() => mapErrors(() => batch.finishRun(ctx, args))),
    profileRun: (args: ProfileArgs) => withHeartbeats(() => mapErrors(() => profileRun(ctx, args))),
    // `rescore_window`: which of the previous days changed (workflows/scheduled.ts).
    changedDates: (args: ChangedDatesArgs) => mapErrors(() => changedDates(ctx, args)),
    resolveAlertConfig: async (args: { input: RunInput }) => alerts.resolveAlertConfig(ctx, args),
    previousRunFailed: (args: { config: PipelineConfig; run: RunRef }) => mapErrors(() => alerts.previousRunFailed(ctx, args)),
    // For a `stalled` alert: the server's view of the chunk activities in flight (worker, attempt, last heartbeat).
    describeChunkActivities: (args: alerts.DescribeChunksArgs) => alerts.describeChunkActivities(Context.current().client, args),
    // Credentials come from this worker's environment, never from the arguments (which are in history).
    deliverAlert: (args: alerts.DeliverArgs) =>
      mapErrors(() => alerts.deliverAlert(args, { env: process.env, namespace: Context.current().info.namespace })),
    // Near-real-time (workflows/nrt.ts): a local activity next to the workflow; `withAudit` for the per-request design.
    scoreNrtRows: (req: NrtRequest, rows: Uint8Array, withAudit = false) =>
      mapErrors(async () => {
        const scored = await nrt.scoreRequest(ctx, req, rows, Context.current().info.workflowExecution?.workflowId ?? '');
        if (withAudit) await nrt.recordNrtAudits(ctx, [{ pipeline: req.pipeline, config: req.config, overrides: req.overrides, rows: [scored.audit] }]);
        return scored;
      }),
    recordNrtAudits: (groups: NrtAuditGroup[]) => mapErrors(() => nrt.recordNrtAudits(ctx, groups)),
  });
}

export type ScorelineActivities = ReturnType<typeof createActivities>;
