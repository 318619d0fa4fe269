/**
 * Starting and following runs: what the CLI (and later the HTTP API) call. Runs are found by workflow
 * id (`scoreline/<pipeline>/<date>`) or by run id (the Temporal run id, also the `run_id` column).
 */
import { Client, Connection, WorkflowExecutionAlreadyStartedError, WorkflowFailedError, type WorkflowHandle, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import type { PayloadCodec, TypedSearchAttributes } from '@temporalio/common';
import { assertLogicalDate, type PipelineConfig } from './config/pipeline';
import { ConfigError, ScorelineError } from './errors';
import {
  BATCH_WORKFLOW,
  batchWorkflowId,
  SA_LOGICAL_DATE,
  SA_PIPELINE,
  SA_TRIGGER,
  SEARCH_ATTRIBUTES,
  TASK_QUEUE,
} from './search-attributes';
import { codecFromEnv } from './security/codec';
import type { RunInput, RunProgress, RunResult, Trigger } from './types';

export interface ClientConfig {
  address: string;
  namespace: string;
  taskQueue: string;
  /**
   * Payload codec (docs/security.md), the same as the worker's. Default (undefined): from
   * SCORELINE_CODEC_KEYS, none when unset; null = none whatever the environment says.
   */
  codec?: PayloadCodec | null;
}

export function clientConfigFromEnv(env: NodeJS.ProcessEnv = process.env): ClientConfig {
  return {
    address: env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233',
    namespace: env.TEMPORAL_NAMESPACE ?? 'default',
    taskQueue: env.SCORELINE_TASK_QUEUE ?? TASK_QUEUE,
    codec: codecFromEnv(env) ?? null,
  };
}

export class ScorelineClient {
  private searchAttributesRegistered?: Promise<boolean>;

  private constructor(
    readonly client: Client,
    readonly config: ClientConfig,
    /** The payload codec this client encodes and decodes with (also what `scoreline api` serves at /codec/*). */
    readonly codec?: PayloadCodec,
  ) {}

  static async connect(config: ClientConfig): Promise<ScorelineClient> {
    const codec = config.codec === undefined ? codecFromEnv() : (config.codec ?? undefined);
    let connection: Connection;
    try {
      connection = await Connection.connect({ address: config.address, connectTimeout: '5s' });
    } catch (err) {
      throw new ScorelineError(
        'INTERNAL',
        `cannot reach Temporal at ${config.address}: ${(err as Error).message}. Start one with "scoreline dev", or set TEMPORAL_ADDRESS.`,
      );
    }
    const dataConverter = codec ? { payloadCodecs: [codec] } : undefined;
    return new ScorelineClient(new Client({ connection, namespace: config.namespace, dataConverter }), config, codec);
  }

  /**
   * Over an existing client, e.g. one sharing a worker's NativeConnection (the API inside `scoreline dev`).
   * That client's data converter is the caller's; `config.codec` should name the codec it holds.
   */
  static wrap(client: Client, config: ClientConfig): ScorelineClient {
    return new ScorelineClient(client, config, config.codec ?? undefined);
  }

  async close(): Promise<void> {
    await this.client.connection.close();
  }

  /** Our search attributes are set only where the cluster knows them (the dev stack registers them). */
  hasSearchAttributes(): Promise<boolean> {
    this.searchAttributesRegistered ??= this.client.connection.operatorService
      .listSearchAttributes({ namespace: this.config.namespace })
      .then((res) => Object.keys(SEARCH_ATTRIBUTES).every((name) => name in (res.customAttributes ?? {})))
      .catch(() => false);
    return this.searchAttributesRegistered;
  }

  /** Start a batch run for one logical date. A date already running is refused, never run twice at once. */
  async startRun(opts: { config: PipelineConfig; raw: unknown; date: string; overrides?: Record<string, string>; trigger: Trigger; onlyQuarantined?: string; resume?: string }): Promise<WorkflowHandleWithFirstExecutionRunId> {
    const date = assertLogicalDate(opts.date, `pipeline ${opts.config.name}`);
    if (opts.onlyQuarantined && opts.resume) {
      throw new ConfigError('resume and only-quarantined are two kinds of run: a resume finishes a failed run, a rescore appends the quarantined rows of a succeeded one; give one');
    }
    const input: RunInput = {
      pipeline: opts.config.name,
      config: opts.raw,
      date,
      overrides: opts.overrides,
      trigger: opts.trigger,
      ...(opts.onlyQuarantined && { onlyQuarantined: opts.onlyQuarantined }),
      ...(opts.resume && { resume: opts.resume }),
    };
    const workflowId = batchWorkflowId(opts.config.name, date);
    const typedSearchAttributes = (await this.hasSearchAttributes())
      ? ([
          { key: SA_PIPELINE, value: opts.config.name },
          { key: SA_LOGICAL_DATE, value: new Date(`${date}T00:00:00Z`) },
          { key: SA_TRIGGER, value: opts.trigger },
        ] as unknown as TypedSearchAttributes)
      : undefined;
    try {
      return await this.client.workflow.start(BATCH_WORKFLOW, {
        taskQueue: this.config.taskQueue,
        workflowId,
        args: [input],
        workflowIdConflictPolicy: 'FAIL',
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        typedSearchAttributes,
        memo: { pipeline: opts.config.name, logical_date: date, model: opts.config.model },
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new ConfigError(`a run of ${opts.config.name} for ${date} is already running (workflow ${workflowId}); wait for it, or cancel it with: scoreline cancel ${workflowId}`, { cause: err });
      }
      throw err;
    }
  }

  /** A handle from a workflow id (`scoreline/…`) or a run id (UUID). */
  /** Requests cancellation of a running run; one that already ended is a CONFLICT that says how it ended. */
  async cancelRun(idOrRunId: string): Promise<{ workflowId: string; runId: string }> {
    const handle = await this.handleFor(idOrRunId);
    const desc = await handle.describe();
    if (desc.status.name !== 'RUNNING') {
      throw new ScorelineError('CONFLICT', `run ${desc.runId} (${desc.workflowId}) already ${desc.status.name.toLowerCase().replace(/_/g, ' ')}: nothing to cancel`);
    }
    await handle.cancel();
    return { workflowId: desc.workflowId, runId: desc.runId };
  }

  async handleFor(idOrRunId: string): Promise<WorkflowHandle> {
    if (idOrRunId.startsWith('scoreline/')) return this.client.workflow.getHandle(idOrRunId);
    if (!/^[0-9a-f-]{36}$/i.test(idOrRunId)) throw new ConfigError(`"${idOrRunId}" is neither a run id (UUID) nor a workflow id (scoreline/<pipeline>/<date>)`);
    // Visibility is eventually consistent: a run started a moment ago may not be listed yet.
    for (let attempt = 0; attempt < 4; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 250 * attempt));
      for await (const wf of this.client.workflow.list({ query: `RunId = "${idOrRunId}"` })) {
        return this.client.workflow.getHandle(wf.workflowId, wf.runId);
      }
    }
    throw new ScorelineError('NOT_FOUND', `no run with id ${idOrRunId} in namespace ${this.config.namespace}`);
  }

  async progress(handle: WorkflowHandle): Promise<RunProgress | undefined> {
    try {
      return await handle.query<RunProgress>('progress');
    } catch {
      return undefined; // not started yet, or no worker to answer
    }
  }

  /** Whether a worker polls this client's task queue for workflow tasks (the server lists recent pollers). */
  async workerPolling(): Promise<boolean> {
    const res = await this.client.workflowService.describeTaskQueue({
      namespace: this.config.namespace,
      taskQueue: { name: this.config.taskQueue },
      taskQueueType: 1, // TASK_QUEUE_TYPE_WORKFLOW
    });
    return (res.pollers?.length ?? 0) > 0;
  }

  /**
   * Wait for the result, calling `onProgress` about every `intervalMs`. A failed run resolves to a
   * RunResult with status "failed" (not an exception): that is an outcome, not a client error.
   */
  async wait(handle: WorkflowHandle, onProgress?: (p: RunProgress) => void, intervalMs = 500): Promise<RunResult> {
    let done = false;
    let stop!: () => void;
    const stopped = new Promise<void>((resolve) => (stop = resolve));
    const poll = (async () => {
      while (!done && onProgress) {
        const p = await this.progress(handle);
        if (p && !done) onProgress(p);
        // Cut short when the run ends: the caller must not wait out the rest of an interval.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise((r) => (timer = setTimeout(r, intervalMs))), stopped]);
        clearTimeout(timer);
      }
    })();
    try {
      return (await handle.result()) as RunResult;
    } catch (err) {
      if (err instanceof WorkflowFailedError) return this.failedResult(handle, err);
      throw err;
    } finally {
      done = true;
      stop();
      await poll;
    }
  }

  private async failedResult(handle: WorkflowHandle, err: WorkflowFailedError): Promise<RunResult> {
    const p = await this.progress(handle);
    const desc = await handle.describe();
    const cancelled = desc.status.name === 'CANCELLED';
    return {
      // The run's own id (a resumed run keeps the id of the run it resumes), as a succeeded run reports it.
      runId: p?.runId ?? desc.runId,
      workflowId: desc.workflowId,
      pipeline: p?.pipeline ?? '',
      logicalDate: p?.logicalDate ?? '',
      status: cancelled ? 'cancelled' : 'failed',
      rowsIn: p?.rowsDone ?? 0,
      rowsOut: 0,
      rowsRejected: 0,
      rowsImputed: 0,
      chunks: p?.chunksTotal ?? 0,
      durationMs: (desc.closeTime?.getTime() ?? Date.now()) - desc.startTime.getTime(),
      model: p?.model,
      error: cancelled ? 'cancelled' : (err.cause?.message ?? err.message),
      ...(p?.resumableUntil && { resumableUntil: p.resumableUntil }),
    };
  }
}

export function webUiLink(uiBase: string, namespace: string, workflowId: string, runId: string): string {
  return `${uiBase.replace(/\/$/, '')}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}/${runId}/history`;
}
