/**
 * Bounded session caches on real ONNX Runtime sessions: the process-wide SessionCache (LRU, evicted
 * sessions released, never one inside a run) and the inference threads' own caches (loaded by sha256).
 */
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../src/errors';
import { LocalModelStore, type LoadedModel } from '../../src/models/store';
import { InferencePool } from '../../src/scoring/pool';
import { DEFAULT_MODEL_CACHE, modelCacheSize, runModel, SessionCache, withSession, type ScoringSession } from '../../src/scoring/session';
import type { BuiltTensor } from '../../src/scoring/tensor';
import { DEMO_MODELS, FIXTURE_MODELS } from '../helpers/project';

const store = new LocalModelStore(FIXTURE_MODELS);
let perFeature: LoadedModel;
let double: LoadedModel;
let zipmap: LoadedModel;

beforeAll(async () => {
  perFeature = await store.resolve('per-feature@champion');
  double = await store.resolve('double-input@champion');
  zipmap = await store.resolve('zipmap-clf@champion');
});

/** per-feature: score = 0.5*age - 0.25*tenure + 0.125*spend + 1. */
const perFeatureInput = (): BuiltTensor[] => ['age', 'tenure', 'spend'].map((name, i) => ({ name, dtype: 'float32', dims: [2, 1], data: new Float32Array([8 * (i + 1), 0]) }));
/** double-input: y = x0 + 2*x1. */
const doubleInput = (): BuiltTensor[] => [{ name: 'x', dtype: 'float64', dims: [2, 2], data: new Float64Array([1.5, 0.25, 3, 4]) }];

/** An output column as plain numbers (these models output floats). */
const numbers = (column: unknown) => Array.from(column as ArrayLike<number>);

function spyRelease(s: ScoringSession) {
  return vi.spyOn(s.session, 'release');
}

describe('SessionCache', () => {
  it('SCORELINE_MODEL_CACHE sets the bound (default 8); nonsense is a config error', () => {
    expect(modelCacheSize({})).toBe(DEFAULT_MODEL_CACHE);
    expect(DEFAULT_MODEL_CACHE).toBe(8);
    expect(modelCacheSize({ SCORELINE_MODEL_CACHE: '3' })).toBe(3);
    expect(() => modelCacheSize({ SCORELINE_MODEL_CACHE: '0' })).toThrow(ConfigError);
    expect(() => modelCacheSize({ SCORELINE_MODEL_CACHE: 'lots' })).toThrow(/SCORELINE_MODEL_CACHE=lots: expected a whole number of sessions ≥ 1/);
  });

  it('keeps at most maxSessions, releasing the least recently used', async () => {
    const cache = new SessionCache({ maxSessions: 2 });
    const a = await cache.get(perFeature);
    const b = await cache.get(double);
    const releaseA = spyRelease(a);
    const releaseB = spyRelease(b);
    expect(await cache.get(perFeature)).toBe(a); // a hit: now b is the least recently used
    await cache.get(zipmap);
    expect(cache.size).toBe(2);
    expect(cache.evictions).toBe(1);
    expect(releaseB).toHaveBeenCalledTimes(1);
    expect(releaseA).not.toHaveBeenCalled();
    // Evicted means reloaded on the next use: a new session object.
    expect(await cache.get(double)).not.toBe(b);
    expect(releaseA).toHaveBeenCalledTimes(1); // a was now the least recently used
    await cache.close();
  });

  it('never releases a session inside a run; it goes once the run is done and the cache is over its bound', async () => {
    const cache = new SessionCache({ maxSessions: 1 });
    const a = await cache.get(perFeature);
    const releaseA = spyRelease(a);
    await withSession(a, async () => {
      await cache.get(double);
      await cache.get(zipmap);
      expect(releaseA).not.toHaveBeenCalled(); // in use: kept, the cache is over its bound meanwhile
      expect(cache.size).toBe(2); // a (in use) and zipmap (the newest); double was idle and evicted
    });
    expect(releaseA).toHaveBeenCalledTimes(1);
    expect(cache.size).toBe(1);
    await cache.close();
  });

  it('a session evicted after being handed out still scores (reopened for that run, released after)', async () => {
    const cache = new SessionCache({ maxSessions: 1 });
    const a = await cache.get(perFeature);
    const first = a.session;
    await cache.get(double); // evicts and releases a: idle, not the newest
    expect(cache.size).toBe(1);
    const out = await runModel(a, perFeatureInput(), 2);
    expect(numbers(out.get('score'))).toEqual([0.5 * 8 - 0.25 * 16 + 0.125 * 24 + 1, 1]);
    expect(a.session).not.toBe(first);
    // Not in the cache any more: the reopened session is released again as soon as the run is done.
    const releases = vi.spyOn((ort.InferenceSession as unknown as { prototype: ort.InferenceSession }).prototype, 'release');
    try {
      await runModel(a, perFeatureInput(), 2);
      expect(releases).toHaveBeenCalledTimes(1);
      expect(releases.mock.contexts[0]).toBe(a.session);
    } finally {
      releases.mockRestore();
    }
    await cache.close();
  });
});

describe('InferencePool thread caches', () => {
  let pool: InferencePool;
  afterAll(() => pool?.close());

  it('load by sha256, keep cacheSize sessions per thread, and still score every model correctly', async () => {
    pool = new InferencePool({ size: 1, cacheSize: 1 });
    const cache = new SessionCache({ maxSessions: 4 });
    const pf = await cache.get(perFeature);
    const dbl = await cache.get(double);
    for (let i = 0; i < 3; i++) {
      expect(numbers((await pool.run(pf, perFeatureInput(), 2)).get('score'))).toEqual([4, 1]);
      expect(numbers((await pool.run(dbl, doubleInput(), 2)).get('y'))).toEqual([2, 11]);
    }
    // One thread, one cached session; every switch of model evicted (and released) the other.
    expect(pool.cacheStats()).toEqual([{ sessions: 1, evictions: 5 }]);
    await cache.close();
  });
});

describe('InferencePool row slices', () => {
  const pools: InferencePool[] = [];
  afterAll(() => Promise.all(pools.map((p) => p.close())));

  it('a chunk scored in slices of batchRows rows equals the chunk scored whole, in order', async () => {
    const mlp = await new LocalModelStore(DEMO_MODELS).resolve('churn-mlp@champion');
    const cache = new SessionCache({ maxSessions: 4 });
    const rows = 10_001; // slices of 4,096 rows: 4,096 + 4,096 + 1,809
    const x = new Float32Array(rows * 32).map((_, i) => Math.sin(i * 0.37) * 3);
    const input = (): BuiltTensor[] => [{ name: mlp.manifest.inputs[0].name, dtype: 'float32', dims: [rows, 32], data: x.slice() }];
    const [sliced, whole] = [new InferencePool({ size: 1, batchRows: 4096 }), new InferencePool({ size: 1, batchRows: 0 })];
    pools.push(sliced, whole);
    const session = await cache.get(mlp);
    const a = await sliced.run(session, input(), rows);
    const b = await whole.run(session, input(), rows);
    expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
    for (const [column, values] of b) {
      expect(Array.from(a.get(column) as ArrayLike<number>), column).toEqual(Array.from(values as ArrayLike<number>));
      expect((a.get(column) as ArrayLike<number>).length).toBe(rows);
    }
    // And the slices are real: per-feature models (three [n, 1] inputs) too, across an odd boundary.
    const pf = await cache.get(perFeature);
    const three = new InferencePool({ size: 1, batchRows: 3 });
    pools.push(three);
    const n = 7;
    const feeds = (): BuiltTensor[] => ['age', 'tenure', 'spend'].map((name, i) => ({ name, dtype: 'float32', dims: [n, 1], data: Float32Array.from({ length: n }, (_, r) => r * (i + 1)) }));
    const expected = Array.from({ length: n }, (_, r) => 0.5 * r - 0.25 * 2 * r + 0.125 * 3 * r + 1);
    expect(numbers((await three.run(pf, feeds(), n)).get('score'))).toEqual(expected);
    await cache.close();
  });
});

