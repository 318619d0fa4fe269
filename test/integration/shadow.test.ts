/**
 * Shadow (champion/challenger) scoring on real parts: the Temporal dev server and worker, Parquet in
 * and out. One read, two sessions: the output table holds the champion's predictions, the shadow table
 * the challenger's, each equal to that model scored directly; the agreement stats in the result and the
 * audit row equal the ones computed from the two tables; a failed run leaves neither table touched.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resultJson, summaryLinesFor } from '../../src/cli/run-output';
import { stringify } from 'yaml';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import type { Stack } from '../../src/dev/stack';
import { ModelStore } from '../../src/models/store';
import type { RunResult } from '../../src/types';
import { copyModels, demoData, directScores, query, REPO, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

const DATE = '2026-11-05';
const ROWS = 12_000;

let project: string;
let stack: Stack;
let client: ScorelineClient;

function pipeline(name: string, over: Partial<PipelineInput> = {}): PipelineInput {
  return {
    name,
    source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
    model: 'churn-gbt@champion',
    shadow: 'churn-mlp@challenger',
    sink: { kind: 'parquet', path: `out/${name.replaceAll('-', '_')}` },
    chunk_rows: 5000,
    parallelism: 2,
    ...over,
  };
}

async function score(raw: PipelineInput): Promise<RunResult> {
  return client.wait(await client.startRun({ config: parsePipeline(raw, 'test'), raw, date: DATE, trigger: 'test' }));
}

function parquetFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.parquet'));
}

beforeAll(async () => {
  project = tempProject('scoreline-shadow-');
  copyModels(project);
  await new ModelStore(join(project, 'models')).setAlias('churn-mlp', 'challenger', '1');
  await demoData(project, [DATE], ROWS);
  ({ stack, client } = await startTestEnv(project));
});

afterAll(async () => {
  await stopTestEnv({ client, stack, project });
});

describe('shadow scoring', () => {
  it('scores every chunk with both models: output = champion, shadow table = challenger, each equal to direct ONNX Runtime', async () => {
    const result = await score(pipeline('shadow-daily'));
    expect(result.error).toBeUndefined();
    expect(result).toMatchObject({ status: 'succeeded', rowsOut: ROWS, chunks: 3 });
    expect(result.shadow!.model).toMatchObject({ name: 'churn-mlp', version: '1', ref: 'churn-mlp@challenger' });
    expect(result.shadow!.output).toBe(join(project, 'out', 'shadow_daily_shadow', `ds=${DATE}`));
    // Shown to the user: the run's summary line and `run --json`.
    expect(summaryLinesFor(result).join('\n')).toMatch(/shadow {2}churn-mlp:1 → .*shadow_daily_shadow\/ds=2026-11-05; agreement over [\d,]+ rows: .*churn_label \d+\.\d%/);
    expect(resultJson(result).shadow).toMatchObject({ model: 'churn-mlp:1', output: result.shadow!.output, agreement: { rows_compared: expect.any(Number) } });

    const input = `${project}/data/customers/ds=${DATE}/*.parquet`;
    for (const [table, model] of [['shadow_daily', 'churn-gbt'], ['shadow_daily_shadow', 'churn-mlp']] as const) {
      const rows = await query(`SELECT customer_id, churn_probability, model_name, model_version, run_id FROM read_parquet('${project}/out/${table}/ds=${DATE}/*.parquet')`);
      expect(rows).toHaveLength(ROWS);
      expect(new Set(rows.map((r) => `${r.model_name}:${r.model_version}:${r.run_id}`))).toEqual(new Set([`${model}:1:${result.runId}`]));
      const direct = await directScores(input, join(project, 'models', model, '1', 'model.onnx'));
      let maxDiff = 0;
      for (const r of rows) maxDiff = Math.max(maxDiff, Math.abs(Number(r.churn_probability) - direct.get(Number(r.customer_id))!));
      expect(maxDiff, table).toBeLessThanOrEqual(1e-6);
    }
  });

  it('agreement stats in the result, the audit row and `models compare` match the two tables', async () => {
    const [truth] = await query(
      `SELECT count(*) AS n, avg(abs(o.churn_probability - s.churn_probability)) AS mad, max(abs(o.churn_probability - s.churn_probability)) AS maxd,
              avg(CASE WHEN o.churn_label = s.churn_label THEN 1 ELSE 0 END) AS agree, corr(o.churn_probability, s.churn_probability) AS r
       FROM read_parquet('${project}/out/shadow_daily/ds=${DATE}/*.parquet') o JOIN read_parquet('${project}/out/shadow_daily_shadow/ds=${DATE}/*.parquet') s USING (customer_id)`,
    );
    const [audit] = await query(
      `SELECT run_id, shadow_model, shadow_model_sha256, shadow_output, shadow_agreement FROM read_parquet('${project}/out/scoreline_runs/*.parquet', union_by_name = true) WHERE pipeline = 'shadow-daily' AND status = 'succeeded'`,
    );
    expect(audit.shadow_model).toBe('churn-mlp:1');
    expect(audit.shadow_model_sha256).toMatch(/^[0-9a-f]{64}$/);
    const agreement = JSON.parse(String(audit.shadow_agreement));
    expect(agreement.rows_compared).toBe(Number(truth.n));
    const p = agreement.columns.churn_probability;
    expect(p.mean_abs_diff).toBeCloseTo(Number(truth.mad), 5);
    expect(p.max_abs_diff).toBeCloseTo(Number(truth.maxd), 5);
    expect(p.correlation).toBeCloseTo(Number(truth.r), 4);
    expect(agreement.columns.churn_label.agreement_rate).toBeCloseTo(Number(truth.agree), 5);

    const file = join(project, 'shadow-daily.yaml');
    writeFileSync(file, stringify(pipeline('shadow-daily')));
    const cli = (...args: string[]) =>
      promisify(execFile)(process.execPath, [join(REPO, 'bin', 'scoreline.js'), ...args], { cwd: project, env: { ...process.env, SCORELINE_PROJECT_DIR: project } }).then((r) => r.stdout);
    const text = await cli('models', 'compare', file, '--date', DATE);
    expect(text).toContain(`shadow-daily ${DATE}: run ${audit.run_id}, churn-gbt:1 vs shadow churn-mlp:1, 12,000 rows compared`);
    expect(text).toMatch(/^churn_probability\s+0\.\d+\s+0\.\d+\s+[\d.]+\s+0\.\d+/m);
    const json = JSON.parse(await cli('models', 'compare', file, '--date', DATE, '--json'));
    expect(json).toMatchObject({ run_id: audit.run_id, model: 'churn-gbt:1', shadow_model: 'churn-mlp:1', rows_compared: ROWS });
    expect(json.columns).toEqual(agreement.columns);
  });

  it('a run that fails leaves neither the output nor the shadow table touched', async () => {
    const dir = join(project, 'data', 'nulls', `ds=${DATE}`);
    mkdirSync(dir, { recursive: true });
    await query(
      `COPY (SELECT * REPLACE (CASE WHEN customer_id % 1000 = 7 THEN NULL ELSE f05 END AS f05) FROM read_parquet('${project}/data/customers/ds=${DATE}/*.parquet') ORDER BY customer_id) TO '${dir}/part-0.parquet' (FORMAT parquet)`,
    );
    const result = await score(pipeline('shadow-broken', { source: { kind: 'parquet', path: 'data/nulls/ds={{ ds }}/*.parquet', key: ['customer_id'] } }));
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/feature column "f05" has \d+ NULL/);
    expect(parquetFiles(join(project, 'out', 'shadow_broken'))).toEqual([]);
    expect(parquetFiles(join(project, 'out', 'shadow_broken_shadow'))).toEqual([]);
  });

  it('an unknown shadow model fails the plan naming it, before anything is read', async () => {
    const result = await score(pipeline('shadow-missing', { shadow: 'churn-nope@challenger' }));
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/^plan failed: .*model "churn-nope" not found/);
  });
});
