/**
 * Observability around the activities (activities/index.ts wraps its table with instrumentActivities):
 * each call gets a child logger carrying run_id / workflow_id / pipeline / chunk, counts as in flight
 * while it runs, logs its failure, and the steps that matter record their metrics and log line once
 * they succeeded. Nothing here changes what an activity returns or throws.
 */
import { Context } from '@temporalio/activity';
import type { DeliverArgs } from '../alerts';
import type { CommitArgs, FinishArgs, PlanArgs, ScoreArgs } from '../run/batch';
import { resolvePipeline, type RunContext } from '../run/context';
import type { NrtRequest, NrtScored } from '../nrt/protocol';
import type { ChunkStats, CommitStats, RunPlan, RunResult } from '../types';
import { errorFields, logger, type Logger } from './log';
import * as m from './metrics';

/** What an activity's first argument may carry that identifies the run, chunk or request. */
interface Identifying {
  run?: { runId?: string; workflowId?: string; pipeline?: string; logicalDate?: string };
  chunk?: { index?: number };
  alert?: { runId?: string; workflowId?: string; pipeline?: string; logicalDate?: string; event?: string };
  channel?: { name?: string; kind?: string };
  input?: { pipeline?: string };
  requestId?: string;
  pipeline?: string;
}

/** The child logger of one activity call: Temporal's info plus the run, chunk or request it works on. */
export function activityLogger(first: unknown): Logger {
  const info = Context.current().info;
  const a = (first ?? {}) as Identifying;
  const run = a.run ?? a.alert;
  const fields: Record<string, unknown> = {
    activity: info.activityType,
    attempt: info.attempt,
    workflow_id: run?.workflowId ?? info.workflowExecution?.workflowId,
  };
  if (run?.runId) fields.run_id = run.runId;
  const pipeline = run?.pipeline || a.input?.pipeline || (typeof a.pipeline === 'string' ? a.pipeline : undefined);
  if (pipeline) fields.pipeline = pipeline;
  if (run?.logicalDate) fields.logical_date = run.logicalDate;
  if (typeof a.chunk?.index === 'number') fields.chunk = a.chunk.index;
  if (typeof a.requestId === 'string') fields.request_id = a.requestId;
  return logger.child(fields);
}

interface Outcome<A extends unknown[], R> {
  /** After success: metrics and the log line of this step. */
  done?(log: Logger, args: A, result: R, seconds: number): void;
  /** After a failure (not a cancellation), before it is logged. */
  failed?(log: Logger, args: A, err: unknown): void;
  /** Level of the failure line (default warn). */
  failureLevel?: 'info' | 'warn';
  /** Message of the failure line (default `<activity> failed`). */
  failureMessage?: string;
}

type Hooks = {
  planRun: Outcome<[PlanArgs], RunPlan>;
  scoreChunk: Outcome<[ScoreArgs], ChunkStats>;
  commitRun: Outcome<[CommitArgs], CommitStats>;
  finishRun: Outcome<[FinishArgs], RunResult>;
  deliverAlert: Outcome<[DeliverArgs], { status: number; requests: number }>;
  scoreNrtRows: Outcome<[NrtRequest, Uint8Array, boolean?], NrtScored>;
};

function hooks(ctx: RunContext): Hooks {
  return {
    planRun: {
      done(log, _args, plan) {
        m.touchPipeline(plan.config.name);
        log.info(
          {
            pipeline: plan.config.name,
            logical_date: plan.run.logicalDate,
            rows: plan.rowsPlanned,
            chunks: plan.chunks.length,
            inputs: plan.inputs.length,
            model: `${plan.model.name}:${plan.model.version}`,
            model_ref: plan.model.ref,
            model_sha256: plan.model.sha256,
          },
          'run planned',
        );
      },
    },
    scoreChunk: {
      done(log, [args], stats, seconds) {
        // An attempt whose activity was already cancelled or timed out (the server retries it elsewhere,
        // or the run is failing) is not counted: its result is not the one the run keeps.
        if (Context.current().cancellationSignal.aborted) {
          log.debug({ rows_out: stats.rowsOut }, 'chunk scored after its activity was cancelled; not counted');
          return;
        }
        m.recordChunk(args.run.pipeline, stats, seconds);
        log.debug(
          {
            rows_in: stats.rowsIn,
            rows_out: stats.rowsOut,
            rows_rejected: stats.rowsRejected,
            rows_imputed: stats.rowsImputed,
            read_ms: stats.readMs,
            convert_ms: stats.convertMs,
            infer_ms: stats.inferMs,
            write_ms: stats.writeMs,
            bytes_written: stats.bytesWritten,
            ms: Math.round(seconds * 1000),
          },
          'chunk scored',
        );
      },
      failed(_log, [args]) {
        m.chunkFailures.labels(args.run.pipeline).inc();
      },
    },
    commitRun: {
      done(log, _args, commit, seconds) {
        log.info({ rows_out: commit.rowsOut, files: commit.files, rows_replaced: commit.rowsReplaced, output: commit.output, ms: Math.round(seconds * 1000) }, 'run committed');
      },
    },
    finishRun: {
      done(log, [args], result) {
        const pipeline = args.plan?.config.name ?? knownPipeline(ctx, args);
        m.recordRunFinished(pipeline, result.status, result.durationMs);
        const fields = {
          status: result.status,
          rows_in: result.rowsIn,
          rows_out: result.rowsOut,
          rows_rejected: result.rowsRejected,
          chunks: result.chunks,
          duration_ms: result.durationMs,
          ...(result.model && { model: `${result.model.name}:${result.model.version}` }),
          ...(result.output && { output: result.output }),
          ...(result.error && { error: errorFields(new Error(result.error)).error }),
        };
        if (result.status === 'failed') log.warn(fields, 'run finished');
        else log.info(fields, 'run finished');
      },
    },
    deliverAlert: {
      done(log, [args], res) {
        m.alertDeliveries.labels(args.alert.event, args.channel.kind, 'sent').inc();
        log.info({ event: args.alert.event, channel: args.channel.name, kind: args.channel.kind, status: res.status, requests: res.requests }, 'alert sent');
      },
      failed(log, [args]) {
        m.alertDeliveries.labels(args.alert.event, args.channel.kind, 'failed').inc();
        log.setBindings({ event: args.alert.event, channel: args.channel.name, kind: args.channel.kind });
      },
      failureMessage: 'alert delivery failed',
    },
    scoreNrtRows: {
      done(log, [req], scored) {
        m.nrtScoreDuration.labels(req.pipeline).observe(scored.result.scoreMs / 1000);
        log.debug({ rows_in: scored.result.rowsIn, rows_out: scored.result.rowsOut, score_ms: scored.result.scoreMs }, 'near-real-time request scored');
      },
      // A request with bad rows is the caller's problem, answered to the caller: not a warning here.
      failureLevel: 'info',
    },
  };
}

/**
 * The pipeline label of a run whose plan never returned: its name if it resolves to a pipeline this
 * worker knows, else "unknown" (a name typed into the Web UI must not become a new time series).
 */
function knownPipeline(ctx: RunContext, args: FinishArgs): string {
  try {
    return resolvePipeline(ctx, args.input.pipeline, args.input.config, args.input.overrides ?? {}).name;
  } catch {
    return 'unknown';
  }
}

function isCancellation(err: unknown): boolean {
  const name = (err as { name?: string } | undefined)?.name;
  return name === 'CancelledFailure' || name === 'AbortError';
}

/** Observing must never change an activity's outcome. */
function safely(log: Logger, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    log.error(errorFields(err), 'recording metrics or logs failed');
  }
}

type ActivityFn = (...args: never[]) => Promise<unknown>;

/** Every activity in `activities`, observed: same signature, same results and errors. */
export function instrumentActivities<T extends Record<string, ActivityFn>>(ctx: RunContext, activities: T): T {
  const table = hooks(ctx) as unknown as Record<string, Outcome<unknown[], unknown> | undefined>;
  const out: Record<string, ActivityFn> = {};
  for (const [name, fn] of Object.entries(activities)) {
    const hook = table[name];
    out[name] = async (...args: never[]) => {
      const log = activityLogger(args[0]);
      const finished = m.activityStarted(name);
      const seconds = m.startTimer();
      try {
        const result = await fn(...args);
        safely(log, () => hook?.done?.(log, args, result, seconds()));
        return result;
      } catch (err) {
        if (isCancellation(err)) {
          log.info('cancelled');
        } else {
          safely(log, () => hook?.failed?.(log, args, err));
          log[hook?.failureLevel ?? 'warn']({ ...errorFields(err), ms: Math.round(seconds() * 1000) }, hook?.failureMessage ?? `${name} failed`);
        }
        throw err;
      } finally {
        finished();
      }
    };
  }
  return out as T;
}
