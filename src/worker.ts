/**
 * Worker wiring: a Temporal worker on the `scoreline` task queue with the batch workflow and the
 * activities bound to this process's RunContext (session cache, connectors).
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import type { PayloadCodec } from '@temporalio/common';
import { NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import { parseMetricsPort } from './obs/ports';
import { createConnectors } from '../connectors';
import type { Connections } from './connections';
import { parseWholeNumber } from './config/numbers';
import { ConfigError } from './errors';
import { logger, temporalLogger, temporalThreshold } from './obs/log';
import { activitySlots, startMetricsServer } from './obs/metrics';
import { closeRunContext, defaultWorkerId, type RunContext } from './run/context';
import { packageRoot } from './paths';
import { InferencePool } from './scoring/pool';
import { SessionCache } from './scoring/session';
import { chunkQueue, SEARCH_ATTRIBUTES, TASK_QUEUE } from './search-attributes';
import { codecFromEnv } from './security/codec';
import { workflowBundle } from './workflow-bundle';

export interface WorkerConfig {
  address: string;
  namespace?: string;
  taskQueue?: string;
  projectDir?: string;
  pipelinesDir?: string;
  modelsDir?: string;
  /** Chunk activities this process runs at once. Default: 2 × cores (one reads while another infers). */
  maxConcurrentActivities?: number;
  /**
   * Inference threads (each with its own ONNX Runtime session, 1 intra-op thread). Default: cores.
   * 0 runs ONNX Runtime on the worker's main thread with `intraOpThreads` threads instead.
   */
  inferenceThreads?: number;
  /** ONNX Runtime intra-op threads per session. Default: 1 with inference threads, else cores. */
  intraOpThreads?: number;
  /** A prebuilt workflow bundle; default: workflows/ bundled once and kept while its sources are unchanged (src/workflow-bundle.ts). */
  workflowBundle?: WorkerOptions['workflowBundle'];
  identity?: string;
  /**
   * Warehouse connections by name. Default: `SCORELINE_CONNECTION_<NAME>` env, then the connections file
   * (`SCORELINE_CONNECTIONS`, default `<projectDir>/connections.yaml`); credentials from this process's env.
   */
  connections?: Connections;
  /**
   * Serve Prometheus metrics on this port (GET /metrics); 0 = any free port (tests). Default: none.
   * From the environment: SCORELINE_METRICS_PORT, where 0 or empty means none.
   */
  metricsPort?: number;
  /** Address the metrics port binds (SCORELINE_METRICS_HOST, default 127.0.0.1; 0.0.0.0 for a scraper on another host). */
  metricsHost?: string;
  /**
   * Payload codec (docs/security.md): payloads and failure messages encrypted in history. Default (undefined):
   * from SCORELINE_CODEC_KEYS, none when unset; null = none whatever the environment says.
   */
  codec?: PayloadCodec | null;
  /** A run with more chunks scores them in child workflows of this many (SCORELINE_CHUNKS_PER_CHILD, default 500). */
  chunksPerChild?: number;
}


/** Environment → config, with the defaults documented in the README's CLI section (Environment). */
export function workerConfigFromEnv(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const projectDir = resolve(env.SCORELINE_PROJECT_DIR ?? process.cwd());
  return {
    address: env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233',
    namespace: env.TEMPORAL_NAMESPACE ?? 'default',
    taskQueue: env.SCORELINE_TASK_QUEUE ?? TASK_QUEUE,
    projectDir,
    pipelinesDir: env.SCORELINE_PIPELINES_DIR ? resolve(projectDir, env.SCORELINE_PIPELINES_DIR) : undefined,
    modelsDir: env.SCORELINE_MODELS_DIR ? resolve(projectDir, env.SCORELINE_MODELS_DIR) : undefined,
    maxConcurrentActivities: wholeNumber(env, 'SCORELINE_WORKER_CONCURRENCY', 1),
    intraOpThreads: wholeNumber(env, 'SCORELINE_ORT_THREADS', 1),
    inferenceThreads: wholeNumber(env, 'SCORELINE_INFERENCE_THREADS', 0),
    metricsPort: parseMetricsPort(env.SCORELINE_METRICS_PORT),
    metricsHost: env.SCORELINE_METRICS_HOST || undefined,
    codec: codecFromEnv(env) ?? null,
    chunksPerChild: wholeNumber(env, 'SCORELINE_CHUNKS_PER_CHILD', 1),
  };
}

/** A numeric setting from the environment: unset or empty is undefined, anything but a whole number ≥ min is refused. */
function wholeNumber(env: NodeJS.ProcessEnv, name: string, min: number): number | undefined {
  const raw = env[name];
  return raw === undefined || raw.trim() === '' ? undefined : parseWholeNumber(raw, `${name}=${raw}`, min);
}

export function runContextFor(config: WorkerConfig): RunContext {
  const projectDir = resolve(config.projectDir ?? process.cwd());
  const cores = availableParallelism();
  const threads = config.inferenceThreads ?? cores;
  return {
    projectDir,
    pipelinesDir: config.pipelinesDir ?? join(projectDir, 'pipelines'),
    modelsDir: config.modelsDir ?? join(projectDir, 'models'),
    connectors: createConnectors({ baseDir: projectDir, connections: config.connections }),
    // The main-thread cache validates manifests at plan time; with a pool it never runs a chunk.
    sessions: new SessionCache({ intraOpThreads: config.intraOpThreads ?? (threads > 0 ? 1 : cores) }),
    inference: threads > 0 ? new InferencePool({ size: threads, intraOpThreads: config.intraOpThreads ?? 1 }) : undefined,
    workerId: config.identity ?? defaultWorkerId(),
    chunksPerChild: config.chunksPerChild,
  };
}

/** Kept workflow bundles (src/workflow-bundle.ts): SCORELINE_CACHE_DIR, else inside this installation. */
function bundleCacheDir(): string {
  return process.env.SCORELINE_CACHE_DIR || join(packageRoot(), 'node_modules', '.cache', 'scoreline');
}

/** workflows/index as compiled JS (dist/) or TypeScript source (tests); the SDK's bundler takes both. */
function workflowsPath(): string {
  const base = join(__dirname, '..', 'workflows', 'index');
  return existsSync(`${base}.js`) ? `${base}.js` : `${base}.ts`;
}

export interface ScorelineWorker {
  worker: Worker;
  context: RunContext;
  connection: NativeConnection;
  /** The Prometheus endpoint (http://host:port/metrics) when metricsPort is set. */
  metricsUrl?: string;
  /** Runs until shutdown() (or a signal, when the SDK's default shutdown signals apply). */
  run(): Promise<void>;
  shutdown(): Promise<void>;
}

/**
 * The Temporal SDK's messages (its TypeScript side and, forwarded, its Rust core) go through Scoreline's
 * logger (src/obs/log.ts), as JSON lines with component "temporal". The SDK logs its whole workflow
 * bundle's module list at INFO, so it is held to WARN unless the log level is debug or trace.
 */
function installRuntimeLogger(): void {
  if (Runtime.instantiator) return; // already installed (tests, or an embedding application)
  const threshold = temporalThreshold();
  Runtime.install({ logger: temporalLogger(), telemetryOptions: { logging: { filter: { core: threshold, other: threshold }, forward: {} } } });
}

export async function createWorker(config: WorkerConfig): Promise<ScorelineWorker> {
  installRuntimeLogger();
  const slots = config.maxConcurrentActivities ?? 2 * availableParallelism();
  if (!Number.isInteger(slots) || slots < 1) throw new ConfigError(`worker concurrency ${slots}: expected a whole number ≥ 1`);
  const codec = config.codec === undefined ? codecFromEnv() : (config.codec ?? undefined);
  const context = runContextFor(config);
  let metrics: Awaited<ReturnType<typeof startMetricsServer>> | undefined;
  let connection: NativeConnection | undefined;
  let worker: Worker;
  let chunks: Worker;
  // Everything the worker started: released when it stops, or when start-up fails part-way (its threads
  // and sockets would keep the process alive after the error).
  const release = async () => {
    await metrics?.close();
    await closeRunContext(context);
    await connection?.close();
  };
  try {
    // Before connecting, so a port in use fails before anything connects; and `up` then reflects the process.
    metrics = config.metricsPort === undefined ? undefined : await startMetricsServer({ port: config.metricsPort, host: config.metricsHost });
    connection = await NativeConnection.connect({ address: config.address });
    const conn = connection;
    const namespace = config.namespace ?? 'default';
    context.searchAttributesRegistered = async () => {
      const { customAttributes } = await conn.operatorService.listSearchAttributes({ namespace });
      return Object.keys(SEARCH_ATTRIBUTES).every((name) => name in (customAttributes ?? {}));
    };
    worker = await createTemporalWorker(config, context, connection, slots, codec);
    chunks = await createTemporalWorker(config, context, connection, slots, codec, 'chunks');
  } catch (err) {
    await release();
    // The SDK's runtime, started above, shuts down once its last connection closes; a start that failed
    // before connecting leaves it running, and its signal handlers and threads kept the process alive after
    // the error (SIGTERM included). Only if idle: another worker of this process may be using it.
    await (Runtime.instance() as unknown as { shutdownIfIdle(): Promise<void> }).shutdownIfIdle();
    throw err;
  }
  activitySlots.set(slots);
  logger.info(
    { worker_id: context.workerId, address: config.address, namespace: config.namespace ?? 'default', task_queue: config.taskQueue ?? TASK_QUEUE, activity_slots: slots, metrics: metrics?.url ?? null, payload_codec: codecName(codec) },
    'worker started',
  );
  const conn = connection;
  let running: Promise<void> | undefined;
  const both = [worker, chunks];
  const shutdownAll = () => both.forEach((w) => w.getState() === 'RUNNING' && w.shutdown());
  return {
    worker,
    context,
    connection: conn,
    metricsUrl: metrics?.url,
    // Both queues or neither: when one stops (shutdown, fatal error), so does the other.
    run: () => (running ??= Promise.all(both.map((w) => w.run().finally(shutdownAll))).then(() => undefined).finally(release)),
    shutdown: async () => {
      shutdownAll();
      await running;
    },
  };
}

/** What the start-up log line says about the codec: the encrypting key's id (not secret), never key material. */
function codecName(codec: PayloadCodec | undefined): string | null {
  if (!codec) return null;
  const keyId = (codec as { keyId?: unknown }).keyId;
  return typeof keyId === 'string' ? `aes-256-gcm (key ${keyId})` : 'custom';
}

/**
 * The main queue (workflows, and the short steps of a run) or the chunk queue (chunk activities only:
 * `slots` of them bound the chunks, and so the memory, in flight). Both get every activity.
 */
async function createTemporalWorker(config: WorkerConfig, context: RunContext, connection: NativeConnection, slots: number, codec: PayloadCodec | undefined, queue: 'main' | 'chunks' = 'main'): Promise<Worker> {
  const taskQueue = config.taskQueue ?? TASK_QUEUE;
  // With a codec, failure messages go into (encrypted) payloads too: src/security/failure-converter.js.
  const failureConverterPath = codec ? join(packageRoot(), 'src', 'security', 'failure-converter.js') : undefined;
  const workflows =
    queue === 'chunks'
      ? {}
      : { workflowBundle: config.workflowBundle ?? (await workflowBundle({ workflowsPath: workflowsPath(), failureConverterPath, cacheDir: bundleCacheDir(), logger: Runtime.instance().logger })) };
  return Worker.create({
    connection,
    namespace: config.namespace ?? 'default',
    taskQueue: queue === 'chunks' ? chunkQueue(taskQueue) : taskQueue,
    identity: context.workerId,
    activities: createActivities(context),
    ...workflows,
    maxConcurrentActivityTaskExecutions: slots,
    ...(codec ? { dataConverter: { payloadCodecs: [codec], failureConverterPath } } : {}),
  });
}
