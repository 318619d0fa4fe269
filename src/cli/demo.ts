/**
 * `npm run demo`: the whole product on one machine in one command — Temporal CLI (found or installed),
 * dev server, worker, demo data, one scored day, and a summary a new user can follow up on.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ScorelineClient } from '../client';
import { Connections, type WarehouseConnection } from '../connections';
import { ConfigError } from '../errors';
import { generateDemoData } from '../demo/generate-data';
import { seedBigQueryTable } from '../dev/bq-seed';
import { startBqEmulator } from '../dev/bqemulator';
import { getFreePort } from '../dev/dev-server';
import { startFakesnow } from '../dev/fakesnow';
import { seedSnowflakeTable } from '../dev/snowflake-seed';
import { startStack } from '../dev/stack';
import { loadPipelineFile, readPipelineYaml } from '../config/pipeline';
import { sqlString, withConnection } from '../io/duckdb';
import { TASK_QUEUE } from '../search-attributes';
import { isPortFree } from './ports';
import { formatDuration, ProgressReporter } from './progress';
import { resultJson, summaryLinesFor, waitForSignal } from './run-output';

export type DemoSource = 'parquet' | 'snowflake' | 'bigquery';
export const DEMO_SOURCES: DemoSource[] = ['parquet', 'snowflake', 'bigquery'];

export interface DemoOptions {
  projectDir: string;
  json?: boolean;
  keep?: boolean;
  /** Rows per day; default 1M for Parquet, 100k for the (much slower) local warehouse emulators. */
  rows?: number;
  date: string;
  model: string;
  source?: DemoSource;
}

export const DEMO_PIPELINE = 'examples/pipelines/churn-demo.yaml';
export const DEMO_DATA_DIR = 'examples/data/customers';
/** Warehouse demos: the pipeline file and the connection name it uses, served by a local emulator. */
const WAREHOUSE_DEMOS = {
  snowflake: { pipeline: 'examples/pipelines/churn-demo-snowflake.yaml', connection: 'demo-snowflake' },
  bigquery: { pipeline: 'examples/pipelines/churn-demo-bigquery.yaml', connection: 'demo-bigquery' },
} as const;
const DEFAULT_ROWS = { parquet: 1_000_000, warehouse: 100_000 };

/**
 * bqemulator intermittently fails concurrent DML on one table (docs/warehouses.md), so the BigQuery demo
 * scores one chunk at a time there; the example pipeline keeps its parallelism for the real service.
 */
function demoOverrides(model: string, source: DemoSource): Record<string, string> {
  return source === 'bigquery' ? { model, parallelism: '1' } : { model };
}

/** A local warehouse emulator with the demo table loaded. */
interface DemoWarehouse {
  connection: WarehouseConnection;
  stop(): Promise<void>;
}

export async function runDemo(opts: DemoOptions): Promise<number> {
  const started = Date.now();
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const source = opts.source ?? 'parquet';
  if (!DEMO_SOURCES.includes(source)) throw new ConfigError(`--source ${source}: expected one of ${DEMO_SOURCES.join(', ')}`);
  const pipelineFile = source === 'parquet' ? DEMO_PIPELINE : WAREHOUSE_DEMOS[source].pipeline;
  const rows = opts.rows ?? (source === 'parquet' ? DEFAULT_ROWS.parquet : DEFAULT_ROWS.warehouse);
  const pipelinePath = join(opts.projectDir, pipelineFile);
  const overrides = demoOverrides(opts.model, source);
  const config = loadPipelineFile(pipelinePath, overrides);

  let warehouse: DemoWarehouse | undefined;
  if (source === 'parquet') await ensureParquetDemoData(opts.projectDir, opts.date, rows, opts.rows, log);
  else warehouse = await startDemoWarehouse(source, opts.projectDir, opts.date, rows, log);
  try {
    return await runDemoPipeline(opts, pipelineFile, config, warehouse, started, log);
  } finally {
    await warehouse?.stop();
  }
}

async function ensureParquetDemoData(projectDir: string, date: string, rows: number, requested: number | undefined, log: (m: string) => void): Promise<void> {
  const partition = join(projectDir, DEMO_DATA_DIR, `ds=${date}`);
  if (existsSync(join(partition, 'part-0.parquet'))) {
    // The footer's row count: a --rows that differs from what is there says so rather than being ignored.
    const existing = await withConnection(async (con) => Number((await con.runAndReadAll(`SELECT count(*) FROM read_parquet(${sqlString(join(partition, '*.parquet'))})`)).getRows()[0][0]));
    const differs = requested !== undefined && requested !== existing ? `; --rows ${requested} applies only when the data is generated: delete the directory to regenerate` : '';
    log(`demo data: ${partition} (exists, ${existing.toLocaleString('en-US')} rows${differs})`);
    return;
  }
  log(`generating demo data: ${rows.toLocaleString('en-US')} customers × 32 features for ${date} …`);
  const t = Date.now();
  await generateDemoData({ dir: join(projectDir, DEMO_DATA_DIR), dates: [date], rowsPerDate: rows });
  log(`  wrote ${partition} in ${formatDuration(Date.now() - t)}`);
}

/** Start the emulator (installed into .scoreline/ on first use) and load the demo customers into it. */
async function startDemoWarehouse(kind: 'snowflake' | 'bigquery', projectDir: string, date: string, rows: number, log: (m: string) => void): Promise<DemoWarehouse> {
  const name = WAREHOUSE_DEMOS[kind].connection;
  // Emulators install into <tools dir>/.scoreline/ (SCORELINE_TOOLS_DIR, default the project).
  const toolsDir = process.env.SCORELINE_TOOLS_DIR ?? projectDir;
  log(`starting the local ${kind} emulator (installs into .scoreline/ on first use) …`);
  const t = Date.now();
  const emulator = kind === 'bigquery' ? await startBqEmulator({ projectDir: toolsDir, name, log }) : await startFakesnow({ projectDir, toolsDir, name, log });
  const seed = (opts: { dates: string[]; rowsPerDate: number; table: string }) =>
    emulator.connection.kind === 'bigquery' ? seedBigQueryTable({ ...opts, connection: emulator.connection }) : seedSnowflakeTable({ ...opts, connection: emulator.connection });
  try {
    log(`loading ${rows.toLocaleString('en-US')} demo customers for ${date} into ${emulator.endpoint} …`);
    await seed({ table: 'customers', dates: [date], rowsPerDate: rows });
  } catch (err) {
    await emulator.stop();
    throw err;
  }
  log(`  emulator ready and loaded in ${formatDuration(Date.now() - t)}`);
  return { connection: emulator.connection, stop: emulator.stop };
}

async function runDemoPipeline(
  opts: DemoOptions,
  pipelineFile: string,
  config: ReturnType<typeof loadPipelineFile>,
  warehouse: DemoWarehouse | undefined,
  started: number,
  log: (m: string) => void,
): Promise<number> {
  const pipelinePath = join(opts.projectDir, pipelineFile);
  const overrides = demoOverrides(opts.model, opts.source ?? 'parquet');
  // Default ports when free, so the Web UI is where the docs say; otherwise any free ones. With 7233 taken
  // another dev server (an earlier `demo --keep`, `dev`) likely holds .scoreline/temporal.db: this one
  // keeps its state in memory rather than write the same SQLite file.
  const ownServer = await isPortFree(7233);
  const port = ownServer ? 7233 : await getFreePort();
  const uiPort = (await isPortFree(8233)) ? 8233 : await getFreePort();
  if (!ownServer) log(`port 7233 is in use (another dev server?): this demo starts its own on port ${port}, with its state in memory`);
  const connections = warehouse ? new Connections({ baseDir: opts.projectDir, given: { [warehouse.connection.name]: warehouse.connection } }) : undefined;
  const stack = await startStack({
    projectDir: opts.projectDir,
    port,
    uiPort,
    dbFilename: ownServer ? undefined : null,
    worker: { pipelinesDir: join(opts.projectDir, 'examples', 'pipelines'), modelsDir: join(opts.projectDir, 'examples', 'models'), taskQueue: TASK_QUEUE, connections },
    log,
  });
  let exitCode = 1;
  try {
    const client = await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE });
    try {
      const handle = await client.startRun({ config, raw: readPipelineYaml(pipelinePath), date: opts.date, overrides, trigger: 'demo' });
      log(`started ${handle.workflowId}`);
      const reporter = new ProgressReporter(process.stderr, true);
      const result = await client.wait(handle, (p) => reporter.update(p), 250);
      reporter.done();
      exitCode = result.status === 'succeeded' ? 0 : 1;
      process.stderr.write(`${summaryLinesFor(result, stack.uiUrl).join('\n')}\n`);
      if (!warehouse && exitCode === 0) log(`\nnext: query the output with  npx scoreline sql "SELECT count(*), avg(churn_probability) FROM churn_scores"`);
      log(`      total demo time ${formatDuration(Date.now() - started)}`);
      if (opts.json) process.stdout.write(`${JSON.stringify(resultJson(result))}\n`);
    } finally {
      await client.close();
    }
    if (opts.keep) {
      log(`\n--keep: server ${stack.address} and worker keep running${stack.uiUrl ? `; Web UI ${stack.uiUrl}` : ''}. Ctrl-C to stop.`);
      if (!warehouse) log(`  e.g. TEMPORAL_ADDRESS=${stack.address} npx scoreline run ${pipelineFile} --date ${opts.date}`);
      else log(`  the ${config.source.kind} emulator keeps running too (connection "${warehouse.connection.name}", known to this worker only)`);
      await waitForSignal();
    }
  } finally {
    await stack.stop();
  }
  return exitCode;
}
