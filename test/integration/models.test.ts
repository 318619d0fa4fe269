/**
 * The scoring contract on real ONNX models: per-feature [N,1] inputs, float64 tensors, ZipMap outputs left
 * unfetched, manifests that do not match the model, missing files. Runs the real plan/score/commit steps
 * (the same functions the activities call) without a Temporal server.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import { ModelError } from '../../src/errors';
import { buildPlan, commitRun, scoreChunk } from '../../src/run/batch';
import type { RunContext } from '../../src/run/context';
import type { RunRef } from '../../src/types';
import { runContextFor } from '../../src/worker';
import { cleanup, copyModels, FEATURES, FIXTURE_MODELS, query, tempProject } from '../helpers/project';

const DATE = '2026-11-01';
let project: string;
let ctx: RunContext;

const run = (pipeline: string): RunRef => ({ runId: `test-${pipeline}-${Math.random().toString(36).slice(2)}`, workflowId: 'wf', pipeline, logicalDate: DATE, trigger: 'test' });

async function score(raw: PipelineInput) {
  const config = parsePipeline(raw, 'test');
  const plan = await buildPlan(ctx, { input: { pipeline: config.name, config: raw, date: DATE }, run: run(config.name) });
  const stats = [];
  for (const chunk of plan.chunks) stats.push(await scoreChunk(ctx, { run: plan.run, config, model: plan.model, chunk }));
  const commit = await commitRun(ctx, { run: plan.run, config, staged: stats.map((s) => ({ index: s.index, rows: s.rowsOut, file: s.stagedFile })) });
  return { plan, stats, rows: await query(`SELECT * FROM read_parquet('${commit.output}/*.parquet') ORDER BY id`) };
}

beforeAll(async () => {
  project = tempProject();
  copyModels(project, FIXTURE_MODELS, 'fixtures');
  mkdirSync(join(project, 'data', `ds=${DATE}`), { recursive: true });
  await query(
    `COPY (SELECT range AS id, (20 + range % 50)::FLOAT AS age, (range % 7)::INTEGER AS tenure, (range * 0.5)::DOUBLE AS spend,
           (range / 3.0)::DOUBLE AS a, (range % 11)::BIGINT AS b FROM range(3000))
     TO '${project}/data/ds=${DATE}/part-0.parquet' (FORMAT parquet, ROW_GROUP_SIZE 1000)`,
  );
  ctx = runContextFor({ address: 'unused', projectDir: project, modelsDir: join(project, 'fixtures') });
});

afterAll(async () => {
  await ctx?.sessions.close();
  cleanup(project);
});

const base = (model: string, extra: Partial<PipelineInput> = {}): PipelineInput => ({
  name: 'fixture',
  source: { kind: 'parquet', path: 'data/ds={{ ds }}/*.parquet', key: ['id'] },
  model,
  sink: { kind: 'parquet', path: `out/${model.replace(/[@:]/g, '_')}` },
  chunk_rows: 700,
  ...extra,
});

describe('scoring contract', () => {
  it('feeds one [N,1] tensor per feature, mixing float, int and double source columns', async () => {
    const { rows, stats } = await score(base('per-feature@champion'));
    expect(rows).toHaveLength(3000);
    expect(stats.length).toBeGreaterThan(3); // 700-row chunks inside 1000-row row groups
    for (const r of rows) {
      const id = Number(r.id);
      const expected = 0.5 * (20 + (id % 50)) - 0.25 * (id % 7) + 0.125 * (id * 0.5) + 1;
      expect(Math.abs(Number(r.score) - Math.fround(expected))).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(expected)));
    }
  });

  it('feeds float64 tensors without narrowing', async () => {
    const { rows } = await score(base('double-input:1'));
    for (const r of rows) {
      const id = Number(r.id);
      expect(Number(r.y)).toBe(id / 3 + 2 * (id % 11));
    }
  });

  it('never fetches unmapped ZipMap outputs; labels equal direct ONNX Runtime', async () => {
    const dir = join(project, 'features', `ds=${DATE}`);
    mkdirSync(dir, { recursive: true });
    await query(`COPY (SELECT range AS id, ${FEATURES.map((f, i) => `sin(range * ${i + 1})::FLOAT AS ${f}`).join(', ')} FROM range(500)) TO '${dir}/part-0.parquet' (FORMAT parquet)`);
    const { rows } = await score(base('zipmap-clf@champion', { source: { kind: 'parquet', path: 'features/ds={{ ds }}/*.parquet', key: ['id'] } }));
    const session = await ort.InferenceSession.create(join(project, 'fixtures', 'zipmap-clf', '1', 'model.onnx'));
    const data = new Float32Array(500 * 32);
    for (let r = 0; r < 500; r++) for (let j = 0; j < 32; j++) data[r * 32 + j] = Math.fround(Math.sin(r * (j + 1)));
    const out = await session.run({ features: new ort.Tensor('float32', data, [500, 32]) }, ['output_label']);
    await session.release();
    const labels = Array.from(out.output_label.data as BigInt64Array, Number);
    expect(rows.map((r) => Number(r.predicted_label))).toEqual(labels);
    expect(new Set(labels).size).toBe(2); // both classes present: the comparison means something
  });

  it('keys come back exactly as stored, whatever their type', async () => {
    const dir = join(project, 'keys', `ds=${DATE}`);
    mkdirSync(dir, { recursive: true });
    await query(
      `COPY (SELECT (12345678901234567890 + range)::DECIMAL(20,0) AS id, DATE '2026-01-01' + range::INTEGER AS day,
             1.0::FLOAT AS age, 2.0::FLOAT AS tenure, 3.0::FLOAT AS spend FROM range(3)) TO '${dir}/part-0.parquet' (FORMAT parquet)`,
    );
    const { rows } = await score(base('per-feature@champion', { source: { kind: 'parquet', path: 'keys/ds={{ ds }}/*.parquet', key: ['id', 'day'] } }));
    expect(rows.map((r) => [String(r.id), String(r.day)])).toEqual([
      ['12345678901234567890', '2026-01-01'],
      ['12345678901234567891', '2026-01-02'],
      ['12345678901234567892', '2026-01-03'],
    ]);
  });

  it('output column names that collide with keys or contract columns are refused at plan time', async () => {
    const input = base('per-feature@champion', { source: { kind: 'parquet', path: 'data/ds={{ ds }}/*.parquet', key: ['id', 'score'] } });
    await expect(buildPlan(ctx, { input: { pipeline: 'fixture', config: input, date: DATE }, run: run('fixture') })).rejects.toThrow(
      /output column "score" is both a key column and a prediction column/,
    );
    // Names compare without case, as DuckDB and the warehouses do: a key DS would have renamed ds to ds_1.
    const upper = base('per-feature@champion', { source: { kind: 'parquet', path: 'data/ds={{ ds }}/*.parquet', key: ['id', 'DS'] } });
    await expect(buildPlan(ctx, { input: { pipeline: 'fixture', config: upper, date: DATE }, run: run('fixture') })).rejects.toThrow(
      /output column "ds" \/ "DS" is both a Scoreline contract column and a key column/,
    );
    // Under an error budget the keys also share the quarantine table with its reason column.
    const reason = base('per-feature@champion', { source: { kind: 'parquet', path: 'data/ds={{ ds }}/*.parquet', key: ['reason'] }, max_rejected: 5 });
    await expect(buildPlan(ctx, { input: { pipeline: 'fixture', config: reason, date: DATE }, run: run('fixture') })).rejects.toThrow(
      /output column "reason" is both a column of the quarantine table \(max_rejected\) and a key column/,
    );
  });

  it('a manifest that does not match the model fails before scoring', async () => {
    const attempt = buildPlan(ctx, { input: { pipeline: 'fixture', config: base('bad-shape@champion'), date: DATE }, run: run('fixture') });
    await expect(attempt).rejects.toThrow(ModelError);
    await expect(attempt).rejects.toThrow(/manifest does not match the model:[\s\S]*input "features" is not a model input \(model inputs: age, tenure, spend\)/);
  });

  it('a plan with more chunks than one run can track fails fast, saying which chunk_rows would fit', async () => {
    const dir = join(project, 'many', `ds=${DATE}`);
    mkdirSync(dir, { recursive: true });
    await query(`COPY (SELECT range AS id, 1.0::FLOAT AS age, 2.0::FLOAT AS tenure, 3.0::FLOAT AS spend FROM range(12000)) TO '${dir}/part-0.parquet' (FORMAT parquet)`);
    const input = base('per-feature@champion', { chunk_rows: 1, source: { kind: 'parquet', path: 'many/ds={{ ds }}/*.parquet', key: ['id'] } });
    await expect(buildPlan(ctx, { input: { pipeline: 'fixture', config: input, date: DATE }, run: run('fixture') })).rejects.toThrow(
      'pipeline fixture: 12000 chunks exceed the 10000 one run can track in its Temporal history; raise chunk_rows to at least 2 (now 1; 12000 rows)',
    );
  });

  it('a missing or invalid model file is a model error naming the path', async () => {
    const store = copyModels(project, FIXTURE_MODELS, 'broken');
    rmSync(join(store, 'per-feature', '1', 'model.onnx'));
    const input = base('per-feature@champion', { models_dir: 'broken' });
    await expect(buildPlan(ctx, { input: { pipeline: 'fixture', config: input, date: DATE }, run: run('fixture') })).rejects.toThrow(
      /model per-feature:1: missing .*broken\/per-feature\/1\/model\.onnx/,
    );
    // Garbage bytes whose hash the manifest agrees with: ONNX Runtime itself refuses them.
    const garbage = Buffer.from('not an onnx model');
    writeFileSync(join(store, 'double-input', '1', 'model.onnx'), garbage);
    const manifestPath = join(store, 'double-input', '1', 'scoreline.model.yaml');
    writeFileSync(manifestPath, readFileSync(manifestPath, 'utf8').replace(/sha256: .*/, `sha256: ${createHash('sha256').update(garbage).digest('hex')}`));
    await expect(
      buildPlan(ctx, { input: { pipeline: 'fixture', config: base('double-input@champion', { models_dir: 'broken' }), date: DATE }, run: run('fixture') }),
    ).rejects.toThrow(/ONNX Runtime cannot load/);
  });
});
