/**
 * Sending a near-real-time request through Temporal: what `scoreline score` and
 * `POST /v1/pipelines/{name}/score` call. The default design sends a Workflow Update to the pipeline's
 * long-lived `scorelineNrt` workflow (started on first use with update-with-start); `eager` starts one
 * short workflow per request instead and exists for the comparison in docs/nrt.md / bench/nrt.ts.
 */
import { createHash, randomUUID } from 'node:crypto';
import { WithStartWorkflowOperation, WorkflowFailedError, WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import type { TypedSearchAttributes } from '@temporalio/common';
import type { ScorelineClient } from '../client';
import type { PipelineConfig } from '../config/pipeline';
import { ConfigError, InputError, ModelError, ScorelineError } from '../errors';
import { nrtRequestDuration, startTimer } from '../obs/metrics';
import { SA_PIPELINE, SA_TRIGGER } from '../search-attributes';
import { NRT_ROLLING_OVER, NRT_UPDATE, NRT_WORKFLOW, nrtWorkflowId, type NrtRequest, type NrtResult } from './protocol';
import type { EncodedRows } from './rows';

export type NrtDesign = 'update' | 'eager';
export const NRT_REQUEST_WORKFLOW = 'scorelineNrtRequest';

export interface ScoreArgs {
  config: PipelineConfig;
  /** The pipeline document as read (sent so the worker validates the very same one); default `config`. */
  raw?: unknown;
  overrides?: Record<string, string>;
  rows: EncodedRows;
  requestId?: string;
  receivedAtMs?: number;
}

/** Retries of a request turned away during a roll-over (20 ms, 40 ms, … apart: ~10 s in all). */
const ROLLOVER_RETRIES = 30;
/** How long a request may wait for its answer (a 1,000-row request takes ~0.1 s). */
export const NRT_TIMEOUT_MS = 30_000;

/** gRPC DEADLINE_EXCEEDED (4), as the connection's deadline ends a call, however the SDK wraps it. */
function isDeadlineExceeded(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined; e && typeof e === 'object'; e = e.cause as typeof e) if (e.code === 4) return true;
  return false;
}

export class NrtClient {
  /** Pipelines whose workflow we have seen running: a plain update is one round trip less than update-with-start. */
  private readonly running = new Set<string>();

  constructor(
    private readonly sc: ScorelineClient,
    readonly design: NrtDesign = 'update',
    /** Passed to a workflow this client starts: roll over at this history size (tests). */
    private readonly maxHistoryBytes?: number,
    /** A request not answered by then is a 503 (no worker polling, say), not a caller waiting for good. */
    private readonly timeoutMs = NRT_TIMEOUT_MS,
  ) {}

  async score(args: ScoreArgs): Promise<NrtResult> {
    // scoreline_nrt_request_duration_seconds: from the request's arrival (body read and decoded before
    // this call, whole milliseconds) plus the round trip through Temporal (timed precisely).
    const before = args.receivedAtMs === undefined ? 0 : Math.max(0, Date.now() - args.receivedAtMs) / 1000;
    const seconds = startTimer();
    let outcome: 'ok' | 'error' = 'error';
    const req: NrtRequest = {
      requestId: args.requestId ?? randomUUID(),
      pipeline: args.config.name,
      config: args.raw ?? args.config,
      overrides: args.overrides && Object.keys(args.overrides).length ? args.overrides : undefined,
      receivedAtMs: args.receivedAtMs ?? Date.now(),
      rows: args.rows.rows,
      rowsSha256: createHash('sha256').update(args.rows.ipc).digest('hex'),
    };
    try {
      const result = await this.sc.client.connection
        .withDeadline(Date.now() + this.timeoutMs, () => (this.design === 'eager' ? this.viaEagerWorkflow(req, args.rows.ipc) : this.viaUpdate(req, args.rows.ipc)))
        .catch(async (err: unknown) => {
          if (!isDeadlineExceeded(err)) throw err;
          const polling = await this.sc.workerPolling().catch(() => undefined);
          const why = polling === false ? `no worker polls task queue "${this.sc.config.taskQueue}" (start one: scoreline worker)` : 'the worker did not answer in time';
          throw new ScorelineError('UNAVAILABLE', `near-real-time request ${req.requestId} not answered within ${this.timeoutMs / 1000} s: ${why}`, true, { cause: err });
        });
      // The request id is the update id, so Temporal answers a reused one with the first request's result:
      // right for a retry of the same rows, wrong for other rows (their keys beside another's predictions).
      if (result.rowsSha256 !== undefined && result.rowsSha256 !== req.rowsSha256) {
        throw new ScorelineError('CONFLICT', `request_id ${req.requestId} was already used for other rows; send a new request_id (a reused one returns the first request's predictions)`);
      }
      outcome = 'ok';
      return result;
    } catch (err) {
      throw toScorelineError(err);
    } finally {
      nrtRequestDuration.labels(args.config.name, outcome).observe(before + seconds());
    }
  }

  /** While the workflow rolls over to a new run it turns requests away; they go to the new run instead. */
  private async viaUpdate(req: NrtRequest, ipc: Uint8Array): Promise<NrtResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.updateOnce(req, ipc);
      } catch (err) {
        const rollingOver = err instanceof WorkflowUpdateFailedError && String(err.cause?.message).includes(NRT_ROLLING_OVER);
        if (!rollingOver || attempt >= ROLLOVER_RETRIES) throw err;
        await new Promise((r) => setTimeout(r, 20 * attempt));
      }
    }
  }

  private async updateOnce(req: NrtRequest, ipc: Uint8Array): Promise<NrtResult> {
    const workflowId = nrtWorkflowId(req.pipeline);
    const options = { args: [req, ipc] as [NrtRequest, Uint8Array], updateId: req.requestId };
    if (this.running.has(workflowId)) {
      try {
        return await this.sc.client.workflow.getHandle(workflowId).executeUpdate<NrtResult, [NrtRequest, Uint8Array]>(NRT_UPDATE, options);
      } catch (err) {
        // Ended (idle) or between runs: fall through to update-with-start, which (re)starts it.
        if (!(err instanceof WorkflowNotFoundError)) throw err;
        this.running.delete(workflowId);
      }
    }
    const start = new WithStartWorkflowOperation(NRT_WORKFLOW, {
      workflowId,
      taskQueue: this.sc.config.taskQueue,
      args: [{ pipeline: req.pipeline, maxHistoryBytes: this.maxHistoryBytes }],
      workflowIdConflictPolicy: 'USE_EXISTING',
      typedSearchAttributes: await this.searchAttributes(req.pipeline),
      memo: { pipeline: req.pipeline, kind: 'near-real-time scoring' },
    });
    const result = await this.sc.client.workflow.executeUpdateWithStart<(input: { pipeline: string }) => Promise<void>, NrtResult, [NrtRequest, Uint8Array]>(NRT_UPDATE, { ...options, startWorkflowOperation: start });
    this.running.add(workflowId);
    return result;
  }

  private async viaEagerWorkflow(req: NrtRequest, ipc: Uint8Array): Promise<NrtResult> {
    return this.sc.client.workflow.execute(NRT_REQUEST_WORKFLOW, {
      workflowId: `${nrtWorkflowId(req.pipeline)}/${req.requestId}`,
      taskQueue: this.sc.config.taskQueue,
      args: [req, ipc],
      requestEagerStart: true,
      typedSearchAttributes: await this.searchAttributes(req.pipeline),
    }) as Promise<NrtResult>;
  }

  private async searchAttributes(pipeline: string): Promise<TypedSearchAttributes | undefined> {
    if (!(await this.sc.hasSearchAttributes())) return undefined;
    return [
      { key: SA_PIPELINE, value: pipeline },
      { key: SA_TRIGGER, value: 'nrt' },
    ] as unknown as TypedSearchAttributes;
  }
}

/** The worker's error (its ApplicationFailure type names the ScorelineError class) as the ScorelineError it was. */
export function toScorelineError(err: unknown): unknown {
  if (!(err instanceof WorkflowUpdateFailedError || err instanceof WorkflowFailedError)) return err;
  let cause = err.cause as { type?: string; message?: string; cause?: unknown } | undefined;
  while (cause?.cause && !cause.type) cause = cause.cause as typeof cause;
  const message = cause?.message ?? err.message;
  switch (cause?.type) {
    case 'ScorelineInputError':
      return new InputError(message);
    case 'ScorelineConfigError':
      return new ConfigError(message);
    case 'ScorelineModelError':
      return new ModelError(message);
    default:
      return new ScorelineError('INTERNAL', `near-real-time request failed: ${message}`, true);
  }
}
