/**
 * `npm run bench -- --scale [--json] [--scale-rows 10000000] [--scale-model mlp|gbt] [--data DIR]`:
 * how Scoreline behaves as input grows, against a local dev server (in-memory SQLite) with workers in
 * their own processes. Reported, never asserted:
 *   1. memory: the worker's peak RSS (VmHWM) scoring 1M and then --scale-rows rows, each in a fresh
 *      worker process (target: ≤ 1 GiB at 10M rows, and flat in input size);
 *   2. workers: the same run with 1 and then 2 worker processes on the task queue, rows/s and which
 *      worker scored how many chunks (from the chunk audit table's `worker` column);
 *   3. history: a run of thousands of small chunks (what a 100M-row run at 50k-row chunks looks like),
 *      scored through child workflows: events and bytes of the run's and its children's histories
 *      against Temporal's limits (51,200 events, 50 MB, 2 MiB per payload).
 * The last line (--json) is `{"case":"scale-summary", ...}`.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ScorelineClient } from '../src/client';
import { formatTable } from '../src/cli/table';
import { parsePipeline, type PipelineInput } from '../src/config/pipeline';
import { startStack } from '../src/dev/stack';
import { withConnection } from '../src/io/duckdb';
import { packageRoot } from '../src/paths';
import { TASK_QUEUE } from '../src/search-attributes';
import type { RunResult } from '../src/types';
import { arg, ensureDataset, log } from './common';
import { peakRssMb, startWorkerProcess } from './process';

const ROOT = packageRoot(__dirname);
const DATE = '2026-11-01';
const MODELS: Record<string, string> = { mlp: 'churn-mlp@champion', gbt: 'churn-gbt@champion' };

type Row = Record<string, string | number | null>;

const round = (v: number, d = 2) => Math.round(v * 10 ** d) / 10 ** d;

export async function benchScale(argv: string[]): Promise<void> {
  const json = argv.includes('--json');
  const bigRows = Number(arg(argv, '--scale-rows') ?? 10_000_000);
  const model = arg(argv, '--scale-model') ?? 'mlp';
  const data = join(arg(argv, '--data') ?? join(ROOT, 'bench', '.data'), 'scale');
  const emit = (row: Row) => json && process.stdout.write(`${JSON.stringify(row)}\n`);
  // Each in a directory of its own (kept between runs); the runs read the directory's partition.
  const dataset = async (name: string, rows: number) => (await ensureDataset(join(data, name), DATE, rows, 7), join(data, name));
  const small = await dataset('customers-1m', Math.min(1_000_000, bigRows));
  const big = await dataset(`customers-${bigRows}`, bigRows);
  const many = await dataset('customers-200k', 200_000);

  const stack = await startStack({ projectDir: ROOT, dbFilename: null, headless: true, startWorker: false, log });
  const client = await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE });
  const workers: ChildProcess[] = [];
  const startWorkers = async (n: number) => {
    for (const w of workers.splice(0)) await stop(w);
    for (let i = 0; i < n; i++) workers.push(await startWorkerProcess(stack.address));
  };
  let seq = 0;
  const run = async (dir: string, over: Partial<PipelineInput> = {}): Promise<{ result: RunResult; seconds: number; handle: Awaited<ReturnType<ScorelineClient['startRun']>> }> => {
    const raw: PipelineInput = {
      name: `scale-${++seq}`,
      source: { kind: 'parquet', path: join(dir, 'ds={{ ds }}', '*.parquet'), key: ['customer_id'] },
      model: MODELS[model],
      models_dir: join(ROOT, 'examples', 'models'),
      sink: { kind: 'parquet', path: join(data, 'out', `scores-${seq}`) },
      chunk_rows: 'auto',
      parallelism: 4,
      ...over,
    };
    const t = performance.now();
    const handle = await client.startRun({ config: parsePipeline(raw, 'bench'), raw, date: DATE, trigger: 'bench' });
    const result = await client.wait(handle, undefined, 200);
    const seconds = (performance.now() - t) / 1000;
    if (result.status !== 'succeeded') throw new Error(`bench run ${result.status}: ${result.error}`);
    return { result, seconds, handle };
  };

  const memory: Row[] = [];
  const scaling: Row[] = [];
  const history: Row[] = [];
  try {
    log(`\n== Memory: worker peak RSS by input size (${model}, chunk_rows auto, parallelism 4, a fresh worker each) ==`);
    for (const [dir, rows] of [
      [small, Math.min(1_000_000, bigRows)],
      [big, bigRows],
    ] as const) {
      await startWorkers(1);
      const { result, seconds } = await run(dir);
      const row: Row = { case: 'scale-memory', model, rows, chunks: result.chunks, seconds: round(seconds), rows_per_s: Math.round(rows / seconds), worker_peak_rss_mb: peakRssMb(workers[0].pid!) };
      memory.push(row);
      emit(row);
      log(`  ${rows} rows: ${row.rows_per_s} rows/s, worker peak RSS ${row.worker_peak_rss_mb} MB`);
    }

    log(`\n== Workers: one run (${bigRows} rows), 1 and 2 worker processes on the task queue ==`);
    for (const n of [1, 2]) {
      await startWorkers(n);
      await run(small); // warm-up: every worker's sessions and workflow cache
      const { result, seconds } = await run(big);
      const byWorker = await withConnection(async (con) =>
        (await con.runAndReadAll(`SELECT worker, count(*) AS chunks FROM read_parquet($1) GROUP BY worker ORDER BY worker`, [join(data, 'out', 'scoreline_run_chunks', result.runId, '*.parquet')])).getRowObjectsJS(),
      );
      const row: Row = {
        case: 'scale-workers',
        model,
        workers: n,
        rows: bigRows,
        seconds: round(seconds),
        rows_per_s: Math.round(bigRows / seconds),
        chunks_by_worker: byWorker.map((r) => `${r.worker}: ${r.chunks}`).join(', '),
      };
      scaling.push(row);
      emit(row);
      log(`  ${n} worker(s): ${row.rows_per_s} rows/s (${row.chunks_by_worker})`);
    }

    log('\n== History: a run of thousands of chunks, through child workflows ==');
    await startWorkers(1);
    const { result, seconds, handle } = await run(many, { chunk_rows: 100, parallelism: 8 });
    const parent = await handle.describe();
    const children: { events: number; bytes: number }[] = [];
    for await (const wf of client.client.workflow.list({ query: `WorkflowType = "scorelineChunkGroup"` })) {
      if (!wf.workflowId.startsWith(`${handle.workflowId}/${result.runId}/`)) continue;
      const d = await client.client.workflow.getHandle(wf.workflowId).describe();
      children.push({ events: d.historyLength, bytes: Number(d.historySize) });
    }
    const row: Row = {
      case: 'scale-history',
      rows: result.rowsOut,
      chunks: result.chunks,
      seconds: round(seconds),
      children: children.length,
      run_events: parent.historyLength,
      run_history_bytes: Number(parent.historySize),
      max_child_events: Math.max(...children.map((c) => c.events)),
      max_child_history_bytes: Math.max(...children.map((c) => c.bytes)),
    };
    history.push(row);
    emit(row);
  } finally {
    for (const w of workers) await stop(w);
    await client.close();
    await stack.stop();
  }
  if (!json) for (const t of [memory, scaling, history]) process.stdout.write(`\n${formatTable(t)}\n`);
  const rate = (n: number) => Number(scaling.find((r) => r.workers === n)?.rows_per_s);
  const summary: Row = {
    case: 'scale-summary',
    model,
    rows: bigRows,
    worker_peak_rss_mb_1m: memory[0].worker_peak_rss_mb,
    worker_peak_rss_mb: memory[1].worker_peak_rss_mb,
    rows_per_s_1_worker: rate(1),
    rows_per_s_2_workers: rate(2),
    workers_2_vs_1: round(rate(2) / rate(1)),
    history_chunks: history[0].chunks,
    history_run_bytes: history[0].run_history_bytes,
    history_max_child_bytes: history[0].max_child_history_bytes,
  };
  if (json) emit(summary);
  else process.stdout.write(`\n${JSON.stringify(summary)}\n`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}
