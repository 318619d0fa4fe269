/**
 * The CLI as a user runs it: the compiled `bin/scoreline.js` in child processes, against a real Temporal
 * dev server and worker. Asserts exit codes, the --json contract and what lands on disk.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Stack } from '../../src/dev/stack';
import { cleanup, copyModels, demoData, query, REPO, startTestStack, tempProject } from '../helpers/project';

const BIN = join(REPO, 'bin', 'scoreline.js');
const DATE = '2026-11-01';
let project: string;
let stack: Stack;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  json?: Record<string, unknown>;
}

function scoreline(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: project, env: { ...process.env, TEMPORAL_ADDRESS: stack?.address ?? '127.0.0.1:1', ...env }, timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        const last = stdout.trim().split('\n').at(-1) ?? '';
        let json: Record<string, unknown> | undefined;
        try {
          json = JSON.parse(last);
        } catch {
          json = undefined;
        }
        resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr, json });
      },
    );
  });
}

const PIPELINE = `
name: churn-e2e
source: { kind: parquet, path: "data/customers/ds={{ ds }}/*.parquet", key: [customer_id] }
model: churn-mlp@champion
sink: { kind: parquet, path: out/churn_scores }
chunk_rows: 4096
parallelism: 4
`;

beforeAll(async () => {
  project = tempProject('scoreline-e2e-');
  copyModels(project);
  await demoData(project, [DATE], 10_000);
  mkdirSync(join(project, 'pipelines'));
  writeFileSync(join(project, 'pipelines', 'churn.yaml'), PIPELINE);
  writeFileSync(join(project, 'pipelines', 'broken.yaml.txt'), 'not a pipeline');
  writeFileSync(join(project, 'bad.yaml'), PIPELINE.replace('sink: { kind: parquet, path: out/churn_scores }', 'sink: { kind: parquet }'));
  stack = await startTestStack(project);
});

afterAll(async () => {
  await stack?.stop();
  cleanup(project);
});

describe('scoreline CLI', () => {
  it('--help documents the commands', async () => {
    const r = await scoreline(['--help']);
    expect(r.code).toBe(0);
    for (const cmd of ['demo', 'dev', 'worker', 'run', 'status', 'runs', 'cancel', 'validate', 'models', 'sql', 'setup']) expect(r.stdout).toContain(cmd);
    const run = await scoreline(['run', '--help']);
    expect(run.stdout).toMatch(/--date <YYYY-MM-DD>/);
    expect(run.stdout).toMatch(/--set <key=value>/);
    expect(run.stdout).toMatch(/--no-wait/);
  });

  it('a reader that goes away (`scoreline … | head`) ends the command quietly, not with a stack trace', async () => {
    const child = spawn(process.execPath, [BIN, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy(); // the pipe's reader is gone before anything is written
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(stderr).not.toMatch(/EPIPE|Unhandled 'error' event/);
    expect(code).toBe(0);
  });

  it('validate checks config, model and source without running', async () => {
    const ok = await scoreline(['validate', 'pipelines/churn.yaml', '--date', DATE, '--json']);
    expect(ok.code).toBe(0);
    expect(ok.json).toMatchObject({ valid: true, pipeline: 'churn-e2e', model: 'churn-mlp:1', rows: 10_000, chunks: 3 });
    const bad = await scoreline(['validate', 'bad.yaml']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('bad.yaml: sink.path: required (expected string)');
    const noData = await scoreline(['validate', 'pipelines/churn.yaml', '--date', '2026-01-01']);
    expect(noData.code).toBe(2);
    expect(noData.stderr).toMatch(/no input rows for churn-e2e on 2026-01-01/);
    const noDataJson = await scoreline(['validate', 'pipelines/churn.yaml', '--date', '2026-01-01', '--json']);
    expect(noDataJson.code).toBe(2);
    expect(noDataJson.json).toMatchObject({ valid: false, pipeline: 'churn-e2e', logical_date: '2026-01-01', error: expect.stringMatching(/no input rows for churn-e2e on 2026-01-01/) });
  });

  it('run --json succeeds, and status / runs list / sql see the run', async () => {
    const r = await scoreline(['run', 'pipelines/churn.yaml', '--date', DATE, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ status: 'succeeded', rows_in: 10_000, rows_out: 10_000, pipeline: 'churn-e2e', logical_date: DATE, model: 'churn-mlp:1' });
    expect(r.json!.output).toBe(join(project, 'out', 'churn_scores', `ds=${DATE}`));
    const runId = String(r.json!.run_id);

    const status = await scoreline(['status', runId, '--json']);
    expect(status.code).toBe(0);
    expect(status.json).toMatchObject({ run_id: runId, temporal_status: 'COMPLETED', phase: 'succeeded', rows_out: 10_000, chunks: '3/3' });
    expect(status.json!.progress).toEqual({ chunks_done: 3, chunks_total: 3, rows_done: 10_000, rows_planned: 10_000 });

    const list = await scoreline(['runs', 'list', '--pipeline', 'churn-e2e', '--json']);
    expect(list.stdout).toContain(runId);
    const noSuchDay = await scoreline(['runs', 'list', '--date', '2026-11-45']);
    expect(noSuchDay.code).toBe(2);
    expect(noSuchDay.stderr).toMatch(/date: expected a calendar date YYYY-MM-DD, got "2026-11-45"/);
    const reversed = await scoreline(['runs', 'list', '--from', '2026-11-05', '--to', '2026-11-01']);
    expect(reversed.code).toBe(2);
    expect(reversed.stderr).toMatch(/from 2026-11-05 is after to 2026-11-01/);

    const sql = await scoreline(['sql', 'SELECT count(*) AS n, count(DISTINCT run_id) AS runs FROM churn_scores', '--json']);
    expect(sql.code, sql.stderr).toBe(0);
    expect(sql.json).toEqual({ n: 10_000, runs: 1 });
    const audit = await scoreline(['sql', `SELECT status, rows_out FROM scoreline_runs WHERE run_id = '${runId}'`, '--json']);
    expect(audit.json).toEqual({ status: 'succeeded', rows_out: 10_000 });
    // Dates and timestamps as ISO text, not JavaScript's Date strings, in JSON and in the table.
    const when = await scoreline(['sql', 'SELECT ds, max(scored_at) AS scored_at FROM churn_scores GROUP BY ds', '--json']);
    expect(when.json!.ds).toBe(DATE);
    expect(String(when.json!.scored_at)).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect((await scoreline(['sql', 'SELECT ds FROM churn_scores LIMIT 1'])).stdout).toContain(DATE);
    // Timestamps' dates and hours in UTC whatever the machine's zone; a zoneless TIMESTAMP printed without Z.
    const at = `TIMESTAMPTZ '2026-11-29 23:30:00+00'`;
    const tz = await scoreline(['sql', `SELECT hour(${at}) AS h, ${at}::DATE AS d, ${at}::TIMESTAMP AS naive`, '--json'], { TZ: 'Asia/Tokyo' });
    expect(tz.json).toEqual({ h: 23, d: '2026-11-29', naive: '2026-11-29T23:30:00.000' });
    // One JSON type per column: a BIGINT column with a value beyond 2^53 is text throughout.
    const big = await scoreline(['sql', 'SELECT * FROM (VALUES (1::BIGINT, 1::BIGINT), (9007199254740993::BIGINT, 2::BIGINT)) t(b, s) ORDER BY s', '--json']);
    expect(big.stdout.trim().split('\n').map((l) => JSON.parse(l))).toEqual([{ b: '1', s: 1 }, { b: '9007199254740993', s: 2 }]);
  });

  it('a failed run exits 1 with the error in the JSON summary', async () => {
    const r = await scoreline(['run', 'pipelines/churn.yaml', '--date', '2026-01-01', '--json']);
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ status: 'failed' });
    expect(String(r.json!.error)).toMatch(/plan failed: no input rows/);
  });

  it('--set overrides reach the run; bad overrides are usage errors', async () => {
    const r = await scoreline(['run', 'churn-e2e', '--date', DATE, '--set', 'model=churn-gbt:1', '--set', 'sink.path=out/gbt_scores', '--json'], {
      SCORELINE_PIPELINES_DIR: 'pipelines',
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ model: 'churn-gbt:1', output: join(project, 'out', 'gbt_scores', `ds=${DATE}`) });
    const bad = await scoreline(['run', 'pipelines/churn.yaml', '--set', 'chunk_rows=-5']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/chunk_rows/);
  });

  it('models add / list / show / alias manage the store', async () => {
    const add = await scoreline([
      'models', 'add', join(project, 'models', 'churn-mlp', '1', 'model.onnx'),
      '--name', 'churn-mlp', '--manifest', join(project, 'models', 'churn-mlp', '1', 'scoreline.model.yaml'),
      '--models-dir', 'models',
    ]);
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout).toMatch(/registered churn-mlp:2/);
    const alias = await scoreline(['models', 'alias', 'churn-mlp', 'challenger', '2', '--models-dir', 'models']);
    expect(alias.code).toBe(0);
    expect(alias.stdout).toBe('churn-mlp@challenger → 2\n');
    const again = await scoreline(['models', 'alias', 'churn-mlp', 'challenger', '2', '--models-dir', 'models', '--json']);
    expect(again.json).toMatchObject({ name: 'churn-mlp', alias: 'challenger', to: '2', changed: false });
    const list = await scoreline(['models', 'list', '--models-dir', 'models', '--json']);
    expect(list.stdout).toContain('"versions":"1, 2"');
    const show = await scoreline(['models', 'show', 'churn-mlp@challenger', '--models-dir', 'models', '--json']);
    expect(show.json).toMatchObject({ name: 'churn-mlp', version: '2', aliases: ['challenger'] });
    const wrong = await scoreline(['models', 'add', join(project, 'models', 'churn-mlp', '1', 'model.onnx'), '--name', 'x', '--manifest', join(REPO, 'test', 'fixtures', 'models', 'per-feature', '1', 'scoreline.model.yaml'), '--models-dir', 'models']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/manifest does not match the model/);
  });

  it('models register (guessing the manifest) / promote / rollback / show / history', async () => {
    const m = (...args: string[]) => scoreline(['models', ...args, '--models-dir', 'lifecycle'], { SCORELINE_USER: 'e2e-user' });
    const onnx = join(project, 'models', 'churn-gbt', '1', 'model.onnx');
    const dry = await m('register', onnx, '--name', 'churn', '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/# Guessed from the model; edit the column names/);
    expect(dry.stdout).toMatch(/input "features" \[N, 32\] ← columns f00 … f31 \(GUESSED/);
    // The printed manifest, edited, registers as is.
    writeFileSync(join(project, 'edited.yaml'), dry.stdout.replace('tensor: label\n    column: label', 'tensor: label\n    column: churn_label'));
    const one = await m('register', onnx, '--name', 'churn', '--manifest', 'edited.yaml', '--alias', 'champion');
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toMatch(/^registered churn:1 \(sha256 ea5b7026.*\) as @champion/);
    const two = await m('register', join(project, 'models', 'churn-mlp', '1', 'model.onnx'), '--name', 'churn');
    expect(two.stdout).toMatch(/registered churn:2[\s\S]*manifest guessed from the model[\s\S]*probabilities_1 = probabilities\[:, 1\]/);
    const promoted = await m('promote', 'churn', '2');
    expect(promoted.stdout).toMatch(/churn@champion: 1 → 2 \(promote by e2e-user at .*\); runs started from now on use churn:2, runs already running keep their version/);
    const show = await m('show', 'churn');
    expect(show.stdout).toMatch(/^churn:2 \(@champion\)/);
    expect(show.stdout).toMatch(/registered {2}\S+ by e2e-user/);
    expect(show.stdout).toMatch(/alias history:\n.*@champion {2}\(unset\) → 1 {2}promote by e2e-user\n.*@champion {2}1 → 2 {2}promote by e2e-user/);
    expect((await m('show', 'churn:1', '--json')).json).toMatchObject({ version: '1', outputs: [{ column: 'churn_label' }, { column: 'probabilities_1' }] });
    expect((await m('rollback', 'churn')).stdout).toMatch(/churn@champion: 2 → 1 \(rollback by e2e-user/);
    const none = await m('rollback', 'churn');
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/error: cannot roll back churn@champion: there is no previous target/);
    const typo = await m('history', 'chrun');
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/error: model "chrun" not found in model store .*\(known: churn\)/);
    const history = await m('history', 'churn', '--json');
    expect(history.stdout.trim().split('\n').map((l) => JSON.parse(l).action)).toEqual(['promote', 'promote', 'rollback']);
    const list = await m('list');
    expect(list.stdout).toMatch(/churn\s+1, 2\s+champion→1/);
    const help = await scoreline(['models', '--help']);
    for (const cmd of ['register|add', 'list', 'show', 'promote', 'rollback', 'history', 'alias']) expect(help.stdout).toContain(cmd);
    const notOnnx = await m('register', join(project, 'pipelines', 'churn.yaml'), '--name', 'junk');
    expect(notOnnx.code).toBe(2);
    expect(notOnnx.stderr).toMatch(/churn\.yaml is not a model ONNX Runtime can load, so nothing was registered/);
    // The command's own --version, not scoreline's (which used to print 0.1.0 and register nothing).
    const seven = await m('register', onnx, '--name', 'churn', '--version', '7');
    expect(seven.code, seven.stderr).toBe(0);
    expect(seven.stdout).toMatch(/registered churn:7 /);
    expect((await scoreline(['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('a run that cannot reach Temporal is a clear usage error', async () => {
    const r = await scoreline(['run', 'pipelines/churn.yaml', '--date', DATE], { TEMPORAL_ADDRESS: '127.0.0.1:1' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot reach Temporal at 127\.0\.0\.1:1/);
  });

  it('a run no worker picks up says so instead of waiting in silence', async () => {
    // A task queue nobody polls: the run is queued, and after a few seconds `run` says why nothing happens.
    const child = spawn(process.execPath, [BIN, 'run', 'pipelines/churn.yaml', '--date', '2026-11-20'], {
      cwd: project,
      env: { ...process.env, TEMPORAL_ADDRESS: stack.address, SCORELINE_TASK_QUEUE: 'nobody-polls' },
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      for (const deadline = Date.now() + 30_000; !stderr.includes('no worker polls') && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 200));
      expect(stderr).toContain('no worker polls task queue "nobody-polls" at ');
      expect(stderr).toContain('scoreline/churn-e2e/2026-11-20 waits until one does (scoreline worker, or scoreline dev)');
    } finally {
      child.kill();
      const client = new Client({ connection: await Connection.connect({ address: stack.address }) });
      await client.workflow.getHandle('scoreline/churn-e2e/2026-11-20').terminate('test: nobody polls its queue');
      await client.connection.close();
    }
  });

  it('no-wait returns ids at once; cancel stops the run', async () => {
    const started = await scoreline(['run', 'pipelines/churn.yaml', '--date', '2026-11-01', '--set', 'chunk_rows=100', '--set', 'parallelism=1', '--set', 'sink.path=out/cancelled', '--no-wait', '--json']);
    expect(started.code, started.stderr).toBe(0);
    expect(started.json).toMatchObject({ workflow_id: `scoreline/churn-e2e/${DATE}`, status: 'running' });
    const cancel = await scoreline(['cancel', String(started.json!.workflow_id)]);
    expect(cancel.code).toBe(0);
    let status: Ran | undefined;
    for (let i = 0; i < 50; i++) {
      status = await scoreline(['status', String(started.json!.run_id), '--json']);
      if (status.json?.temporal_status !== 'RUNNING') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(status!.json).toMatchObject({ temporal_status: 'CANCELLED' });
    const rows = await query(`SELECT count(*) AS n FROM glob('${project}/out/cancelled/**')`);
    expect(rows[0].n).toBe(0);
    const again = await scoreline(['cancel', String(started.json!.workflow_id)]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already cancelled: nothing to cancel/);
  });
});
