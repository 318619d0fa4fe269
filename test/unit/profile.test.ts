import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { profileColumn, profileMatrix, simdAvailable } from '../../src/profile/chunk';
import { REPO } from '../helpers/project';
import { compareProfiles, mergeColumn, mergeProfiles, psi, quantile, stdOf, type Profile } from '../../src/profile/sketch';

/** Deterministic normal(ish) values: Box–Muller over a small LCG. */
function normals(n: number, mean: number, std: number, seed = 1): Float64Array {
  let s = seed;
  const u = () => ((s = (s * 1103515245 + 12345) % 2147483648) + 1) / 2147483649;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = mean + std * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

function profileOf(values: ArrayLike<number>, chunks = 1): Profile {
  const size = Math.ceil(values.length / chunks);
  let merged: Profile | undefined;
  for (let start = 0; start < values.length; start += size) {
    const part = Array.from(values).slice(start, start + size);
    merged = mergeProfiles(merged, { columns: [profileColumn('x', 'feature', part, part.length)] });
  }
  return merged!;
}

describe('column profiles', () => {
  it('computes exact count, min, max, mean and std, skipping NaN', () => {
    const c = profileColumn('x', 'feature', new Float32Array([1, 2, NaN, 3, 4]), 5, 1, 0, 2);
    expect(c).toMatchObject({ count: 4, nulls: 2, min: 1, max: 4, mean: 2.5 });
    expect(stdOf(c)).toBeCloseTo(Math.sqrt(5 / 3), 12);
    expect(c.q[0]).toBe(1);
    expect(c.q[32]).toBe(4);
  });

  it('reads one column of a row-major tensor, and int64 predictions', () => {
    const tensor = new Float32Array([1, 10, 2, 20, 3, 30]);
    expect(profileColumn('b', 'feature', tensor, 3, 2, 1)).toMatchObject({ count: 3, min: 10, max: 30, mean: 20 });
    expect(profileColumn('label', 'prediction', new BigInt64Array([0n, 1n, 1n, 1n]), 4)).toMatchObject({ count: 4, mean: 0.75 });
    // Negative and large int64 values read exactly (two 32-bit halves), from an offset view too.
    const big = new BigInt64Array([7n, -3n, 2n ** 40n + 5n, -(2n ** 45n)]).subarray(1);
    expect(profileColumn('x', 'feature', big, 3)).toMatchObject({ count: 3, min: -(2 ** 45), max: 2 ** 40 + 5 });
  });

  it.each([
    ['3 columns', 3, (i: number) => i % 3 === 1 && i % 7 === 0],
    // Four columns at a time plus a rest; NaN only in some row blocks of column 5, none in 0–3, an all-NaN column 6.
    ['7 columns, NaN in some blocks', 7, (i: number) => (i % 7 === 5 && Math.floor(i / 7) % 1500 === 7) || i % 7 === 6],
    ['8 columns, NaN in a four-column group', 8, (i: number) => i % 8 === 2 && Math.floor(i / 8) >= 2500],
  ])('profiles a whole row-major tensor in one pass as column by column (%s)', (_, width, isNaN) => {
    const rows = 3000;
    const names = Array.from({ length: width }, (_, j) => `c${j}`);
    const nulls = names.map((_, j) => j);
    const tensor = new Float32Array(rows * width).map((_, i) => (isNaN(i) ? NaN : Math.sin(i) * (1 + (i % width))));
    const one = profileMatrix(names, 'feature', tensor, rows, width, nulls);
    // The WebAssembly SIMD kernel (float32, four columns at a time) and the JS loops give the same doubles.
    expect(simdAvailable()).toBe(true);
    expect(one).toEqual(profileMatrix(names, 'feature', tensor, rows, width, nulls, false));
    names.forEach((c, j) => {
      const { mean, m2, ...rest } = profileColumn(c, 'feature', tensor, rows, width, j, nulls[j]);
      expect(one[j]).toMatchObject(rest);
      if (mean === null) expect(one[j].mean).toBeNull();
      else expect(one[j].mean!).toBeCloseTo(mean, 12);
      expect(one[j].m2).toBeCloseTo(m2, 8);
    });
  });

  it('ships the SIMD kernel assembled from the current kernel.wat', async () => {
    // @ts-expect-error plain ESM script without types
    const { assembleKernel } = await import('../../scripts/build-kernel-wasm.mjs');
    const committed = readFileSync(join(REPO, 'src', 'profile', 'kernel-wasm.js'), 'utf8');
    expect(committed, 'src/profile/kernel-wasm.js is stale: run node scripts/build-kernel-wasm.mjs').toBe(await assembleKernel());
  });

  it('keeps the mean exact far from zero (shifted sums)', () => {
    const c = profileColumn('x', 'feature', [1e9 + 1, 1e9 + 2, 1e9 + 3], 3);
    expect(c.mean).toBe(1e9 + 2);
    expect(stdOf(c)).toBeCloseTo(1, 9);
  });

  it('merges chunks into the same moments as one pass, and close quantiles', () => {
    const values = normals(50_000, 5, 2);
    const whole = profileOf(values).columns[0];
    const merged = profileOf(values, 7).columns[0];
    expect(merged.count).toBe(whole.count);
    expect(merged.min).toBe(whole.min);
    expect(merged.max).toBe(whole.max);
    expect(merged.mean!).toBeCloseTo(whole.mean!, 9);
    expect(stdOf(merged)!).toBeCloseTo(stdOf(whole)!, 9);
    // N(5, 2) quantiles; 7 chunks sample ~7,000 rows, so ±0.15 is ~4 standard errors.
    const truth: [number, number][] = [[0.1, 2.437], [0.25, 3.651], [0.5, 5], [0.75, 6.349], [0.9, 7.563]];
    for (const [p, x] of truth) expect(Math.abs(quantile(merged.q, p) - x)).toBeLessThan(0.15);
  });

  it('an empty chunk merges as a no-op that still counts its NULLs', () => {
    const a = profileColumn('x', 'feature', [1, 2, 3], 3);
    const empty = profileColumn('x', 'feature', [], 0, 1, 0, 5);
    expect(mergeColumn(a, empty)).toMatchObject({ count: 3, nulls: 5, mean: 2 });
    expect(mergeColumn(empty, a)).toMatchObject({ count: 3, nulls: 5, mean: 2 });
  });
});

describe('drift', () => {
  const reference = profileOf(normals(40_000, 0, 1, 3), 4);

  it('PSI and mean shift stay low for a fresh sample of the same distribution', () => {
    const same = profileOf(normals(40_000, 0, 1, 99), 3);
    const [d] = compareProfiles(reference, same);
    expect(d.psi!).toBeLessThan(0.02);
    expect(d.meanShift!).toBeLessThan(0.05);
  });

  it('PSI crosses 0.2 for a half-std shift, and more for a larger one', () => {
    const shifted = profileOf(normals(40_000, 0.5, 1, 7), 3);
    const far = profileOf(normals(40_000, 1.5, 1, 7), 3);
    const near = psi(reference.columns[0], shifted.columns[0])!;
    expect(near).toBeGreaterThan(0.2);
    expect(psi(reference.columns[0], far.columns[0])!).toBeGreaterThan(near);
    expect(compareProfiles(reference, shifted)[0].meanShift!).toBeCloseTo(0.5, 1);
  });

  it('sees a change in spread that leaves the mean alone', () => {
    const wide = profileOf(normals(40_000, 0, 2, 11), 2);
    const [d] = compareProfiles(reference, wide);
    expect(d.meanShift!).toBeLessThan(0.05);
    expect(d.psi!).toBeGreaterThan(0.2);
  });

  it('merging chunks keeps a repeated value a jump: 1 chunk vs 2 of the same labels shows no drift', () => {
    const labels = Array.from({ length: 1000 }, (_, i) => (i < 700 ? 0 : 1));
    const one = profileOf(labels);
    const two = profileOf(labels, 2);
    expect(two.columns[0].q).toEqual(one.columns[0].q);
    expect(psi(one.columns[0], two.columns[0])!).toBeLessThan(0.001);
    // A point mass (imputed zeros, every 4th row: a period a sample every k-th row would alias with):
    // 1 chunk and 3 chunks of the same rows agree, far under any drift threshold (was 0.30).
    const mixed = Array.from({ length: 3000 }, (_, i) => (i % 4 === 0 ? 0 : Math.sin(i) * 5 + 10));
    expect(psi(profileOf(mixed).columns[0], profileOf(mixed, 3).columns[0])!).toBeLessThan(0.05);
    // Values far from zero keep their resolution (epoch seconds over one hour) and stay within [min, max].
    const epoch = Array.from({ length: 2000 }, (_, i) => 1712345678 + (i * 1.8));
    const q = profileOf(epoch).columns[0].q;
    expect(q.every((v, i) => i === 0 || v >= q[i - 1])).toBe(true);
    expect(q[31]).toBeLessThanOrEqual(q[32]);
    expect(new Set(q).size).toBeGreaterThan(30);
  });

  it('handles discrete columns (labels) through merged cut points', () => {
    const labels = (ones: number) => Array.from({ length: 1000 }, (_, i) => (i < ones ? 1 : 0));
    const ref = profileOf(labels(100));
    expect(compareProfiles(ref, profileOf(labels(100)))[0].psi!).toBeLessThan(0.01);
    expect(compareProfiles(ref, profileOf(labels(500)))[0].psi!).toBeGreaterThan(0.2);
  });

  it('has no PSI for a column without values, and compares only columns both sides have', () => {
    const empty: Profile = { columns: [profileColumn('x', 'feature', [], 0)] };
    expect(compareProfiles(reference, empty)[0]).toMatchObject({ psi: null, meanShift: null });
    expect(compareProfiles(reference, { columns: [profileColumn('y', 'feature', [1], 1)] })).toEqual([]);
  });
});
