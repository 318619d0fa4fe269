/**
 * Worker wiring: a Temporal worker on the `scoreline` task queue with the batch workflow and the
 * activities bound to this process's RunContext (session cache, connectors).
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { DefaultLogger, NativeConnection, Runtime, Worker, type LogLevel, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import { createConnectors } from '../connectors';
import type { Connections } from './connections';
import { defaultWorkerId, type RunContext } from './run/context';
import { InferencePool } from './scoring/pool';
import { SessionCache } from './scoring/session';
import { TASK_QUEUE } from './search-attributes';

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
  /** A prebuilt workflow bundle (tests build it once); default: bundle workflows/ at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  identity?: string;
  /**
   * Warehouse connections by name. Default: `SCORELINE_CONNECTION_<NAME>` env, then the connections file
   * (`SCORELINE_CONNECTIONS`, default `<projectDir>/connections.yaml`); credentials from this process's env.
   */
  connections?: Connections;
}

/** Environment → config, with the defaults documented in README "Worker". */
export function workerConfigFromEnv(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const projectDir = resolve(env.SCORELINE_PROJECT_DIR ?? process.cwd());
  return {
    address: env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233',
    namespace: env.TEMPORAL_NAMESPACE ?? 'default',
    taskQueue: env.SCORELINE_TASK_QUEUE ?? TASK_QUEUE,
    projectDir,
    pipelinesDir: env.SCORELINE_PIPELINES_DIR ? resolve(projectDir, env.SCORELINE_PIPELINES_DIR) : undefined,
    modelsDir: env.SCORELINE_MODELS_DIR ? resolve(projectDir, env.SCORELINE_MODELS_DIR) : undefined,
    maxConcurrentActivities: env.SCORELINE_WORKER_CONCURRENCY ? Number(env.SCORELINE_WORKER_CONCURRENCY) : undefined,
    intraOpThreads: env.SCORELINE_ORT_THREADS ? Number(env.SCORELINE_ORT_THREADS) : undefined,
    inferenceThreads: env.SCORELINE_INFERENCE_THREADS ? Number(env.SCORELINE_INFERENCE_THREADS) : undefined,
  };
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
  };
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
  /** Runs until shutdown() (or a signal, when the SDK's default shutdown signals apply). */
  run(): Promise<void>;
  shutdown(): Promise<void>;
}

/**
 * The Temporal SDK logs at INFO by default, including the whole workflow bundle's module list; a worker
 * is quieter: WARN unless SCORELINE_LOG_LEVEL says otherwise (TRACE, DEBUG, INFO, WARN, ERROR).
 */
function installRuntimeLogger(): void {
  if (Runtime.instantiator) return; // already installed (tests, or an embedding application)
  const level = (process.env.SCORELINE_LOG_LEVEL ?? 'WARN').toUpperCase() as LogLevel;
  Runtime.install({ logger: new DefaultLogger(level) });
}

export async function createWorker(config: WorkerConfig): Promise<ScorelineWorker> {
  installRuntimeLogger();
  const context = runContextFor(config);
  const connection = await NativeConnection.connect({ address: config.address });
  const cores = availableParallelism();
  const worker = await Worker.create({
    connection,
    namespace: config.namespace ?? 'default',
    taskQueue: config.taskQueue ?? TASK_QUEUE,
    identity: context.workerId,
    activities: createActivities(context),
    ...(config.workflowBundle ? { workflowBundle: config.workflowBundle } : { workflowsPath: workflowsPath() }),
    maxConcurrentActivityTaskExecutions: config.maxConcurrentActivities ?? 2 * cores,
  });
  let running: Promise<void> | undefined;
  return {
    worker,
    context,
    connection,
    run: () => (running ??= worker.run().finally(async () => {
      await context.sessions.close();
      await context.inference?.close();
      await context.connectors.close?.();
      await connection.close();
    })),
    shutdown: async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
    },
  };
}
