/**
 * Fingerprint-aware backfills on the real Temporal dev server with a real worker: every run records its
 * input fingerprint and model sha256; `run --dates` and `schedule backfill` rescore only the dates whose
 * input or model changed, say so in a printed plan, and --force / --dry-run do what they say.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { stringify } from 'yaml';
import { startApiServer } from '../../src/api/server';
import { main } from '../../src/cli/main';
import { ScorelineClient } from '../../src/client';
import { parsePipeline } from '../../src/config/pipeline';
import type { Stack } from '../../src/dev/stack';
import { SCHEDULED_RUN_WORKFLOW, type ScheduledRunResult } from '../../src/schedules/types';
import { TASK_QUEUE } from '../../src/search-attributes';
import { LocalModelStore, readManifestDraft } from '../../src/models/store';
import { cleanup, DEMO_MODELS, demoData, query, startTestStack, tempProject } from '../helpers/project';

const ROWS = 2_000;
const LONG = 400_000;
const DATES = ['2026-11-01', '2026-11-02', '2026-11-03'];
const RANGE = `${DATES[0]}..${DATES[2]}`;

let project: string;
let stack: Stack;
let store: LocalModelStore;
let file: string;
let v1: string;
let v2: string;

const pipeline = {
  name: 'churn-bf',
  source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
  model: 'churn@champion',
  sink: { kind: 'parquet', path: 'out/bf_scores' },
  chunk_rows: 1000,
  parallelism: 2,
  schedule: { cron: '0 2 * * *', timezone: 'UTC', paused: true },
};

/** `scoreline …` in this process, against the test stack and project, capturing output and exit code. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((stdout += String(chunk)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((stderr += String(chunk)), true));
  const saved = { address: process.env.TEMPORAL_ADDRESS, project: process.env.SCORELINE_PROJECT_DIR };
  process.env.TEMPORAL_ADDRESS = stack.address;
  process.env.SCORELINE_PROJECT_DIR = project;
  process.exitCode = undefined;
  try {
    await main(['node', 'scoreline', ...args]);
    return { code: Number(process.exitCode ?? 0), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
    process.exitCode = undefined;
    for (const [k, v] of [['TEMPORAL_ADDRESS', saved.address], ['SCORELINE_PROJECT_DIR', saved.project]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** The latest succeeded run of each date (run id, model sha256, fingerprint), from the audit table. */
async function succeeded(): Promise<Record<string, { run_id: string; model_sha256: string; input_fingerprint: string | null }>> {
  const rows = await query(
    `SELECT logical_date, arg_max(run_id, finished_at) AS run_id, arg_max(model_sha256, finished_at) AS model_sha256, arg_max(input_fingerprint, finished_at) AS input_fingerprint
     FROM read_parquet('${project}/out/scoreline_runs/*.parquet', union_by_name = true) WHERE pipeline = 'churn-bf' AND status = 'succeeded' GROUP BY logical_date`,
  );
  return Object.fromEntries(rows.map((r) => [String(r.logical_date), r as never]));
}

/** Every run id the audit table knows for the pipeline (any status). */
async function allRunIds(): Promise<string[]> {
  const rows = await query(`SELECT DISTINCT run_id FROM read_parquet('${project}/out/scoreline_runs/*.parquet', union_by_name = true) WHERE pipeline = 'churn-bf' ORDER BY 1`);
  return rows.map((r) => String(r.run_id));
}

/** run_id of the rows in each date's output partition. */
async function outputRuns(): Promise<Record<string, string[]>> {
  const rows = await query(`SELECT ds::VARCHAR AS ds, list(DISTINCT run_id ORDER BY run_id) AS runs FROM read_parquet('${project}/out/bf_scores/**/*.parquet') GROUP BY ALL`);
  return Object.fromEntries(rows.map((r) => [String(r.ds), [...(r.runs as string[])]]));
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 240_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Wait until each of `dates` has a succeeded run other than the one in `before`. */
async function rescored(before: Awaited<ReturnType<typeof succeeded>>, dates: string[]) {
  return waitFor(`new runs for ${dates.join(', ')}`, async () => {
    const now = await succeeded();
    return dates.every((d) => now[d] && now[d].run_id !== before[d]?.run_id) ? now : undefined;
  });
}

/** Rewrite a date's input files with the same bytes: same rows, new modification time. */
async function rewriteInput(date: string): Promise<void> {
  const dir = join(project, 'data', 'customers', `ds=${date}`);
  for (const f of readdirSync(dir)) {
    const path = join(dir, f);
    const bytes = readFileSync(path);
    await new Promise((res) => setTimeout(res, 20));
    writeFileSync(path, bytes);
  }
}

/** The plan line of a date: `2026-11-01  unchanged  skip   same input …`. */
const planLine = (stdout: string, date: string) => stdout.split('\n').find((l) => l.trim().startsWith(date)) ?? '';

beforeAll(async () => {
  project = tempProject('scoreline-backfill-');
  // churn:1 = the tree ensemble, churn:2 = the MLP: a promotion changes the model sha256.
  store = new LocalModelStore(join(project, 'models'));
  for (const from of ['churn-gbt', 'churn-mlp']) {
    const dir = join(DEMO_MODELS, from, '1');
    await store.register({ modelPath: join(dir, 'model.onnx'), name: 'churn', manifest: readManifestDraft(join(dir, 'scoreline.model.yaml')), by: 'test' });
  }
  await store.promote('churn', '1');
  v1 = (await store.load('churn', '1')).pin.sha256;
  v2 = (await store.load('churn', '2')).pin.sha256;
  await demoData(project, DATES, ROWS, 1000);
  mkdirSync(join(project, 'pipelines'), { recursive: true });
  file = join(project, 'pipelines', 'churn-bf.yaml');
  writeFileSync(file, stringify(pipeline));
  stack = await startTestStack(project);
}, LONG);

afterAll(async () => {
  await stack?.stop();
  cleanup(project);
});

describe('fingerprint-aware backfills', () => {
  it('run --dates scores new dates and records input fingerprint and model sha256', async () => {
    const r = await cli(['run', file, '--dates', RANGE]);
    expect(r.stderr).not.toContain('error');
    expect(r.code).toBe(0);
    for (const d of DATES) expect(planLine(r.stdout, d)).toMatch(/new\s+score\s+no succeeded run yet/);
    expect(r.stdout).toContain('scoring 3 dates');
    const runs = await succeeded();
    for (const d of DATES) {
      expect(runs[d].model_sha256).toBe(v1);
      expect(runs[d].input_fingerprint).toMatch(/^parquet:v1:[0-9a-f]{64}$/);
    }
    expect(new Set(DATES.map((d) => runs[d].input_fingerprint)).size).toBe(3);
  }, LONG);

  it('over unchanged dates scores nothing and says so: no new run ids, output untouched', async () => {
    const before = { ids: await allRunIds(), out: await outputRuns() };
    const r = await cli(['run', file, '--dates', RANGE]);
    expect(r.code).toBe(0);
    for (const d of DATES) expect(planLine(r.stdout, d)).toMatch(/unchanged\s+skip\s+same input and model as run /);
    expect(r.stdout).toContain('nothing to score: all 3 dates are unchanged');
    // The schedule's backfill says the same.
    expect((await cli(['schedule', 'apply', file])).code).toBe(0);
    const b = await cli(['schedule', 'backfill', 'churn-bf', '--from', DATES[0], '--to', DATES[2]]);
    expect(b.code).toBe(0);
    expect(b.stdout).toContain('nothing to score: all 3 dates are unchanged');
    // So does the API's: the same planning, the same flags.
    const client = await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE });
    const api = await startApiServer({ client, token: 'bf', port: 0, projectDir: project, log: () => undefined });
    try {
      const post = async (body: object) => {
        const res = await fetch(`${api.url}/v1/schedules/churn-bf/backfill`, { method: 'POST', headers: { authorization: 'Bearer bf', 'content-type': 'application/json' }, body: JSON.stringify(body) });
        return { status: res.status, json: (await res.json()) as { started: boolean; dry_run: boolean; runs: unknown[]; plan: { dates: { state: string; run: boolean }[] } } };
      };
      const skipped = await post({ from: DATES[0], to: DATES[2] });
      expect(skipped.status).toBe(200);
      expect(skipped.json).toMatchObject({ started: false, dry_run: false, runs: [] });
      expect(skipped.json.plan.dates.map((d) => [d.state, d.run])).toEqual(DATES.map(() => ['unchanged', false]));
      const forced = await post({ from: DATES[0], to: DATES[2], force: true, dry_run: true });
      expect(forced.json).toMatchObject({ started: false, dry_run: true });
      expect(forced.json.runs).toHaveLength(3);
      expect(forced.json.plan.dates.map((d) => [d.state, d.run])).toEqual(DATES.map(() => ['unchanged', true]));
    } finally {
      await api.close();
      await client.close();
    }
    await new Promise((res) => setTimeout(res, 2_000)); // a wrongly started run would have begun by now
    expect(await allRunIds()).toEqual(before.ids);
    expect(await outputRuns()).toEqual(before.out);
  }, LONG);

  it('after one date\'s input file is rewritten, only that date is rescored (--dry-run first starts nothing)', async () => {
    await rewriteInput(DATES[1]);
    const before = await succeeded();
    const ids = await allRunIds();
    const dry = await cli(['run', file, '--dates', RANGE, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(planLine(dry.stdout, DATES[1])).toMatch(/changed\s+score\s+input fingerprint differs/);
    expect(planLine(dry.stdout, DATES[0])).toMatch(/unchanged\s+skip/);
    expect(dry.stdout).toContain('would score 1 date, skipping 2 unchanged');
    expect(dry.stdout).toContain('dry run: nothing was started');
    expect(await allRunIds()).toEqual(ids);

    const r = await cli(['schedule', 'backfill', 'churn-bf', '--from', DATES[0], '--to', DATES[2]]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('scoring 1 date, skipping 2 unchanged');
    expect(r.stdout).toMatch(/backfill scoreline\/churn-bf .*: 1 run\n/);
    const after = await rescored(before, [DATES[1]]);
    expect(after[DATES[0]].run_id).toBe(before[DATES[0]].run_id);
    expect(after[DATES[2]].run_id).toBe(before[DATES[2]].run_id);
    expect(after[DATES[1]].input_fingerprint).not.toBe(before[DATES[1]].input_fingerprint);
    expect((await outputRuns())[DATES[1]]).toEqual([after[DATES[1]].run_id]);
  }, LONG);

  it('a promoted model version (new sha256) rescores every date', async () => {
    await store.promote('churn', '2');
    const before = await succeeded();
    const dry = await cli(['schedule', 'backfill', 'churn-bf', '--from', DATES[0], '--to', DATES[2], '--dry-run']);
    expect(dry.code).toBe(0);
    for (const d of DATES) expect(planLine(dry.stdout, d)).toMatch(new RegExp(`changed\\s+score\\s+model sha256 differs \\(${v1.slice(0, 12)} → ${v2.slice(0, 12)}\\)`));
    expect(dry.stdout).toContain('dry run: nothing was started');
    const r = await cli(['run', file, '--dates', RANGE]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('scoring 3 dates');
    const after = await rescored(before, DATES);
    for (const d of DATES) expect(after[d].model_sha256).toBe(v2);
  }, LONG);

  it('--force rescores every date, even unchanged ones', async () => {
    const before = await succeeded();
    const check = await cli(['run', file, '--dates', RANGE, '--dry-run']);
    expect(check.stdout).toContain('nothing to score');
    const r = await cli(['schedule', 'backfill', 'churn-bf', '--from', DATES[0], '--to', DATES[2], '--force']);
    expect(r.code).toBe(0);
    for (const d of DATES) expect(planLine(r.stdout, d)).toMatch(/unchanged\s+score\s+same input and model/);
    expect(r.stdout).toContain('scoring 3 dates');
    const after = await rescored(before, DATES);
    for (const d of DATES) expect(after[d].input_fingerprint).toBe(before[d].input_fingerprint);
    const forced = await cli(['run', file, '--date', DATES[0], '--force', '--json']);
    expect(forced.code).toBe(0);
    const json = JSON.parse(forced.stdout.trim().split('\n').at(-1)!);
    expect(json.plan.dates).toMatchObject([{ logical_date: DATES[0], state: 'unchanged', run: true }]);
    expect(json.runs).toMatchObject([{ status: 'succeeded' }]);
  }, LONG);

  it('rescore_window: a scheduled run also rescores the previous days that changed, and only those', async () => {
    await rewriteInput(DATES[0]); // late data for the first day; the second stays as it was
    const before = await succeeded();
    const { schedule: _schedule, ...rest } = pipeline;
    const config = JSON.parse(JSON.stringify(parsePipeline({ ...rest, rescore_window: '2d' }, 'test')));
    const sc = await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE });
    try {
      // What the schedule starts, by hand, for the third date: it re-checks the two days before it.
      const handle = await sc.client.workflow.start(SCHEDULED_RUN_WORKFLOW, {
        taskQueue: TASK_QUEUE,
        workflowId: `scoreline/churn-bf/scheduled-test-${Date.now()}`,
        args: [{ pipeline: 'churn-bf', config, date: DATES[2], trigger: 'schedule' }],
      });
      const result = (await handle.result()) as ScheduledRunResult;
      expect(result).toMatchObject({ outcome: 'ran', logicalDate: DATES[2], result: { status: 'succeeded' } });
      if (result.outcome !== 'ran') throw new Error('not ran');
      expect(result.rescored).toMatchObject([
        { logicalDate: DATES[0], outcome: 'succeeded', reason: 'input fingerprint differs', workflowId: `scoreline/churn-bf/${DATES[0]}` },
        { logicalDate: DATES[1], outcome: 'unchanged' },
      ]);
    } finally {
      await sc.close();
    }
    const after = await succeeded();
    expect(after[DATES[0]].run_id).not.toBe(before[DATES[0]].run_id);
    expect(after[DATES[1]].run_id).toBe(before[DATES[1]].run_id);
    expect(after[DATES[2]].run_id).not.toBe(before[DATES[2]].run_id); // the scheduled date itself always runs
  }, LONG);
});
