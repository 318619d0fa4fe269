/**
 * Batch runs end to end on the real Temporal dev server and a real worker: Parquet → chunks → parallel
 * ONNX activities → one atomic commit → audit rows. Values are checked against direct onnxruntime-node.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import type { Stack } from '../../src/dev/stack';
import type { RunResult } from '../../src/types';
import { copyModels, demoData, directScores, query, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

const DATE = '2026-11-01';
const ROWS = 20_000;

let project: string;
let stack: Stack;
let client: ScorelineClient;

function pipeline(over: Partial<PipelineInput> = {}): PipelineInput {
  return {
    name: 'churn-it',
    source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
    model: 'churn-gbt@champion',
    sink: { kind: 'parquet', path: 'out/churn_scores' },
    chunk_rows: 5000,
    parallelism: 3,
    ...over,
  };
}

async function run(raw: PipelineInput, date = DATE): Promise<RunResult> {
  const config = parsePipeline(raw, 'test');
  const handle = await client.startRun({ config, raw, date, trigger: 'test' });
  return client.wait(handle);
}

async function auditRows(runId: string) {
  return query(
    `SELECT * FROM read_parquet('${project}/out/scoreline_runs/*.parquet') WHERE run_id = '${runId}' ORDER BY updated_at`,
  );
}

beforeAll(async () => {
  project = tempProject();
  copyModels(project);
  await demoData(project, [DATE, '2026-11-02'], ROWS);
  ({ stack, client } = await startTestEnv(project));
});

afterAll(async () => {
  await stopTestEnv({ client, stack, project });
});

describe('batch run', () => {
  it('scores every row once, with values equal to direct ONNX Runtime', async () => {
    const result = await run(pipeline());
    expect(result.status).toBe('succeeded');
    expect(result.rowsIn).toBe(ROWS);
    expect(result.rowsOut).toBe(ROWS);
    expect(result.chunks).toBe(Math.ceil(ROWS / 4096)); // 4096-row groups, packed up to 5000 rows → one per chunk
    expect(result.output).toBe(join(project, 'out', 'churn_scores', `ds=${DATE}`));

    const out = await query(`SELECT * FROM read_parquet('${result.output}/*.parquet') ORDER BY customer_id`);
    expect(out).toHaveLength(ROWS);
    expect(new Set(out.map((r) => r.customer_id)).size).toBe(ROWS);
    // The output contract.
    expect(Object.keys(out[0]).sort()).toEqual(
      ['churn_label', 'churn_probability', 'customer_id', 'ds', 'model_name', 'model_sha256', 'model_version', 'run_id', 'scored_at'].sort(),
    );
    expect(out[0]).toMatchObject({ run_id: result.runId, model_name: 'churn-gbt', model_version: '1', model_sha256: result.model!.sha256 });
    // Its Parquet types, as every reader sees them (the constant text columns are written from one-value ENUMs).
    const types = await query(`SELECT DISTINCT name, type, converted_type FROM parquet_schema('${result.output}/*.parquet') WHERE name <> 'duckdb_schema' ORDER BY name`);
    expect(Object.fromEntries(types.map((t) => [t.name, `${t.type}/${t.converted_type ?? ''}`]))).toEqual({
      churn_label: 'INT64/INT_64',
      churn_probability: 'FLOAT/',
      customer_id: 'INT64/INT_64',
      ds: 'INT32/DATE',
      model_name: 'BYTE_ARRAY/UTF8',
      model_sha256: 'BYTE_ARRAY/UTF8',
      model_version: 'BYTE_ARRAY/UTF8',
      run_id: 'BYTE_ARRAY/UTF8',
      scored_at: 'INT64/TIMESTAMP_MICROS',
    });
    expect((out[0].ds as Date).toISOString().slice(0, 10)).toBe(DATE);

    const reference = await directScores(`${project}/data/customers/ds=${DATE}/*.parquet`, join(project, 'models', 'churn-gbt', '1', 'model.onnx'));
    let maxDiff = 0;
    for (const r of out) maxDiff = Math.max(maxDiff, Math.abs(Number(r.churn_probability) - reference.get(Number(r.customer_id))!));
    expect(maxDiff).toBeLessThanOrEqual(1e-6);

    const audit = await auditRows(result.runId);
    expect(audit.map((a) => a.status)).toEqual(['running', 'succeeded']);
    expect(audit[1]).toMatchObject({ pipeline: 'churn-it', logical_date: DATE, rows_in: ROWS, rows_out: ROWS, model_name: 'churn-gbt', trigger: 'test', error: null });
    const chunks = await query(`SELECT * FROM read_parquet('${project}/out/scoreline_run_chunks/${result.runId}/*.parquet') ORDER BY chunk_index`);
    expect(chunks).toHaveLength(result.chunks);
    expect(chunks.reduce((n, c) => n + Number(c.rows_out), 0)).toBe(ROWS);
    expect(chunks.every((c) => Number(c.infer_ms) > 0 && Number(c.read_ms) >= 0)).toBe(true);
  });

  it('rerunning a date replaces its partition and never duplicates rows', async () => {
    const first = await run(pipeline());
    const second = await run(pipeline({ model: 'churn-mlp@champion' }));
    expect(second.status).toBe('succeeded');
    const out = await query(`SELECT run_id, model_name, count(*) AS n, count(DISTINCT customer_id) AS k FROM read_parquet('${project}/out/churn_scores/**/*.parquet') WHERE ds = DATE '${DATE}' GROUP BY ALL`);
    expect(out).toEqual([{ run_id: second.runId, model_name: 'churn-mlp', n: ROWS, k: ROWS }]);
    expect(first.runId).not.toBe(second.runId);
    // Other dates are untouched by a date's rerun.
    const other = await run(pipeline(), '2026-11-02');
    expect(other.status).toBe('succeeded');
    const perDate = await query(`SELECT ds::VARCHAR AS ds, count(*) AS n FROM read_parquet('${project}/out/churn_scores/**/*.parquet') GROUP BY ALL ORDER BY ds`);
    expect(perDate).toEqual([
      { ds: '2026-11-01', n: ROWS },
      { ds: '2026-11-02', n: ROWS },
    ]);
  });

  it('append mode adds a run beside earlier ones instead of replacing', async () => {
    const sink = { kind: 'parquet' as const, path: 'out/churn_appended', mode: 'append' as const };
    const a = await run(pipeline({ sink }));
    const b = await run(pipeline({ sink }));
    const out = await query(`SELECT run_id, count(*) AS n FROM read_parquet('${project}/out/churn_appended/**/*.parquet') GROUP BY ALL ORDER BY run_id`);
    expect(out.map((r) => [r.run_id, r.n]).sort()).toEqual([[a.runId, ROWS], [b.runId, ROWS]].sort());
  });

  it('a cancelled run leaves no staged files and a "cancelled" audit row', async () => {
    const raw = pipeline({ chunk_rows: 200, parallelism: 1, sink: { kind: 'parquet', path: 'out/churn_cancel' } });
    const handle = await client.startRun({ config: parsePipeline(raw, 'test'), raw, date: DATE, trigger: 'test' });
    for (let i = 0; i < 200; i++) {
      const p = await client.progress(handle);
      if (p && p.chunksDone >= 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await handle.cancel();
    const result = await client.wait(handle);
    expect(result.status).toBe('cancelled');
    const staging = join(project, 'out', '.scoreline-staging', 'churn_cancel');
    expect(existsSync(staging) ? readdirSync(staging) : []).toEqual([]);
    expect(existsSync(join(project, 'out', 'churn_cancel', `ds=${DATE}`))).toBe(false);
    const audit = await auditRows(result.runId);
    expect(audit.at(-1)).toMatchObject({ status: 'cancelled', error: 'cancelled' });
  });

  it('a cancel while the last chunks are in flight still stops the run before its commit', async () => {
    // Chunks of ~0.5–1 s (tree model), two at a time. The cancel comes once the last chunk has started,
    // so there is no chunk left to schedule (which would fail in the cancelled scope); the chunks in flight
    // may finish anyway (an activity learns of a cancel only at a heartbeat), so the run itself must
    // notice it. It used to commit and report succeeded.
    const date = '2026-11-05';
    await demoData(project, [date], 240_000);
    const raw = pipeline({ chunk_rows: 80_000, parallelism: 2, sink: { kind: 'parquet', path: 'out/churn_cancel_inflight' } });
    const handle = await client.startRun({ config: parsePipeline(raw, 'test'), raw, date, trigger: 'test' });
    let progress: Awaited<ReturnType<typeof client.progress>>;
    for (let i = 0; i < 1000; i++) {
      progress = await client.progress(handle);
      if (progress && progress.chunksTotal > 2 && progress.chunksDone >= progress.chunksTotal - 2) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    await handle.cancel();
    expect(progress!.chunksDone).toBeLessThan(progress!.chunksTotal); // cancelled while chunks were in flight
    const result = await client.wait(handle);
    expect(result.status).toBe('cancelled');
    const staging = join(project, 'out', '.scoreline-staging', 'churn_cancel_inflight');
    expect(existsSync(staging) ? readdirSync(staging) : []).toEqual([]);
    expect(existsSync(join(project, 'out', 'churn_cancel_inflight', `ds=${date}`))).toBe(false);
    expect((await auditRows(result.runId)).at(-1)).toMatchObject({ status: 'cancelled', error: 'cancelled' });
  });

  it('a date that is already running is not started twice', async () => {
    const raw = pipeline({ chunk_rows: 500, parallelism: 1, sink: { kind: 'parquet', path: 'out/churn_once' } });
    const config = parsePipeline(raw, 'test');
    const handle = await client.startRun({ config, raw, date: '2026-11-02', trigger: 'test' });
    await expect(client.startRun({ config, raw, date: '2026-11-02', trigger: 'test' })).rejects.toThrow(/already running/);
    expect((await client.wait(handle)).status).toBe('succeeded');
  });
});

describe('bad input fails the run with a clear error and commits nothing', () => {
  async function expectFailure(raw: PipelineInput, message: RegExp, date = DATE) {
    const result = await run(raw, date);
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(message);
    const sinkDir = join(project, (raw.sink as { path: string }).path, `ds=${date}`);
    expect(existsSync(sinkDir)).toBe(false);
    const audit = await auditRows(result.runId);
    expect(audit.at(-1)?.status).toBe('failed');
    expect(String(audit.at(-1)?.error)).toMatch(message);
    return result;
  }

  it('missing partition (default on_empty: fail)', async () => {
    await expectFailure(pipeline({ sink: { kind: 'parquet', path: 'out/bad_missing' } }), /plan failed: no input rows for churn-it on 2026-10-01: nothing matches/, '2026-10-01');
  });

  it('missing partition with on_empty: succeed commits an empty partition', async () => {
    const raw = pipeline({ source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'], on_empty: 'succeed' }, sink: { kind: 'parquet', path: 'out/empty_ok' } });
    const result = await run(raw, '2026-10-01');
    expect(result).toMatchObject({ status: 'succeeded', rowsIn: 0, rowsOut: 0 });
    expect(existsSync(join(project, 'out', 'empty_ok', 'ds=2026-10-01', '_scoreline_commit.json'))).toBe(true);
  });

  it('corrupt Parquet file', async () => {
    const dir = join(project, 'data', 'corrupt', `ds=${DATE}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'part-0.parquet'), Buffer.from('PAR1 this is not really parquet at all PAR1'));
    await expectFailure(
      pipeline({ source: { kind: 'parquet', path: 'data/corrupt/ds={{ ds }}/*.parquet', key: ['customer_id'] }, sink: { kind: 'parquet', path: 'out/bad_corrupt' } }),
      /part-0\.parquet: not a readable Parquet file/,
    );
  });

  it('missing feature column', async () => {
    const dir = join(project, 'data', 'nof31', `ds=${DATE}`);
    mkdirSync(dir, { recursive: true });
    await query(`COPY (SELECT * EXCLUDE (f31) FROM read_parquet('${project}/data/customers/ds=${DATE}/*.parquet')) TO '${dir}/part-0.parquet' (FORMAT parquet)`);
    await expectFailure(
      pipeline({ source: { kind: 'parquet', path: 'data/nof31/ds={{ ds }}/*.parquet', key: ['customer_id'] }, sink: { kind: 'parquet', path: 'out/bad_column' } }),
      /missing column\(s\) "f31" needed by the model or key/,
    );
  });

  it('NULL features: error by default; skip and impute counted in the audit', async () => {
    const dir = join(project, 'data', 'nulls', `ds=${DATE}`);
    mkdirSync(dir, { recursive: true });
    await query(
      `COPY (SELECT * REPLACE (CASE WHEN customer_id % 100 = 7 THEN NULL ELSE f05 END AS f05) FROM read_parquet('${project}/data/customers/ds=${DATE}/*.parquet')) TO '${dir}/part-0.parquet' (FORMAT parquet)`,
    );
    const source = { kind: 'parquet' as const, path: 'data/nulls/ds={{ ds }}/*.parquet', key: ['customer_id'] };
    await expectFailure(pipeline({ source, sink: { kind: 'parquet', path: 'out/bad_nulls' } }), /feature column "f05" has \d+ NULL value\(s\)/);

    const skipped = await run(pipeline({ source, sink: { kind: 'parquet', path: 'out/skip_nulls' }, features: { nulls: 'skip' } }));
    expect(skipped.status).toBe('succeeded');
    expect(skipped.rowsRejected).toBe(ROWS / 100);
    expect(skipped.rowsOut).toBe(ROWS - ROWS / 100);
    const audit = await auditRows(skipped.runId);
    expect(audit.at(-1)).toMatchObject({ status: 'succeeded', rows_rejected: ROWS / 100, rows_out: ROWS - ROWS / 100 });
    const out = await query(`SELECT count(*) AS n FROM read_parquet('${project}/out/skip_nulls/**/*.parquet') WHERE customer_id % 100 = 7`);
    expect(out[0].n).toBe(0);

    const imputed = await run(pipeline({ source, sink: { kind: 'parquet', path: 'out/impute_nulls' }, features: { nulls: 'impute', impute_values: { f05: 0 } } }));
    expect(imputed).toMatchObject({ status: 'succeeded', rowsOut: ROWS, rowsRejected: 0, rowsImputed: ROWS / 100 });
    expect((await auditRows(imputed.runId)).at(-1)).toMatchObject({ status: 'succeeded', rows_imputed: ROWS / 100, rows_out: ROWS });
    const chunks = await query(`SELECT sum(rows_imputed) AS n FROM read_parquet('${project}/out/scoreline_run_chunks/${imputed.runId}/*.parquet')`);
    expect(chunks[0].n).toBe(ROWS / 100);
  });

  it('a cast that would lose data', async () => {
    const dir = join(project, 'data', 'bigint', `ds=${DATE}`);
    mkdirSync(dir, { recursive: true });
    await query(
      `COPY (SELECT * REPLACE ((CASE WHEN customer_id % 1000 = 123 THEN 99999999 ELSE 1 END)::BIGINT AS f03) FROM read_parquet('${project}/data/customers/ds=${DATE}/*.parquet')) TO '${dir}/part-0.parquet' (FORMAT parquet)`,
    );
    await expectFailure(
      pipeline({ source: { kind: 'parquet', path: 'data/bigint/ds={{ ds }}/*.parquet', key: ['customer_id'] }, sink: { kind: 'parquet', path: 'out/bad_cast' } }),
      /column "f03" row \d+: value 99999999 is an integer beyond 2\^24/,
    );
  });

  it('model file changed after registration (sha256 mismatch)', async () => {
    const models = copyModels(project, join(project, 'models'), 'models-tampered');
    writeFileSync(join(models, 'churn-mlp', '1', 'model.onnx'), Buffer.alloc(100, 1));
    await expectFailure(pipeline({ model: 'churn-mlp@champion', models_dir: 'models-tampered', sink: { kind: 'parquet', path: 'out/bad_sha' } }), /sha256 mismatch/);
  });

  it('unknown model and unset alias', async () => {
    await expectFailure(pipeline({ model: 'nope@champion', sink: { kind: 'parquet', path: 'out/bad_model' } }), /model "nope" not found in model store/);
    await expectFailure(pipeline({ model: 'churn-gbt@challenger', sink: { kind: 'parquet', path: 'out/bad_alias' } }), /alias "challenger" is not set/);
  });
});
