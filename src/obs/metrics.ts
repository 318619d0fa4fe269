/**
 * Prometheus metrics (docs/observability.md lists every one): one registry per process, shared by the
 * worker's `/metrics` port and the API's `/metrics` route, plus prom-client's default process metrics.
 * Everything is recorded per chunk, per run or per request — never per row — and labelled only with
 * low-cardinality values (pipeline, status, stage, model name, activity type), never a run id.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ConfigError } from '../errors';
import type { ChunkStats, RunStatus } from '../types';

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

/** Seconds, from 5 ms (a stage of a small chunk) to 10 min (a slow chunk or run step). */
const STAGE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const CHUNK_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];
const RUN_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200];
/** Near-real-time requests: ~2 ms on a warm server up to the client's patience. */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const registers = [registry];

export const runsTotal = new Counter({
  name: 'scoreline_runs_total',
  help: 'Batch runs finished (finishRun completed), by pipeline and final status.',
  labelNames: ['pipeline', 'status'] as const,
  registers,
});
export const runDuration = new Histogram({
  name: 'scoreline_run_duration_seconds',
  help: 'Batch run duration from workflow start to the final audit row, by pipeline and final status.',
  labelNames: ['pipeline', 'status'] as const,
  buckets: RUN_BUCKETS,
  registers,
});
export const runLastSuccess = new Gauge({
  name: 'scoreline_run_last_success_timestamp_seconds',
  help: 'Unix time at which this process last finished a succeeded run of the pipeline.',
  labelNames: ['pipeline'] as const,
  registers,
});
export const rowsScored = new Counter({
  name: 'scoreline_rows_scored_total',
  help: 'Rows scored by batch chunks (rows out of the model), counted once per successful chunk attempt.',
  labelNames: ['pipeline'] as const,
  registers,
});
export const rowsRejected = new Counter({
  name: 'scoreline_rows_rejected_total',
  help: 'Rows dropped by the NULL policy "skip" in batch chunks, counted once per successful chunk attempt.',
  labelNames: ['pipeline'] as const,
  registers,
});
export const rowsQuarantined = new Counter({
  name: 'scoreline_rows_quarantined_total',
  help: 'Rows set aside in the quarantine table under the error budget (max_rejected) in batch chunks, counted once per successful chunk attempt.',
  labelNames: ['pipeline'] as const,
  registers,
});
export const chunkDuration = new Histogram({
  name: 'scoreline_chunk_duration_seconds',
  help: 'Wall time of a successful scoreChunk activity attempt (read, convert, infer, write, audit row).',
  labelNames: ['pipeline'] as const,
  buckets: CHUNK_BUCKETS,
  registers,
});
export const chunkStageDuration = new Histogram({
  name: 'scoreline_chunk_stage_duration_seconds',
  help: 'Time a successful chunk spent in one stage (read, convert, infer, write), from its ChunkStats.',
  labelNames: ['pipeline', 'stage'] as const,
  buckets: STAGE_BUCKETS,
  registers,
});
export const chunkFailures = new Counter({
  name: 'scoreline_chunk_failures_total',
  help: 'scoreChunk activity attempts that failed (each is retried, or fails the run); cancellations not included.',
  labelNames: ['pipeline'] as const,
  registers,
});
export const inferenceDuration = new Histogram({
  name: 'scoreline_inference_duration_seconds',
  help: 'ONNX Runtime session.run time of one batch (one batch chunk, or one record batch of a near-real-time request), by model name.',
  labelNames: ['model'] as const,
  buckets: STAGE_BUCKETS,
  registers,
});
export const modelLoadDuration = new Histogram({
  name: 'scoreline_model_load_duration_seconds',
  help: 'ONNX Runtime session creation plus manifest check for a model version on the worker main thread, by model name.',
  labelNames: ['model'] as const,
  buckets: STAGE_BUCKETS,
  registers,
});
export const activitiesInFlight = new Gauge({
  name: 'scoreline_activities_in_flight',
  help: 'Scoreline activities executing in this process now, by activity type.',
  labelNames: ['activity'] as const,
  registers,
});
export const activitySlots = new Gauge({
  name: 'scoreline_worker_activity_slots',
  help: 'Activities this worker process runs at once at most (SCORELINE_WORKER_CONCURRENCY).',
  registers,
});
export const alertDeliveries = new Counter({
  name: 'scoreline_alert_deliveries_total',
  help: 'Alert delivery attempts (deliverAlert activity attempts), by event, channel kind and outcome.',
  labelNames: ['event', 'kind', 'outcome'] as const,
  registers,
});
export const nrtRequestDuration = new Histogram({
  name: 'scoreline_nrt_request_duration_seconds',
  help: 'Near-real-time request latency as the caller sees it: from receipt of the request to predictions back from Temporal (API and `scoreline score`).',
  labelNames: ['pipeline', 'outcome'] as const,
  buckets: REQUEST_BUCKETS,
  registers,
});
export const nrtScoreDuration = new Histogram({
  name: 'scoreline_nrt_score_duration_seconds',
  help: 'Near-real-time scoring step on the worker (decode, tensor, ONNX Runtime), per request.',
  labelNames: ['pipeline'] as const,
  buckets: REQUEST_BUCKETS,
  registers,
});

const RUN_STATUSES: RunStatus[] = ['succeeded', 'failed', 'cancelled'];
export const STAGES = ['read', 'convert', 'infer', 'write'] as const;

/**
 * Zero-valued series for a pipeline as soon as a worker sees it: `increase()` over a counter that
 * appears at 1 misses that first increment, so the first failure of a pipeline would never alert.
 */
export function touchPipeline(pipeline: string): void {
  for (const status of RUN_STATUSES) runsTotal.labels(pipeline, status).inc(0);
  rowsScored.labels(pipeline).inc(0);
  rowsRejected.labels(pipeline).inc(0);
  rowsQuarantined.labels(pipeline).inc(0);
  chunkFailures.labels(pipeline).inc(0);
}

/** One successful chunk attempt: its rows and its time, overall and per stage. */
export function recordChunk(pipeline: string, stats: Pick<ChunkStats, 'rowsOut' | 'rowsRejected' | 'quarantine' | 'readMs' | 'convertMs' | 'inferMs' | 'writeMs'>, seconds: number): void {
  rowsScored.labels(pipeline).inc(stats.rowsOut);
  rowsRejected.labels(pipeline).inc(stats.rowsRejected);
  rowsQuarantined.labels(pipeline).inc(stats.quarantine?.rows ?? 0);
  chunkDuration.labels(pipeline).observe(seconds);
  const ms = { read: stats.readMs, convert: stats.convertMs, infer: stats.inferMs, write: stats.writeMs };
  for (const stage of STAGES) chunkStageDuration.labels(pipeline, stage).observe(ms[stage] / 1000);
}

export function recordRunFinished(pipeline: string, status: RunStatus, durationMs: number, finishedAtMs = Date.now()): void {
  touchPipeline(pipeline);
  runsTotal.labels(pipeline, status).inc();
  runDuration.labels(pipeline, status).observe(durationMs / 1000);
  if (status === 'succeeded') runLastSuccess.labels(pipeline).set(finishedAtMs / 1000);
}

/** Marks an activity as running; call the returned function exactly once when it ends. */
export function activityStarted(activity: string): () => void {
  const gauge = activitiesInFlight.labels(activity);
  gauge.inc();
  return () => gauge.dec();
}

/** A timer in seconds, for `observe`. */
export function startTimer(): () => number {
  const t0 = process.hrtime.bigint();
  return () => Number(process.hrtime.bigint() - t0) / 1e9;
}

/** What the registry defines (name, type, labels, help): docs and tests check themselves against this. */
export interface MetricDefinition {
  name: string;
  type: string;
  help: string;
  labelNames: string[];
}

export async function metricDefinitions(): Promise<MetricDefinition[]> {
  const all = await registry.getMetricsAsJSON();
  return all.map((m) => {
    const labelNames = (registry.getSingleMetric(m.name) as unknown as { labelNames?: string[] } | undefined)?.labelNames ?? [];
    return { name: m.name, type: String(m.type), help: m.help, labelNames: [...labelNames] };
  });
}

export const METRICS_PATH = '/metrics';

/** GET /metrics in the Prometheus text format; the caller decides what else the server answers. */
export async function serveMetrics(res: ServerResponse): Promise<void> {
  try {
    const text = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(`metrics collection failed: ${(err as Error).message}\n`);
  }
}

export interface MetricsServer {
  server: Server;
  /** http://host:port/metrics */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** The worker's metrics endpoint: `/metrics` and nothing else (404), no auth, no logs per scrape. */
export async function startMetricsServer(opts: { port: number; host?: string }): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    req.resume();
    if (path === METRICS_PATH && (req.method === 'GET' || req.method === 'HEAD')) {
      void serveMetrics(res);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(`not found: this port serves only GET ${METRICS_PATH}\n`);
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((ok, fail) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      fail(err.code === 'EADDRINUSE' ? new ConfigError(`metrics port ${opts.port} on ${host} is in use; pick another with --metrics-port or SCORELINE_METRICS_PORT`) : err),
    );
    server.listen(opts.port, host, () => ok());
  });
  server.unref(); // the worker's own lifetime decides when the process ends
  const { port, address } = server.address() as AddressInfo;
  const shown = address.includes(':') ? `[${address}]` : address;
  return {
    server,
    url: `http://${shown}:${port}${METRICS_PATH}`,
    port,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
