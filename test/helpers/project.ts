/**
 * Test fixtures on real parts: a temporary project directory with generated Parquet data, the
 * committed demo models, and a real Temporal dev server + worker (headless, random ports, temp SQLite).
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import * as ort from 'onnxruntime-node';
import { ScorelineClient } from '../../src/client';
import { generateDemoData } from '../../src/demo/generate-data';
import { startStack, type Stack } from '../../src/dev/stack';
import { packageRoot } from '../../src/paths';
import { TASK_QUEUE } from '../../src/search-attributes';

export const REPO = packageRoot(__dirname);
export const DEMO_MODELS = join(REPO, 'examples', 'models');
export const FIXTURE_MODELS = join(REPO, 'test', 'fixtures', 'models');
export const FEATURES = Array.from({ length: 32 }, (_, i) => `f${String(i).padStart(2, '0')}`);

export function tempProject(prefix = 'scoreline-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A copy of the model stores, so a test may break a model without touching the committed files. */
export function copyModels(projectDir: string, from = DEMO_MODELS, name = 'models'): string {
  const dir = join(projectDir, name);
  cpSync(from, dir, { recursive: true });
  return dir;
}

export async function demoData(projectDir: string, dates: string[], rowsPerDate: number, rowGroupSize = 4096): Promise<string> {
  const dir = join(projectDir, 'data', 'customers');
  await generateDemoData({ dir, dates, rowsPerDate, rowGroupSize, seed: 7 });
  return dir;
}

export async function startTestStack(projectDir: string, worker: { modelsDir?: string; pipelinesDir?: string; maxConcurrentActivities?: number; chunksPerChild?: number } = {}): Promise<Stack> {
  return startStack({
    projectDir,
    toolsDir: REPO, // one Temporal CLI install for the whole suite
    dbFilename: join(projectDir, '.scoreline', 'temporal.db'),
    headless: true,
    worker: { modelsDir: worker.modelsDir ?? join(projectDir, 'models'), pipelinesDir: worker.pipelinesDir ?? join(projectDir, 'pipelines'), ...worker },
  });
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** The suite's usual pair: a test stack on the project and a client of it. */
export async function startTestEnv(projectDir: string, worker: Parameters<typeof startTestStack>[1] = {}): Promise<{ stack: Stack; client: ScorelineClient }> {
  const stack = await startTestStack(projectDir, worker);
  try {
    return { stack, client: await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE }) };
  } catch (err) {
    await stack.stop();
    throw err;
  }
}

/** Undo startTestEnv (and remove the project), whatever part of a beforeAll got done. */
export async function stopTestEnv(env: { client?: ScorelineClient; stack?: Stack; project?: string }): Promise<void> {
  await env.client?.close();
  await env.stack?.stop();
  if (env.project) cleanup(env.project);
}

/** Run SQL in a throwaway in-memory DuckDB and return plain JS rows. */
export async function query(sql: string): Promise<Record<string, unknown>[]> {
  const instance = await DuckDBInstance.create(':memory:');
  const con = await instance.connect();
  try {
    const rows = (await con.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
    // Counts and int64 keys come back as BigInt; numbers are easier to assert on (and exact below 2^53).
    return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'bigint' ? Number(v) : v])));
  } finally {
    con.closeSync();
    instance.closeSync();
  }
}

/**
 * The reference: the same rows scored directly with onnxruntime-node, independent of Scoreline's code
 * path (own read via DuckDB, own tensor layout). Returns key → class-1 probability.
 */
export async function directScores(parquetGlob: string, modelPath: string, keyColumn = 'customer_id'): Promise<Map<number, number>> {
  const rows = await query(`SELECT ${keyColumn} AS k, ${FEATURES.join(', ')} FROM read_parquet('${parquetGlob}') ORDER BY k`);
  const data = new Float32Array(rows.length * FEATURES.length);
  rows.forEach((r, i) => FEATURES.forEach((f, j) => (data[i * FEATURES.length + j] = Number(r[f]))));
  const session = await ort.InferenceSession.create(modelPath);
  try {
    const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', data, [rows.length, FEATURES.length]) }, ['probabilities']);
    const probs = out.probabilities.data as Float32Array;
    return new Map(rows.map((r, i) => [Number(r.k), probs[i * 2 + 1]]));
  } finally {
    await session.release();
  }
}
