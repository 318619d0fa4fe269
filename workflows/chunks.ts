/**
 * Scoring a run's chunks: a bounded sliding window of `scoreChunk` activities. A run with more chunks
 * than `chunksPerChild` scores them in child workflows of that many chunks each, one group after
 * another, so no history grows with the size of the input: the parent records one child per group, each
 * child a few hundred activities. Only references and stats cross the boundary, never rows.
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  type ActivityOptions,
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowFailure,
  defineSignal,
  executeChild,
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  proxyActivities,
  TimeoutFailure,
  workflowInfo,
} from '@temporalio/workflow';
import { RetryState, TimeoutType } from '@temporalio/common';
import type { ScorelineActivities } from '../activities';
import { parseDuration } from '../src/alerts/duration';
import type { PipelineConfig } from '../src/config/pipeline';
import { mergeAgreement, type Agreement } from '../src/profile/agreement';
import { mergeProfiles, profiledChunk, type Profile } from '../src/profile/sketch';
import { chunkQueue } from '../src/search-attributes';
import type { Chunk, ChunkStats, PinnedModel, RunPlan, RunRef, RunTotals, StagedChunk } from '../src/types';
import { describeError as describe, failureType } from './describe';
import { startTimer } from './timer';

/**
 * One chunk: read → tensor → ONNX → stage. Heartbeats between stages; a worker that dies is noticed
 * within the heartbeat timeout and the chunk is retried elsewhere (staging overwrites, so no duplicates).
 * WAIT_CANCELLATION_COMPLETED: on cancel/failure we wait until the activity stopped before removing
 * staged files, so nothing is written after the clean-up.
 */
const CHUNK_OPTIONS: ActivityOptions = {
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '2 minutes',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { maximumAttempts: 4, initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
};

/**
 * On the chunk queue (src/search-attributes.ts chunkQueue). patched(): a run that started when chunks
 * shared the workflow's queue keeps scheduling them there. The pipeline's `chunk_timeout` bounds each
 * attempt (a run without one keeps the default, so runs started before it existed replay unchanged).
 */
function chunkActivities(config: PipelineConfig) {
  const queue = patched('chunk-queue') ? { taskQueue: chunkQueue(workflowInfo().taskQueue) } : {};
  const timeout = config.chunk_timeout ? { startToCloseTimeout: parseDuration(config.chunk_timeout)! } : {};
  // `heartbeat_timeout`: how soon a chunk whose worker died is retried (the activity heartbeats on its own).
  const heartbeat = config.heartbeat_timeout ? { heartbeatTimeout: parseDuration(config.heartbeat_timeout)! } : {};
  return proxyActivities<ScorelineActivities>({ ...CHUNK_OPTIONS, ...timeout, ...heartbeat, ...queue });
}

/**
 * A chunk activity that timed out says so in words that name the chunk and the limit; any other error
 * is passed on as it is.
 */
function chunkFailure(err: unknown, chunk: Chunk, config: PipelineConfig): unknown {
  const timeout = err instanceof ActivityFailure && err.cause instanceof TimeoutFailure ? err.cause : undefined;
  if (!timeout) return err;
  const l = chunk.locator;
  const where = `chunk ${chunk.index} (${l.kind === 'parquet' ? l.file : l.table} rows ${l.rowStart}..${l.rowEnd - 1})`;
  const attempts = err instanceof ActivityFailure && err.retryState === RetryState.MAXIMUM_ATTEMPTS_REACHED ? `; gave up after ${CHUNK_OPTIONS.retry!.maximumAttempts} attempts` : '';
  let message: string;
  if (timeout.timeoutType === TimeoutType.HEARTBEAT) {
    message = `${where} sent no heartbeat for ${config.heartbeat_timeout ?? CHUNK_OPTIONS.heartbeatTimeout}: the worker scoring it died or hung${attempts}`;
  } else if (timeout.timeoutType === TimeoutType.START_TO_CLOSE) {
    const limit = config.chunk_timeout ? `chunk_timeout ${config.chunk_timeout}` : `${CHUNK_OPTIONS.startToCloseTimeout} (the default chunk_timeout)`;
    message = `${where} did not finish within ${limit}${attempts}`;
  } else {
    return err;
  }
  // No cause: describeError reads the innermost message, which would be the SDK's "activity StartToClose timeout".
  return ApplicationFailure.create({ message, type: 'ScorelineChunkTimeout', nonRetryable: true });
}

/** A step of the run that failed, and why: the run's error reads "<step> failed: <why>". */
export class StepFailure {
  constructor(
    readonly step: string,
    readonly error: unknown,
  ) {}
}

/** What every chunk activity of a run gets besides its chunk. */
export interface ChunkWindow {
  run: RunRef;
  config: PipelineConfig;
  model: PinnedModel;
  shadow?: PinnedModel;
  /** Chunks in the whole run and columns per profile: decide which chunks are profiled. */
  chunksTotal: number;
  profileColumns: number;
  /** A rescore of this run's quarantined rows (RunPlan.rescoreOf). */
  onlyQuarantinedOf?: string;
}

/** Races one chunk against its `chunk_sla`; the run's alerts decide what firing means. */
export type ChunkWatch = (index: number, work: Promise<ChunkStats>) => Promise<ChunkStats>;

/** What scored chunks add up to: the staged files to commit, counts, the profile, shadow agreement. */
export function emptyTotals(): RunTotals {
  return { chunksDone: 0, rowsIn: 0, rowsOut: 0, rowsRejected: 0, rowsImputed: 0, stageMs: { read: 0, convert: 0, infer: 0, write: 0 } };
}

function addTotals(t: RunTotals, d: RunTotals): void {
  t.chunksDone += d.chunksDone;
  t.rowsIn += d.rowsIn;
  t.rowsOut += d.rowsOut;
  t.rowsRejected += d.rowsRejected;
  t.rowsImputed += d.rowsImputed;
  if (d.rowsQuarantined) t.rowsQuarantined = (t.rowsQuarantined ?? 0) + d.rowsQuarantined;
  for (const k of ['read', 'convert', 'infer', 'write'] as const) t.stageMs[k] += d.stageMs[k];
}

export class ChunkTally {
  readonly staged: StagedChunk[] = [];
  readonly shadowStaged: StagedChunk[] = [];
  /** Chunks with rows set aside under the error budget, and the first such row (lowest chunk) in words. */
  readonly quarantineStaged: StagedChunk[] = [];
  firstQuarantined?: { index: number; text: string };
  readonly totals = emptyTotals();
  profile?: Profile;
  agreement?: Agreement;

  add(s: ChunkStats): void {
    this.staged.push({ index: s.index, rows: s.rowsOut, file: s.stagedFile });
    const stageMs = { read: s.readMs, convert: s.convertMs, infer: s.inferMs, write: s.writeMs };
    const rowsQuarantined = s.quarantine?.rows ?? 0;
    addTotals(this.totals, { chunksDone: 1, rowsIn: s.rowsIn, rowsOut: s.rowsOut, rowsRejected: s.rowsRejected, rowsImputed: s.rowsImputed, stageMs, ...(rowsQuarantined && { rowsQuarantined }) });
    if (s.quarantine) {
      this.quarantineStaged.push({ index: s.index, rows: s.quarantine.rows, file: s.quarantine.stagedFile });
      this.noteQuarantined({ index: s.index, text: s.quarantine.first });
    }
    if (s.profile) this.profile = mergeProfiles(this.profile, s.profile);
    if (s.shadow) {
      this.shadowStaged.push({ index: s.index, rows: s.shadow.rowsOut, file: s.shadow.stagedFile });
      this.agreement = mergeAgreement(this.agreement, s.shadow.agreement);
    }
  }

  /** A child's group, added as a whole. */
  merge(g: ChunkGroupResult): void {
    this.staged.push(...g.staged);
    this.shadowStaged.push(...g.shadowStaged);
    this.quarantineStaged.push(...(g.quarantineStaged ?? []));
    if (g.firstQuarantined) this.noteQuarantined(g.firstQuarantined);
    addTotals(this.totals, g.totals);
    if (g.profile) this.profile = mergeProfiles(this.profile, g.profile);
    if (g.agreement) this.agreement = mergeAgreement(this.agreement, g.agreement);
  }

  /** `run --resume`: chunks the failed attempt staged, counted as scored. */
  reuse(staged: StagedChunk[], totals: RunTotals): void {
    this.staged.push(...staged);
    addTotals(this.totals, totals);
  }

  private noteQuarantined(q: { index: number; text: string }): void {
    if (!this.firstQuarantined || q.index < this.firstQuarantined.index) this.firstQuarantined = q;
  }

  result(): ChunkGroupResult {
    const { staged, shadowStaged, quarantineStaged, firstQuarantined, totals, profile, agreement } = this;
    return { staged, shadowStaged, totals, profile, agreement, ...(quarantineStaged.length > 0 && { quarantineStaged, firstQuarantined }) };
  }
}

/** Bounded sliding window: at most `parallelism` chunk activities in flight; the first failure cancels the rest. */
export async function scoreChunkWindow(w: ChunkWindow, chunks: Chunk[], watch: ChunkWatch, onChunk: (s: ChunkStats) => void): Promise<void> {
  const { scoreChunk } = chunkActivities(w.config);
  let failure: StepFailure | undefined;
  const scope = new CancellationScope();
  await scope.run(async () => {
    const inflight = new Set<Promise<void>>();
    for (const chunk of chunks) {
      while (inflight.size >= w.config.parallelism && !failure) await Promise.race(inflight);
      if (failure) break;
      const profile = profiledChunk(chunk.index, w.chunksTotal, w.profileColumns);
      const p: Promise<void> = watch(chunk.index, scoreChunk({ run: w.run, config: w.config, model: w.model, chunk, profile, shadow: w.shadow, onlyQuarantinedOf: w.onlyQuarantinedOf }))
        .then(
          (s) => onChunk(s),
          (err) => {
            if (!failure) {
              failure = new StepFailure(`score chunk ${chunk.index}`, chunkFailure(err, chunk, w.config));
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

export interface ChunkGroupInput {
  window: ChunkWindow;
  chunks: Chunk[];
  group: number;
  /** The run's workflow, told about a slow chunk and about progress by signal. */
  parentWorkflowId: string;
  /** `chunk_sla` when the run's alerts watch for slowness and `slow` has not fired yet. */
  chunkSlaMs?: number;
}

export type ChunkGroupResult = Pick<ChunkTally, 'staged' | 'shadowStaged' | 'totals' | 'profile' | 'agreement'> & Partial<Pick<ChunkTally, 'quarantineStaged' | 'firstQuarantined'>>;

export interface SlowChunk {
  index: number;
  elapsedMs: number;
}

/** Sent by a group to its run at most every PROGRESS_EVERY_MS: its totals so far. */
export interface GroupProgress {
  group: number;
  totals: RunTotals;
}

export const slowChunkSignal = defineSignal<[SlowChunk]>('slowChunk');
export const groupProgressSignal = defineSignal<[GroupProgress]>('groupProgress');
const PROGRESS_EVERY_MS = 5_000;

/** The child workflow: one group of a large run's chunks. */
export async function scorelineChunkGroup(input: ChunkGroupInput): Promise<ChunkGroupResult> {
  const parent = getExternalWorkflowHandle(input.parentWorkflowId);
  const tally = new ChunkTally();
  let slowSent = false;
  let lastProgressMs = Date.now();
  const watch: ChunkWatch = (index, work) => {
    if (input.chunkSlaMs === undefined || slowSent) return work;
    const startedAt = Date.now();
    const timer = startTimer(input.chunkSlaMs, () => {
      if (slowSent) return;
      slowSent = true;
      void parent.signal(slowChunkSignal, { index, elapsedMs: Date.now() - startedAt }).catch(() => undefined);
    });
    return work.finally(() => timer.cancel());
  };
  try {
    await scoreChunkWindow(input.window, input.chunks, watch, (s) => {
      tally.add(s);
      if (Date.now() - lastProgressMs >= PROGRESS_EVERY_MS) {
        lastProgressMs = Date.now();
        void parent.signal(groupProgressSignal, { group: input.group, totals: tally.totals }).catch(() => undefined);
      }
    });
  } catch (err) {
    if (!(err instanceof StepFailure) || isCancellation(err.error) || CancellationScope.current().consideredCancelled) throw err instanceof StepFailure ? err.error : err;
    // The run reports the chunk's own step and message, as if it had scored the chunk itself.
    throw ApplicationFailure.create({ message: describe(err.error), type: 'ScorelineChunkFailed', nonRetryable: true, details: [err.step, failureType(err.error)] });
  }
  return tally.result();
}

/** The child workflow scoring one group of a run's chunks. */
export function chunkGroupWorkflowId(runWorkflowId: string, runId: string, group: number): string {
  return `${runWorkflowId}/${runId}/chunks-${group}`;
}

/**
 * A large run's chunks, `chunksPerChild` per child workflow, one child at a time (each keeps
 * `parallelism` chunks in flight). A failed chunk fails its child and so the run, with the chunk's step.
 */
export async function scoreInChildren(
  plan: RunPlan,
  w: ChunkWindow,
  chunksPerChild: number,
  /** Called as each group starts: its `chunk_sla` (undefined: do not watch). */
  starting: (group: number) => number | undefined,
  onGroup: (g: ChunkGroupResult) => void,
): Promise<void> {
  const { workflowId } = workflowInfo();
  for (let first = 0, group = 0; first < plan.chunks.length; first += chunksPerChild, group++) {
    const chunks = plan.chunks.slice(first, first + chunksPerChild);
    const chunkSlaMs = starting(group);
    try {
      onGroup(
        await executeChild(scorelineChunkGroup, {
          // Unique per run: a rerun of the same date reuses the parent's workflow id, never its run id.
          workflowId: chunkGroupWorkflowId(workflowId, plan.run.runId, group),
          args: [{ window: w, chunks, group, parentWorkflowId: workflowId, chunkSlaMs }],
        }),
      );
    } catch (err) {
      const cause = err instanceof ChildWorkflowFailure ? err.cause : undefined;
      if (cause instanceof ApplicationFailure && cause.type === 'ScorelineChunkFailed') throw new StepFailure(String(cause.details?.[0]), cause);
      throw new StepFailure(`score chunks ${chunks[0].index}–${chunks[chunks.length - 1].index}`, err);
    }
  }
}
