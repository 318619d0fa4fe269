/**
 * The batch run: plan → score chunks in a bounded sliding window of activities → one atomic commit →
 * audit. Deterministic orchestration only; every side effect is an activity. Only references and stats
 * cross the boundary (the chunk list, per-chunk stats), never rows.
 */
import {
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
import { SA_LOGICAL_DATE, SA_MODEL, SA_MODEL_VERSION, SA_PIPELINE, SA_SCHEDULED_START, SA_TRIGGER } from '../src/search-attributes';
import type { Profile } from '../src/profile/sketch';
import type { CommitStats, DriftSummary, PlanSummary, RunInput, RunPlan, RunProgress, RunRef, RunResult, RunStatus, RunTotals } from '../src/types';
import { ThroughputMeter } from '../src/alerts/eta';
import { parseDuration } from '../src/alerts/duration';
import { describeBudget, quarantines, rejectBudget } from '../src/run/budget';
import { RunAlerts } from './alerts';
import { ChunkTally, emptyTotals, groupProgressSignal, scoreChunkWindow, scoreInChildren, slowChunkSignal, StepFailure, type ChunkWindow } from './chunks';
import { describeError as describe, failureType } from './describe';

export const progressQuery = defineQuery<RunProgress>('progress');

/**
 * A run's steps heartbeat on their own while they run (activities/index.ts), so a step whose worker died
 * is retried after the pipeline's `heartbeat_timeout` (default below) instead of its start-to-close timeout.
 */
const DEFAULT_HEARTBEAT_TIMEOUT = '2 minutes';

function runSteps(heartbeatTimeout: string) {
  /** Planning reads metadata and may snapshot a warehouse query; bad config/input is not retried. */
  const { planRun, checkRunKeys } = proxyActivities<ScorelineActivities>({
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout,
    retry: { maximumAttempts: 5, initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
  });
  /** Commit and finish are idempotent, so they may retry generously. */
  const { commitRun, finishRun } = proxyActivities<ScorelineActivities>({
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout,
    retry: { maximumAttempts: 10, initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
  });
  /**
   * Profile + drift of a run: a few small queries, alongside the commit. Its failure never fails the run;
   * the run's result and audit say the profile is missing.
   */
  const { profileRun } = proxyActivities<ScorelineActivities>({
    startToCloseTimeout: '5 minutes',
    heartbeatTimeout,
    retry: { maximumAttempts: 5, initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
  });
  return { planRun, checkRunKeys, commitRun, finishRun, profileRun };
}

/** `heartbeat_timeout` before the plan validated the pipeline: from the run's inline pipeline or `--set`, if it reads as one. */
function requestedHeartbeat(input: RunInput): string {
  const raw = input.overrides?.heartbeat_timeout ?? (input.config as { heartbeat_timeout?: unknown } | undefined)?.heartbeat_timeout;
  return typeof raw === 'string' && (parseDuration(raw) ?? 0) >= 1000 ? raw : DEFAULT_HEARTBEAT_TIMEOUT;
}

export async function scorelineBatchRun(input: RunInput): Promise<RunResult> {
  const info = workflowInfo();
  const scheduledStart = info.typedSearchAttributes.get(SA_SCHEDULED_START);
  const provisional: RunRef = {
    // `run --resume`: the resumed run goes on under the run id it had (its staging and audit rows).
    runId: input.resume ?? info.firstExecutionRunId,
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
  let steps = runSteps(requestedHeartbeat(input));
  const { planRun } = steps;

  let plan: RunPlan | undefined;
  const tally = new ChunkTally();
  const { staged, shadowStaged, totals } = tally;
  let commit: CommitStats | undefined;
  // Shadow scoring (`shadow:`): the challenger's commit (its chunks and agreement are in the tally).
  let shadowCommit: CommitStats | undefined;
  let shadowError: string | undefined;
  const shadowArgs = () => ({ commit: shadowCommit, agreement: tally.agreement, error: shadowError });
  // The error budget (`max_rejected`): the quarantine table's commit, or why it could not be written.
  let quarantineCommit: CommitStats | undefined;
  let quarantineError: string | undefined;
  // The profile step, started with the commit: it only reads earlier profiles and stores this run's, so
  // it need not wait for the partition swap. A run whose commit then fails has its profile removed by
  // finishRun (the `previous` drift reference is a run that succeeded).
  let profiling: Promise<DriftSummary> | undefined;
  try {
    // patched(): a run started before the deferred key check replays with the check inside its plan.
    const deferKeyCheck = patched('deferred-key-check');
    // patched(): a run started from the Web UI (without our search attributes) sets them once the plan says it may.
    const askSearchAttributes = info.typedSearchAttributes.get(SA_PIPELINE) === undefined && patched('tag-untagged-runs');
    plan = await step('plan', () => planRun({ input, run: provisional, scheduledStart: scheduledStart?.toISOString(), startedAtMs, deferKeyCheck, ...(askSearchAttributes && { askSearchAttributes }) }));
    steps = runSteps(plan.config.heartbeat_timeout ?? DEFAULT_HEARTBEAT_TIMEOUT);
    const { commitRun } = steps;
    if (plan.reused) tally.reuse(plan.reused.staged, plan.reused.totals);
    Object.assign(progress, {
      phase: 'scoring',
      logicalDate: plan.run.logicalDate,
      chunksTotal: plan.chunks.length + (plan.reused?.staged.length ?? 0),
      chunksDone: tally.totals.chunksDone,
      rowsDone: tally.totals.rowsIn,
      rowsOut: tally.totals.rowsOut,
      rowsPlanned: plan.rowsPlanned,
      model: plan.model,
      scoringStartedAtMs: Date.now(),
      updatedAtMs: Date.now(),
    });
    tagRun(plan);
    alerts.planned(plan);
    await scoreCheckingKeys(plan, steps, async () => {
      await scoreAllChunks(plan!, alerts, tally, progress);
      alerts.scoringDone(); // the key check may still be running: finishing no chunks then is no stall
    });
    // A cancel that came while the last chunks were scoring: their activities learn of it only at a
    // heartbeat, so they may finish anyway. The run stops here, before its commit, as if a chunk had seen it.
    // patched(): a run that committed after such a cancel replays that way.
    if (CancellationScope.current().consideredCancelled && patched('cancel-before-commit')) throw new CancelledFailure('run cancelled');
    checkErrorBudget(plan, tally);
    progress.phase = 'committing';
    delete progress.estimate;
    for (const list of [staged, shadowStaged, tally.quarantineStaged]) list.sort((a, b) => a.index - b.index);
    // patched(): a run started when the profile step followed the commit replays that way.
    const profile = tally.profile;
    if (profile && patched('profile-with-commit')) profiling = CancellationScope.nonCancellable(() => profileStep(steps, plan!, profile));
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
    // The quarantined rows replace the date's in the quarantine table, an empty set too (a rerun that
    // rejects nothing clears them). After the output, like the shadow table: the run stands on its output.
    if (quarantines(plan.config.max_rejected)) {
      quarantineCommit = await CancellationScope.nonCancellable(() => commitRun({ run: plan!.run, config: plan!.config, staged: tally.quarantineStaged, quarantine: true })).catch((err) => {
        quarantineError = `quarantine table not written: ${describe(err)}`;
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
    if (profiling) await profiling; // settled (it never throws) before finishRun removes what it stored
    // What a chunk failed on that is not the input's fault (a timeout, a worker gone for good) leaves the
    // staged chunks for `run --resume` (keep_failed_staging); bad input, a cancel or a failed commit do not.
    // A refused `--resume` (the input or model changed) leaves the run it would resume as it was.
    const keepStaging = !cancelled && ((failure.step.startsWith('score chunk') && !isInputFailure(failure.error)) || (input.resume !== undefined && failure.step === 'plan'));
    const finished = await CancellationScope.nonCancellable(() =>
      steps.finishRun({
        input,
        run: plan?.run ?? provisional,
        plan: plan && summarize(plan),
        status,
        error: message,
        totals,
        startedAtMs,
        alerts: sent,
        shadow: shadowArgs(),
        ...(keepStaging && { keepStaging }),
        ...(profiling && { dropProfile: true }),
      }),
    );
    if (finished.resumableUntil) progress.resumableUntil = finished.resumableUntil;
    if (cancelled) throw isCancellation(failure.error) ? failure.error : new CancelledFailure('run cancelled');
    throw ApplicationFailure.nonRetryable(message, 'ScorelineRunFailed');
  }

  const summary = summarize(plan);
  // patched(): runs started by an older worker replay without this step.
  const profile = tally.profile;
  const drift = profiling ? await profiling : profile && patched('run-profile-v1') ? await CancellationScope.nonCancellable(() => profileStep(steps, plan!, profile)) : undefined;
  const sent = await CancellationScope.nonCancellable(() => alerts.finish({ status: 'succeeded', drift }));
  const result = await CancellationScope.nonCancellable(() =>
    steps.finishRun({
      input,
      run: summary.run,
      plan: summary,
      status: 'succeeded',
      totals,
      commit,
      startedAtMs,
      alerts: sent,
      shadow: shadowArgs(),
      ...((quarantineCommit || quarantineError) && { quarantine: { commit: quarantineCommit, error: quarantineError } }),
    }),
  ).catch(async (err: unknown) => {
    // The output is committed, but the run's final audit row could not be written (the audit store down
    // through every retry): the workflow fails, and on-call hears of it like any failed run.
    // patched(): a run that failed here before replays without the alert.
    if (!patched('alert-unfinished-run')) throw err;
    const error = `the output was committed (${commit?.output ?? 'the sink'}), but the run's audit row could not be written: ${describe(err)}`;
    progress.phase = 'failed';
    progress.error = `finish failed: ${error}`;
    await CancellationScope.nonCancellable(() => alerts.finish({ status: 'failed', step: 'finish', error }));
    throw ApplicationFailure.nonRetryable(`finish failed: ${error}`, 'ScorelineRunFailed');
  });
  if (drift) result.drift = drift;
  progress.phase = 'succeeded';
  progress.updatedAtMs = Date.now();
  upsertMemo({
    rows_in: result.rowsIn,
    rows_out: result.rowsOut,
    output: result.output ?? null,
    model: `${plan.model.name}:${plan.model.version}`,
    ...(drift && { drifted_columns: drift.breached.map((c) => c.column) }),
    ...(result.rowsQuarantined && { rows_quarantined: result.rowsQuarantined }),
  });
  return result;
}

async function profileStep(steps: ReturnType<typeof runSteps>, plan: RunPlan, profile: Profile): Promise<DriftSummary> {
  try {
    return await steps.profileRun({ run: plan.run, config: plan.config, model: plan.model, profile });
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

/**
 * Scores the chunks while the key check (one scan of the input's keys) runs beside them; bad keys stop
 * the scoring (waiting until the chunk activities stopped) and fail the run as its plan would have.
 */
async function scoreCheckingKeys(plan: RunPlan, { checkRunKeys }: ReturnType<typeof runSteps>, score: () => Promise<void>): Promise<void> {
  if (!plan.keyCheckDeferred) return score();
  const scoring = new CancellationScope();
  let keyFailure: StepFailure | undefined;
  const check = step('plan', () => checkRunKeys({ run: plan.run, config: plan.config, inputs: plan.inputs, rowsPlanned: plan.rowsPlanned })).catch((err: StepFailure) => {
    keyFailure = err;
    scoring.cancel();
  });
  const [scored] = await Promise.allSettled([scoring.run(score), check]);
  if (keyFailure) throw keyFailure;
  if (scored.status === 'rejected') throw scored.reason;
}

/**
 * Over the error budget (`max_rejected`) the run fails before anything is committed, saying how many rows
 * could not be scored, what the budget allowed, and the first such row.
 */
function checkErrorBudget(plan: RunPlan, tally: ChunkTally): void {
  const rejected = tally.totals.rowsQuarantined ?? 0;
  const budget = rejectBudget(plan.config.max_rejected, plan.rowsPlanned);
  if (rejected <= budget) return;
  const share = plan.rowsPlanned > 0 ? ` (${((100 * rejected) / plan.rowsPlanned).toPrecision(2)}% of ${plan.rowsPlanned})` : '';
  throw new StepFailure(
    'score',
    ApplicationFailure.nonRetryable(
      `${rejected} rows could not be scored${share}, over the error budget max_rejected: ${describeBudget(plan.config.max_rejected, plan.rowsPlanned)}; nothing was committed. ` +
        `First: ${tally.firstQuarantined?.text ?? 'unknown'}`,
      'ScorelineErrorBudget',
    ),
  );
}

/** Failures of the input, the pipeline or the model (as the activities type them): a resume would fail the same way. */
const INPUT_FAILURES = new Set(['ScorelineInputError', 'ScorelineConfigError', 'ScorelineModelError', 'ScorelineErrorBudget']);

function isInputFailure(err: unknown): boolean {
  for (let e = err as { type?: string; details?: unknown[]; cause?: unknown } | undefined; e && typeof e === 'object'; e = e.cause as typeof e) {
    // A chunk group's failure carries the chunk's own failure type (workflows/chunks.ts).
    if (e instanceof ApplicationFailure && e.type === 'ScorelineChunkFailed') return INPUT_FAILURES.has(String(e.details?.[1]));
  }
  return INPUT_FAILURES.has(failureType(err) ?? '');
}

function summarize(plan: RunPlan): PlanSummary {
  return { ...plan, chunks: plan.chunks.length };
}

/**
 * Every chunk of the plan, into the tally. Up to `chunksPerChild` chunks in this workflow; more in child
 * workflows of that many (workflows/chunks.ts), which report progress and slow chunks by signal.
 * patched(): a run started before child groups existed replays the way it ran.
 */
async function scoreAllChunks(plan: RunPlan, alerts: RunAlerts, tally: ChunkTally, progress: RunProgress): Promise<void> {
  const w: ChunkWindow = {
    run: plan.run,
    config: plan.config,
    model: plan.model,
    shadow: plan.shadow,
    chunksTotal: plan.chunks.length,
    profileColumns: plan.profileColumns ?? 0,
    ...(plan.rescoreOf && { onlyQuarantinedOf: plan.rescoreOf }),
  };
  // Throughput for the progress estimate and `late` alerts: computed here, on chunk stats (no timers).
  const meter = new ThroughputMeter();
  const show = (extra: RunTotals = emptyTotals()) => {
    const t = tally.totals;
    Object.assign(progress, { chunksDone: t.chunksDone + extra.chunksDone, rowsDone: t.rowsIn + extra.rowsIn, rowsOut: t.rowsOut + extra.rowsOut, updatedAtMs: Date.now() });
    const estimate = meter.observe(progress.updatedAtMs, progress.rowsDone, progress.rowsPlanned);
    if (estimate) progress.estimate = estimate;
    alerts.progressed(progress);
  };
  const perChild = plan.chunksPerChild;
  if (perChild && plan.chunks.length > perChild && patched('chunk-groups-v1')) {
    let current = -1;
    setHandler(slowChunkSignal, ({ index, elapsedMs }) => alerts.slowChunk(index, elapsedMs));
    setHandler(groupProgressSignal, ({ group, totals }) => {
      if (group === current) show(totals); // a late signal of a finished group is already counted
    });
    const starting = (group: number) => {
      current = group;
      const first = plan.chunks[group * perChild].index;
      alerts.groupStarting(group, first, plan.chunks[Math.min(plan.chunks.length, (group + 1) * perChild) - 1].index);
      return alerts.chunkSlaMs();
    };
    return scoreInChildren(plan, w, perChild, starting, (g) => {
      tally.merge(g);
      show();
    });
  }
  await scoreChunkWindow(w, plan.chunks, (index, work) => alerts.watchChunk(index, work), (s) => {
    tally.add(s);
    show();
  });
}


/**
 * The pinned model as search attributes. Only when they are registered on this cluster: the starter set
 * ours, or (a run started from the Web UI without them) the plan found them registered, and then the
 * run's pipeline, logical date and trigger too, so the UI's filter box and `runs list` find it.
 */
function tagRun(plan: RunPlan): void {
  const tagged = workflowInfo().typedSearchAttributes.get(SA_PIPELINE) !== undefined;
  if (!tagged && !plan.searchAttributes) return;
  upsertSearchAttributes([
    ...(tagged
      ? []
      : [
          { key: SA_PIPELINE, value: plan.run.pipeline },
          { key: SA_LOGICAL_DATE, value: new Date(`${plan.run.logicalDate}T00:00:00Z`) },
          { key: SA_TRIGGER, value: plan.run.trigger },
        ]),
    { key: SA_MODEL, value: plan.model.name },
    { key: SA_MODEL_VERSION, value: plan.model.version },
  ] as Parameters<typeof upsertSearchAttributes>[0]);
}
