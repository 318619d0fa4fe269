/**
 * The two long-running entry points a new user meets first: `scoreline demo` and `scoreline dev`,
 * run as child processes exactly as the README says (smaller data, temporary project directory).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPortFree } from '../../src/cli/ports';
import { getFreePort } from '../../src/dev/dev-server';
import { ensureTemporalCli } from '../../src/dev/temporal-cli';
import { cleanup, demoData, query, REPO, tempProject } from '../helpers/project';

const BIN = join(REPO, 'bin', 'scoreline.js');
let project: string;
let env: NodeJS.ProcessEnv;

function start(args: string[], extraEnv: NodeJS.ProcessEnv = {}): { child: ChildProcess; out: () => string; err: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: project, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out: () => stdout, err: () => stderr, exit };
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  project = tempProject('scoreline-demo-');
  mkdirSync(join(project, 'examples'));
  cpSync(join(REPO, 'examples', 'pipelines'), join(project, 'examples', 'pipelines'), { recursive: true });
  cpSync(join(REPO, 'examples', 'models'), join(project, 'examples', 'models'), { recursive: true });
  // Use the suite's Temporal CLI instead of installing one into the temporary project.
  const cli = await ensureTemporalCli({ projectDir: REPO });
  env = { ...process.env, TEMPORAL_CLI: cli.path };
});

afterAll(() => cleanup(project));

describe('scoreline demo', () => {
  it('generates data, runs through Temporal and ends with the JSON summary line', async () => {
    const demo = start(['demo', '--json', '--rows', '30000', '--date', '2026-11-03']);
    expect(await demo.exit, demo.err()).toBe(0);
    const last = JSON.parse(demo.out().trim().split('\n').at(-1)!);
    expect(last).toMatchObject({ status: 'succeeded', rows_in: 30_000, rows_out: 30_000, pipeline: 'churn-demo', logical_date: '2026-11-03', model: 'churn-gbt:1' });
    expect(last.output).toBe(join(project, 'out', 'churn_scores', 'ds=2026-11-03'));
    expect(typeof last.run_id).toBe('string');
    expect(demo.err()).toMatch(/generating demo data/);
    expect(demo.err()).toMatch(/web UI +http:\/\/127\.0\.0\.1:\d+\/namespaces\/default\/workflows\//);
    expect(existsSync(join(project, '.scoreline', 'temporal.db'))).toBe(true);
    const rows = await query(`SELECT count(*) AS n FROM read_parquet('${last.output}/*.parquet')`);
    expect(rows[0].n).toBe(30_000);

    // A second demo reuses the data and replaces the partition: still 30k rows, a new run id.
    const again = start(['demo', '--json', '--rows', '30000', '--date', '2026-11-03']);
    expect(await again.exit, again.err()).toBe(0);
    const second = JSON.parse(again.out().trim().split('\n').at(-1)!);
    expect(again.err()).toMatch(/demo data: .* \(exists, 30,000 rows\)/);
    expect(second.run_id).not.toBe(last.run_id);
    expect((await query(`SELECT count(*) AS n, min(run_id) AS r FROM read_parquet('${last.output}/*.parquet')`))[0]).toEqual({ n: 30_000, r: second.run_id });
  });
});

describe.each([
  { source: 'bigquery', output: 'bigquery://scoreline-local.scoreline.churn_scores (ds=2026-11-05)', ready: /bqemulator ready at http:\/\/127\.0\.0\.1:\d+/ },
  { source: 'snowflake', output: 'snowflake://fakesnow/SCORELINE.PUBLIC.CHURN_SCORES (ds=2026-11-05)', ready: /fakesnow ready at http:\/\/127\.0\.0\.1:\d+/ },
])('scoreline demo --source $source', ({ source, output, ready }) => {
  it('loads the demo table into the local emulator, scores it there, same JSON summary line', async () => {
    const demo = start(['demo', '--source', source, '--json', '--rows', '3000', '--date', '2026-11-05'], { SCORELINE_TOOLS_DIR: REPO });
    expect(await demo.exit, demo.err()).toBe(0);
    const last = JSON.parse(demo.out().trim().split('\n').at(-1)!);
    expect(last).toMatchObject({ status: 'succeeded', rows_in: 3000, rows_out: 3000, pipeline: `churn-demo-${source}`, logical_date: '2026-11-05', output });
    expect(demo.err()).toMatch(ready);
  });
});

describe('scoreline dev', () => {
  it('serves runs until Ctrl-C, then stops server and worker cleanly', async () => {
    const port = await getFreePort();
    await demoData(project, ['2026-11-04'], 5000);
    writeFileSync(
      join(project, 'dev.yaml'),
      `name: dev-check\nsource: { kind: parquet, path: "data/customers/ds={{ ds }}/*.parquet", key: [customer_id] }\nmodel: churn-mlp@champion\nmodels_dir: examples/models\nsink: { kind: parquet, path: out/dev_scores }\n`,
    );
    const dev = start(['dev', '--port', String(port), '--headless', '--db', join(project, '.scoreline', 'dev.db')]);
    await waitFor(() => /ready: TEMPORAL_ADDRESS=/.test(dev.err()), '"ready" from scoreline dev');

    const run = start(['run', 'dev.yaml', '--date', '2026-11-04', '--json'], { TEMPORAL_ADDRESS: `127.0.0.1:${port}` });
    expect(await run.exit, run.err()).toBe(0);
    expect(JSON.parse(run.out().trim().split('\n').at(-1)!)).toMatchObject({ status: 'succeeded', rows_out: 5000 });

    dev.child.kill('SIGINT');
    expect(await dev.exit).toBe(0);
    expect(dev.err()).toMatch(/stopping/);
    // The server went with it: the port is free again.
    expect(await isPortFree(port)).toBe(true);
  });
});
