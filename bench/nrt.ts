/**
 * `npm run bench -- --nrt [--json]`: near-real-time latency through the HTTP API against a local dev
 * server (in-memory SQLite) with the worker and the API in this process, as in `scoreline dev`.
 * 1, 100 and 1,000 rows per request × 1 and 10 concurrent clients, p50/p90/p99 over the requests of
 * each case; both designs of docs/nrt.md (`--nrt-designs update,eager`, default both; the API serves
 * the first, `update`); and how long a 1k-row batch run started by the CLI takes to reach committed
 * output. Reported, never asserted: the targets are 100 rows p50 ≤ 25 ms, p99 ≤ 100 ms; batch ≤ 1 s.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from '@temporalio/client';
import { startApiServer, type ApiServer } from '../src/api/server';
import { ScorelineClient } from '../src/client';
import { formatTable } from '../src/cli/table';
import { generateDemoData } from '../src/demo/generate-data';
import { startStack } from '../src/dev/stack';
import type { NrtDesign } from '../src/nrt/client';
import { packageRoot } from '../src/paths';
import { TASK_QUEUE } from '../src/search-attributes';
import { arg, log } from './common';
import { startWorkerProcess } from './process';

const ROOT = packageRoot(__dirname);
const TOKEN = 'bench';
const FEATURES = Array.from({ length: 32 }, (_, i) => `f${String(i).padStart(2, '0')}`);
const DATE = '2026-11-01';

type Row = Record<string, string | number | null>;

const round = (v: number, d = 1) => Math.round(v * 10 ** d) / 10 ** d;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Deterministic demo-like rows (the values do not matter for latency, their shape does). */
function rows(n: number): Record<string, number>[] {
  return Array.from({ length: n }, (_, i) => Object.fromEntries([['customer_id', i], ...FEATURES.map((f, j) => [f, Math.sin(i * 7 + j) * 3])]));
}

async function timeCase(api: ApiServer, pipeline: string, rowCount: number, clients: number, requests: number): Promise<number[]> {
  const body = JSON.stringify({ rows: rows(rowCount) });
  const one = async () => {
    const t = performance.now();
    const res = await fetch(`${api.url}/v1/pipelines/${pipeline}/score`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`score returned ${res.status}: ${text}`);
    return performance.now() - t;
  };
  for (let i = 0; i < Math.min(10, requests); i++) await one(); // warm: session, workflow cache, JIT
  const times: number[] = [];
  let left = requests;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (left-- > 0) times.push(await one());
    }),
  );
  return times.sort((a, b) => a - b);
}

/** A 1k-row batch run started by `scoreline run` (a child process, as a user would) until it exits with the output committed. */
async function batchThroughCli(address: string, projectDir: string): Promise<number> {
  const run = () =>
    new Promise<number>((resolve, reject) => {
      const t = performance.now();
      const child = spawn(process.execPath, [join(ROOT, 'bin', 'scoreline.js'), 'run', 'bench-batch', '--date', DATE, '--json'], {
        cwd: projectDir,
        env: { ...process.env, TEMPORAL_ADDRESS: address, SCORELINE_PROJECT_DIR: projectDir },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d));
      child.once('exit', (code) => {
        const ms = performance.now() - t;
        const last = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { status?: string; rows_out?: number; output?: string; duration_ms?: number };
        if (code !== 0 || last.status !== 'succeeded' || last.rows_out !== 1000 || !last.output || !existsSync(last.output)) reject(new Error(`batch run: exit ${code}, ${out.slice(-500)}`));
        else {
          // The workflow's own duration (plan to final audit row) vs the CLI's wall time around it.
          log(`  batch 1k: ${Math.round(ms)} ms from spawning the CLI to its exit, of which the run ${last.duration_ms} ms`);
          resolve(ms);
        }
      });
    });
  await run(); // warm: the worker's sessions and DuckDB
  const times = [await run(), await run(), await run()];
  return times.sort((a, b) => a - b)[1];
}

export async function benchNrt(argv: string[]): Promise<void> {
  const json = argv.includes('--json');
  const designs = (arg(argv, '--nrt-designs') ?? 'update,eager').split(',') as NrtDesign[];
  const requests = Number(arg(argv, '--nrt-requests') ?? 200);
  const emit = (row: Row) => json && process.stdout.write(`${JSON.stringify(row)}\n`);

  const projectDir = join(ROOT, 'bench', '.data', 'nrt');
  mkdirSync(join(projectDir, 'pipelines'), { recursive: true });
  const models = join(ROOT, 'examples', 'models');
  const pipeline = (name: string, extra = '') =>
    `name: ${name}\nsource: { kind: parquet, path: "data/customers/ds={{ ds }}/*.parquet", key: [customer_id] }\nmodel: churn-gbt@champion\nmodels_dir: ${models}\nsink: { kind: parquet, path: out/${name} }\n${extra}`;
  writeFileSync(join(projectDir, 'pipelines', 'bench-nrt.yaml'), pipeline('bench-nrt'));
  writeFileSync(join(projectDir, 'pipelines', 'bench-batch.yaml'), pipeline('bench-batch', 'chunk_rows: 1000\n'));
  await generateDemoData({ dir: join(projectDir, 'data', 'customers'), dates: [DATE], rowsPerDate: 1000, rowGroupSize: 1000 });

  // Where the worker runs: in this process beside the API (as in `scoreline dev`), or in a process of its
  // own with the API's client on its own connection (`scoreline api` + `scoreline worker`).
  const topology = (arg(argv, '--nrt-worker') ?? 'in-process') as 'in-process' | 'process';
  if (topology !== 'in-process' && topology !== 'process') throw new Error(`--nrt-worker: in-process or process, not "${topology}"`);
  let runDesigns = designs;
  if (topology === 'process' && designs.includes('eager')) {
    log('  (eager start needs the worker in the API process: measuring the update design only)');
    runDesigns = designs.filter((d) => d !== 'eager');
  }
  log(`== Near-real-time scoring through the HTTP API (churn-gbt, dev server in memory, worker ${topology === 'process' ? 'in its own process' : '+ API in this process'}) ==`);
  const stack = await startStack({ projectDir, toolsDir: ROOT, dbFilename: null, headless: true, startWorker: topology === 'in-process', worker: { modelsDir: models, pipelinesDir: join(projectDir, 'pipelines') }, log });
  const config = { address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE };
  const workerProcess = topology === 'process' ? await startWorkerProcess(stack.address, { env: { SCORELINE_PROJECT_DIR: projectDir } }) : undefined;
  // Eager start needs the client to share the worker's NativeConnection (as the API in `scoreline dev` can).
  const client = workerProcess ? await ScorelineClient.connect(config) : ScorelineClient.wrap(new Client({ connection: stack.worker!.connection as never, namespace: 'default' }), config);
  const results: Row[] = [];
  const summary: Row = { case: 'nrt-summary' };
  try {
    for (const design of runDesigns) {
      const api = await startApiServer({ client, token: TOKEN, port: 0, projectDir, nrtDesign: design, log: () => undefined });
      try {
        for (const rowCount of [1, 100, 1000]) {
          for (const clients of [1, 10]) {
            const n = rowCount === 1000 ? Math.ceil(requests / 2) : requests;
            const times = await timeCase(api, 'bench-nrt', rowCount, clients, n);
            const row: Row = { case: 'nrt', design, rows: rowCount, clients, requests: times.length, p50_ms: round(percentile(times, 50)), p90_ms: round(percentile(times, 90)), p99_ms: round(percentile(times, 99)), max_ms: round(times.at(-1)!) };
            results.push(row);
            emit(row);
            log(`  ${design}: ${rowCount} rows × ${clients} clients: p50 ${row.p50_ms} ms, p99 ${row.p99_ms} ms`);
            if (rowCount === 100 && clients === 1) {
              summary[`p50_ms_100_${design}`] = row.p50_ms;
              summary[`p99_ms_100_${design}`] = row.p99_ms;
            }
          }
        }
      } finally {
        await api.close();
      }
    }
    log('== 1k-row batch run started by `scoreline run` until its output is committed ==');
    const batchMs = await batchThroughCli(stack.address, projectDir);
    const row: Row = { case: 'batch-1k', rows: 1000, ms: round(batchMs) };
    results.push(row);
    emit(row);
    summary.batch_1k_ms = round(batchMs);
  } finally {
    if (workerProcess) {
      await client.close();
      workerProcess.kill('SIGTERM');
      await new Promise((r) => workerProcess.once('exit', r));
    }
    await stack.stop();
  }
  // The headline numbers are the served design's (the first).
  summary.design = runDesigns[0];
  summary.worker = topology;
  summary.p50_ms_100 = summary[`p50_ms_100_${runDesigns[0]}`];
  summary.p99_ms_100 = summary[`p99_ms_100_${runDesigns[0]}`];
  Object.assign(summary, { target_p50_ms_100: 25, target_p99_ms_100: 100, target_batch_1k_ms: 1000 });
  if (json) emit(summary);
  else process.stdout.write(`\n${formatTable(results)}\n\n${formatTable([summary])}\n`);
}
