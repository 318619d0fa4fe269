/**
 * The local stack behind `scoreline dev`, `npm run demo` and the integration tests: the real Temporal
 * dev server (CLI found or installed by temporal-cli.ts) with Scoreline's search attributes, plus a
 * worker in this process.
 */
import { join } from 'node:path';
import { SEARCH_ATTRIBUTES } from '../search-attributes';
import { createWorker, type ScorelineWorker, type WorkerConfig } from '../worker';
import { startDevServer, type DevServer } from './dev-server';
import { ensureTemporalCli } from './temporal-cli';

export interface StackOptions {
  projectDir: string;
  /** Where the Temporal CLI is looked for / installed (`.scoreline/venv`); default `projectDir`. */
  toolsDir?: string;
  /** SQLite file for the server's state; default `.scoreline/temporal.db`; `null` = in-memory. */
  dbFilename?: string | null;
  port?: number;
  uiPort?: number;
  headless?: boolean;
  /** The Web UI's remote codec endpoint (`scoreline dev` points it at the API's /codec when the codec is on). */
  uiCodecEndpoint?: string;
  worker?: Omit<WorkerConfig, 'address'>;
  /** Start the worker too (default true). */
  startWorker?: boolean;
  log?: (msg: string) => void;
}

export interface Stack {
  server: DevServer;
  worker?: ScorelineWorker;
  address: string;
  uiUrl?: string;
  stop(): Promise<void>;
}

export async function startStack(opts: StackOptions): Promise<Stack> {
  const log = opts.log ?? (() => undefined);
  const cli = await ensureTemporalCli({ projectDir: opts.toolsDir ?? opts.projectDir, log });
  log(`Temporal CLI: ${cli.path} (${cli.source})`);
  const server = await startDevServer({
    cliPath: cli.path,
    dbFilename: opts.dbFilename === null ? undefined : (opts.dbFilename ?? join(opts.projectDir, '.scoreline', 'temporal.db')),
    port: opts.port,
    uiPort: opts.uiPort,
    headless: opts.headless,
    uiCodecEndpoint: opts.uiCodecEndpoint,
    searchAttributes: { ...SEARCH_ATTRIBUTES },
    logFile: join(opts.projectDir, '.scoreline', 'temporal.log'),
    log,
  });
  let worker: ScorelineWorker | undefined;
  let workerRun: Promise<void> | undefined;
  try {
    if (opts.startWorker !== false) {
      worker = await createWorker({ projectDir: opts.projectDir, ...opts.worker, address: server.address });
      workerRun = worker.run();
      workerRun.catch((err) => log(`worker stopped: ${(err as Error).message}`));
      log(`worker ${worker.context.workerId} polling task queue ${worker.worker.options.taskQueue}`);
    }
  } catch (err) {
    await server.stop();
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    server,
    worker,
    address: server.address,
    uiUrl: server.uiUrl,
    stop: () =>
      (stopping ??= (async () => {
        if (worker) await worker.shutdown().catch(() => undefined);
        await server.stop();
      })()),
  };
}
