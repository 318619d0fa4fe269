/**
 * Blue/green for batch: a run pins the exact model version and sha256 when it is planned, so promoting
 * a new champion while it runs changes only the runs started afterwards. Driven step by step (fully
 * deterministic) and through the real Temporal dev server and worker (the promotion lands while the
 * run's chunks are still being scored, which the test checks rather than assumes).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import type { Stack } from '../../src/dev/stack';
import { LocalModelStore, readManifestDraft } from '../../src/models/store';
import { buildPlan, commitRun, scoreChunk } from '../../src/run/batch';
import type { RunContext } from '../../src/run/context';
import type { RunProgress } from '../../src/types';
import { runContextFor } from '../../src/worker';
import { cleanup, DEMO_MODELS, demoData, query, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

const ROWS = 20_000;
let project: string;
let store: LocalModelStore;
let v1: string;
let v2: string;

const pipeline = (sink: string, over: Partial<PipelineInput> = {}): PipelineInput => ({
  name: 'churn-bluegreen',
  source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
  model: 'churn@champion',
  sink: { kind: 'parquet', path: `out/${sink}` },
  chunk_rows: 2000,
  parallelism: 2,
  ...over,
});

/** model_version / model_sha256 of every output row of a partition, counted. */
const versionsIn = (output: string) =>
  query(`SELECT model_version, model_sha256, count(*) AS n FROM read_parquet('${output}/*.parquet') GROUP BY ALL ORDER BY model_version`);

beforeAll(async () => {
  project = tempProject('scoreline-bluegreen-');
  // churn:1 = the tree ensemble, churn:2 = the MLP: different bytes, different predictions.
  store = new LocalModelStore(join(project, 'models'));
  for (const from of ['churn-gbt', 'churn-mlp']) {
    const dir = join(DEMO_MODELS, from, '1');
    await store.register({ modelPath: join(dir, 'model.onnx'), name: 'churn', manifest: readManifestDraft(join(dir, 'scoreline.model.yaml')), by: 'test' });
  }
  v1 = (await store.load('churn', '1')).pin.sha256;
  v2 = (await store.load('churn', '2')).pin.sha256;
  await demoData(project, ['2026-11-01', '2026-11-02', '2026-11-03', '2026-11-04'], ROWS, 1000);
});

afterAll(() => cleanup(project));

describe('a promotion between plan and scoring (steps driven directly)', () => {
  let ctx: RunContext;
  beforeAll(() => {
    ctx = runContextFor({ address: 'unused', projectDir: project, modelsDir: store.root });
  });
  afterAll(() => ctx.sessions.close());

  it('every chunk of the planned run scores with the pinned version; the next plan takes the new champion', async () => {
    await store.promote('churn', '1');
    const raw = pipeline('stepped');
    const config = parsePipeline(raw, 'test');
    const date = '2026-11-01';
    const run = { runId: 'stepped-1', workflowId: 'wf', pipeline: config.name, logicalDate: date, trigger: 'test' as const };
    const plan = await buildPlan(ctx, { input: { pipeline: config.name, config: raw, date }, run });
    expect(plan.model).toMatchObject({ version: '1', sha256: v1, ref: 'churn@champion' });
    expect(plan.chunks.length).toBeGreaterThan(2);

    await store.promote('churn', '2'); // the run is planned, no chunk has been scored yet

    const stats = [];
    for (const chunk of plan.chunks) stats.push(await scoreChunk(ctx, { run: plan.run, config, model: plan.model, chunk }));
    const commit = await commitRun(ctx, { run: plan.run, config, staged: stats.map((s) => ({ index: s.index, rows: s.rowsOut, file: s.stagedFile })) });
    expect(await versionsIn(commit.output)).toEqual([{ model_version: '1', model_sha256: v1, n: ROWS }]);

    const next = await buildPlan(ctx, { input: { pipeline: config.name, config: raw, date }, run: { ...run, runId: 'stepped-2' } });
    expect(next.model).toMatchObject({ version: '2', sha256: v2 });
  });
});

describe('on Temporal: promote while a run is scoring, then roll back', () => {
  let stack: Stack;
  let client: ScorelineClient;
  beforeAll(async () => {
    ({ stack, client } = await startTestEnv(project, { modelsDir: store.root }));
  });
  afterAll(async () => {
    await stopTestEnv({ client, stack });
  });

  const start = (raw: PipelineInput, date: string) => client.startRun({ config: parsePipeline(raw, 'test'), raw, date, trigger: 'test' });

  it('the running run keeps v1 in every output row; a run started after the promotion uses v2', async () => {
    await store.promote('churn', '1');
    // 50 chunks of 400 rows, one at a time: long enough that the promotion lands mid-run (checked below).
    const slow = pipeline('during', { chunk_rows: 400, parallelism: 1 });
    const handle = await start(slow, '2026-11-02');
    let progress: RunProgress | undefined;
    const until = Date.now() + 60_000;
    while (!(progress?.phase === 'scoring' && progress.model)) {
      if (Date.now() > until) throw new Error(`run did not reach scoring: ${JSON.stringify(progress)}`);
      await new Promise((r) => setTimeout(r, 20));
      progress = await client.progress(handle);
    }
    expect(progress.model).toMatchObject({ version: '1', sha256: v1 });

    await store.promote('churn', '2', { by: 'release-bot' });
    const afterPromote = (await client.progress(handle))!;
    // The promotion really happened while chunks were still to be scored.
    expect(afterPromote.phase).toBe('scoring');
    expect(afterPromote.chunksDone).toBeLessThan(afterPromote.chunksTotal);

    const result = await client.wait(handle);
    expect(result.status).toBe('succeeded');
    expect(result.model).toMatchObject({ name: 'churn', version: '1', sha256: v1 });
    expect(await versionsIn(result.output!)).toEqual([{ model_version: '1', model_sha256: v1, n: ROWS }]);

    const later = await client.wait(await start(pipeline('after'), '2026-11-03'));
    expect(later.model).toMatchObject({ version: '2', sha256: v2 });
    expect(await versionsIn(later.output!)).toEqual([{ model_version: '2', model_sha256: v2, n: ROWS }]);

    // The audit rows say which version each run scored with.
    const audit = await query(
      `SELECT DISTINCT run_id, model_version, model_sha256 FROM read_parquet('${project}/out/scoreline_runs/*.parquet') WHERE run_id IN ('${result.runId}', '${later.runId}') ORDER BY model_version`,
    );
    expect(audit.map((r) => [r.run_id, r.model_version, r.model_sha256])).toEqual([
      [result.runId, '1', v1],
      [later.runId, '2', v2],
    ]);

    // Rollback: the next run is back on v1; the history says who did what.
    await store.rollback('churn', { by: 'oncall' });
    const rolledBack = await client.wait(await start(pipeline('rolled-back'), '2026-11-04'));
    expect(rolledBack.model).toMatchObject({ version: '1', sha256: v1 });
    expect((await store.history('churn')).slice(-2).map((e) => [e.action, e.from, e.to, e.by])).toEqual([
      ['promote', '1', '2', 'release-bot'],
      ['rollback', '2', '1', 'oncall'],
    ]);
  });
});
