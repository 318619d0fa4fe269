/**
 * The batch run: plan → score chunks in a bounded sliding window of activities → one atomic commit →
 * audit. Deterministic orchestration only; every side effect is an activity. Only references and stats
 * cross the boundary (the chunk list, per-chunk stats), never rows.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  defineQuery,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { ScorelineActivities } from '../activities';
import { SA_MODEL, SA_MODEL_VERSION, SA_PIPELINE, SA_SCHEDULED_START } from '../src/search-attributes';
import { mergeAgreement, type Agreement } from '../src/profile/agreement';
import { mergeProfiles, profiledChunk, type Profile } from '../src/profile/sketch';
import type { ChunkStats, CommitStats, DriftSummary, PlanSummary, RunInput, RunPlan, RunProgress, RunRef, RunResult, RunStatus, RunTotals, StagedChunk } from '../src/types';
import { RunAlerts } from './alerts';
import { describeError as describe } from './describe';

export const progressQuery = defineQuery<RunProgress>('progress');

/** Planning reads metadata and may snapshot a warehouse query; bad config/input is not retried. */
const { planRun } = proxyActivities<ScorelineActivities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 5, initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

/**
 * One chunk: read → tensor → ONNX → stage. Heartbeats between stages; a worker that dies is noticed
 * within the heartbeat timeout and the chunk is retried elsewhere (staging overwrites, so no duplicates).
 * WAIT_CANCELLATION_COMPLETED: on cancel/failure we wait until the activity stopped before removing
 * staged files, so nothing is written after the clean-up.
 */
const { scoreChunk } = proxyActivities<ScorelineActivities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '2 minutes',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { maximumAttempts: 4, initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** Commit and finish are idempotent, so they may retry generously. */
const { commitRun, finishRun } = proxyActivities<ScorelineActivities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 10, initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/**
 * Profile + drift of a committed run: a few small queries. Its failure never fails the run (the output
 * is committed by then); the run's result and audit say the profile is missing.
 */
const { profileRun } = proxyActivities<ScorelineActivities>({
  startToCloseTimeout: '5 minutes',
  retry: { maximumAttempts: 5, initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

class StepFailure {
  constructor(
    readonly step: string,
    readonly error: unknown,
  ) {}
}

export async function scorelineBatchRun(input: RunInput): Promise<RunResult> {
  const info = workflowInfo();
  const scheduledStart = info.typedSearchAttributes.get(SA_SCHEDULED_START);
  const provisional: RunRef = {
    runId: info.firstExecutionRunId,
    workflowId: info.workflowId,
    pipeline: input.pipeline,
    logicalDate: input.date ?? '',
    trigger: input.trigger ?? (scheduledStart ? 'schedule' : 'ui'),
  };
  const startedAtMs = Date.now();
  const progress: RunProgress = {
    phase: 'planning',
    runId: provisional.runId,
    pipeline: provisional.pipeline,
    logicalDate: provisional.logicalDate,
    chunksTotal: 0,
    chunksDone: 0,
    rowsPlanned: 0,
    rowsDone: 0,
    rowsOut: 0,
    startedAtMs,
    updatedAtMs: startedAtMs,
  };
  setHandler(progressQuery, () => progress);
  const alerts = new RunAlerts(input, provisional, startedAtMs);

  let plan: RunPlan | undefined;
  const staged: StagedChunk[] = [];
  const totals: RunTotals = { chunksDone: 0, rowsIn: 0, rowsOut: 0, rowsRejected: 0, rowsImputed: 0, stageMs: { read: 0, convert: 0, infer: 0, write: 0 } };
  let commit: CommitStats | undefined;
  let profile: Profile | undefined;
  // Shadow scoring (`shadow:`): the challenger's staged chunks, its commit, and the agreement so far.
  const shadowStaged: StagedChunk[] = [];
  let agreement: Agreement | undefined;
  let shadowCommit: CommitStats | undefined;
  let shadowError: string | undefined;
  const shadowArgs = () => ({ commit: shadowCommit, agreement, error: shadowError });
  try {
    plan = await step('plan', () => planRun({ input, run: provisional, scheduledStart: scheduledStart?.toISOString(), startedAtMs }));
    Object.assign(progress, {
      phase: 'scoring',
      logicalDate: plan.run.logicalDate,
      chunksTotal: plan.chunks.length,
      rowsPlanned: plan.rowsPlanned,
      model: plan.model,
      updatedAtMs: Date.now(),
    });
    tagRun(plan);
    alerts.planned(plan);
    await scoreAllChunks(plan, alerts, (s) => {
      staged.push({ index: s.index, rows: s.rowsOut, file: s.stagedFile });
      addChunk(totals, s);
      if (s.profile) profile = mergeProfiles(profile, s.profile);
      if (s.shadow) {
        shadowStaged.push({ index: s.index, rows: s.shadow.rowsOut, file: s.shadow.stagedFile });
        agreement = mergeAgreement(agreement, s.shadow.agreement);
      }
      Object.assign(progress, { chunksDone: totals.chunksDone, rowsDone: totals.rowsIn, rowsOut: totals.rowsOut, updatedAtMs: Date.now() });
    });
    progress.phase = 'committing';
    staged.sort((a, b) => a.index - b.index);
    shadowStaged.sort((a, b) => a.index - b.index);
    // Once the commit starts it finishes (or fails) on its own terms: a cancel arriving mid-commit
    // must not race the partition swap, and a committed run is reported as succeeded.
    commit = await step('commit', () => CancellationScope.nonCancellable(() => commitRun({ run: plan!.run, config: plan!.config, staged })));
    // The challenger's table after the output, and never at the output's expense: a shadow table that
    // cannot be written is reported (result, audit row) and its staging removed, the run still succeeds.
    if (plan.shadow) {
      shadowCommit = await CancellationScope.nonCancellable(() => commitRun({ run: plan!.run, config: plan!.config, staged: shadowStaged, shadow: true })).catch((err) => {
        shadowError = `shadow commit failed: ${describe(err)}`;
        return undefined;
      });
    }
  } catch (err) {
    const failure = err instanceof StepFailure ? err : new StepFailure('run', err);
    // A cancelled workflow may see a chunk's own error first; the root scope says what really happened.
    const cancelled = isCancellation(failure.error) || CancellationScope.current().consideredCancelled;
    const status: RunStatus = cancelled ? 'cancelled' : 'failed';
    const message = cancelled ? 'cancelled' : `${failure.step} failed: ${describe(failure.error)}`;
    progress.phase = status;
    progress.error = message;
    // Alerts, clean-up and audit run even when the workflow itself is being cancelled.
    const sent = await CancellationScope.nonCancellable(() => alerts.finish({ status, step: failure.step, error: describe(failure.error) }));
    await CancellationScope.nonCancellable(() =>
      finishRun({ input, run: plan?.run ?? provisional, plan: plan && summarize(plan), status, error: message, totals, startedAtMs, alerts: sent, shadow: shadowArgs() }),
    );
    if (cancelled) throw isCancellation(failure.error) ? failure.error : new CancelledFailure('run cancelled');
    throw ApplicationFailure.nonRetryable(message, 'ScorelineRunFailed');
  }

  const summary = summarize(plan);
  // patched(): runs started by an older worker replay without this step.
  const drift = profile && patched('run-profile-v1') ? await CancellationScope.nonCancellable(() => profileStep(plan!, profile!)) : undefined;
  const sent = await CancellationScope.nonCancellable(() => alerts.finish({ status: 'succeeded', drift }));
  const result = await CancellationScope.nonCancellable(() =>
    finishRun({ input, run: summary.run, plan: summary, status: 'succeeded', totals, commit, startedAtMs, alerts: sent, shadow: shadowArgs() }),
  );
  if (drift) result.drift = drift;
  progress.phase = 'succeeded';
  progress.updatedAtMs = Date.now();
  upsertMemo({
    rows_in: result.rowsIn,
    rows_out: result.rowsOut,
    output: result.output ?? null,
    model: `${plan.model.name}:${plan.model.version}`,
    ...(drift && { drifted_columns: drift.breached.map((c) => c.column) }),
  });
  return result;
}

async function profileStep(plan: RunPlan, profile: Profile): Promise<DriftSummary> {
  try {
    return await profileRun({ run: plan.run, config: plan.config, model: plan.model, profile });
  } catch (err) {
    return { reference: null, columns: [], breached: [], error: `profile not stored: ${describe(err)}` };
  }
}

async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw err instanceof StepFailure ? err : new StepFailure(name, err);
  }
}

function summarize(plan: RunPlan): PlanSummary {
  return { ...plan, chunks: plan.chunks.length };
}

function addChunk(t: RunTotals, s: ChunkStats): void {
  t.chunksDone += 1;
  t.rowsIn += s.rowsIn;
  t.rowsOut += s.rowsOut;
  t.rowsRejected += s.rowsRejected;
  t.rowsImputed += s.rowsImputed;
  t.stageMs.read += s.readMs;
  t.stageMs.convert += s.convertMs;
  t.stageMs.infer += s.inferMs;
  t.stageMs.write += s.writeMs;
}

/** Bounded sliding window: at most `parallelism` chunk activities in flight; first failure cancels the rest. */
async function scoreAllChunks(plan: RunPlan, alerts: RunAlerts, onChunk: (s: ChunkStats) => void): Promise<void> {
  let failure: StepFailure | undefined;
  const scope = new CancellationScope();
  await scope.run(async () => {
    const inflight = new Set<Promise<void>>();
    for (const chunk of plan.chunks) {
      while (inflight.size >= plan.config.parallelism && !failure) await Promise.race(inflight);
      if (failure) break;
      const p: Promise<void> = alerts
        .watchChunk(chunk.index, scoreChunk({ run: plan.run, config: plan.config, model: plan.model, chunk, profile: profiledChunk(chunk.index, plan.chunks.length, plan.profileColumns ?? 0), shadow: plan.shadow }))
        .then(
          (s) => onChunk(s),
          (err) => {
            if (!failure) {
              failure = new StepFailure(`score chunk ${chunk.index}`, err);
              scope.cancel();
            }
          },
        )
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await Promise.all(inflight);
  });
  if (failure) throw failure;
}

/** Search attributes only when the starter set ours (i.e. they are registered on this cluster). */
function tagRun(plan: RunPlan): void {
  if (workflowInfo().typedSearchAttributes.get(SA_PIPELINE) === undefined) return;
  upsertSearchAttributes([
    { key: SA_MODEL, value: plan.model.name },
    { key: SA_MODEL_VERSION, value: plan.model.version },
  ]);
}
