/**
 * Column profiles: what a run's features and predictions looked like, small enough to travel in
 * Temporal history and mergeable across chunks, so a run's profile costs one pass per chunk and no
 * second read.
 *
 * Per column: exact count, NULLs, min, max, mean and variance (Chan's parallel merge), plus a quantile
 * summary: the values at p = 0, 1/32, …, 1 of a stratified sample of at most 1,024 rows per
 * chunk. Chunks merge as a mixture of their piecewise-linear CDFs weighted by row count, which keeps
 * the summary 33 numbers however many chunks there are. Drift (PSI over the reference's deciles, and
 * a mean shift in reference standard deviations) compares two such summaries.
 *
 * Computing a chunk's profile is src/profile/kernel.js (plain JS, shared with the inference threads).
 * Pure and free of runtime imports: the workflow merges chunk profiles with it.
 */

export const QUANTILE_POINTS = 33; // p = i / 32
/** PSI bins: the reference's deciles. */
const PSI_BINS = 10;
/** Floor for an empty bin's share, so one empty bin gives a large but finite PSI. */
const PSI_FLOOR = 1e-4;

/**
 * Chunk profiles travel in the run's history (~600 bytes a column: 33 quantiles and 4 moments), so a run
 * profiles at most PROFILE_HISTORY_BYTES of them: every chunk while that fits, else every k-th chunk,
 * evenly spread — 411 chunks for the demo's 34 columns, fewer for wide models — and never more than 512.
 */
export const PROFILE_HISTORY_BYTES = 8 * 1024 * 1024;
const PROFILE_BYTES_PER_COLUMN = 600;
export const MAX_PROFILED_CHUNKS = 512;

/** Whether chunk `index` of `chunks` is profiled, for a model with `columns` features and predictions. */
export function profiledChunk(index: number, chunks: number, columns: number): boolean {
  const most = Math.max(1, Math.min(MAX_PROFILED_CHUNKS, Math.floor(PROFILE_HISTORY_BYTES / (Math.max(1, columns) * PROFILE_BYTES_PER_COLUMN))));
  return index % Math.ceil(chunks / most) === 0;
}

export type ProfileRole = 'feature' | 'prediction';

export interface ColumnProfile {
  column: string;
  role: ProfileRole;
  /** Values profiled: rows scored (after the NULL policy), so imputed values count. */
  count: number;
  /** NULLs in the source column (before the NULL policy). */
  nulls: number;
  /** null when count is 0 (or every value was NaN). */
  min: number | null;
  max: number | null;
  mean: number | null;
  /** Sum of squared deviations from the mean (variance × count). */
  m2: number;
  /** Quantiles at p = i/32 (QUANTILE_POINTS values), ascending; empty when count is 0. */
  q: number[];
}

export interface Profile {
  columns: ColumnProfile[];
}

/** Profiles and drift scores are matched by role and column (a feature and a prediction may share a name). */
export function profileKey(c: { role: string; column: string }): string {
  return `${c.role}/${c.column}`;
}

export function stdOf(c: Pick<ColumnProfile, 'count' | 'm2'>): number | null {
  return c.count > 1 ? Math.sqrt(Math.max(0, c.m2) / (c.count - 1)) : c.count === 1 ? 0 : null;
}





/** P(X ≤ x) under the piecewise-linear CDF through the quantile points. */
export function cdf(q: number[], x: number): number {
  const last = q.length - 1;
  if (x < q[0]) return 0;
  if (x >= q[last]) return 1;
  // Largest i with q[i] ≤ x (right-continuous at ties, so a point mass counts at its value).
  let lo = 0;
  let hi = last;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (q[mid] <= x) lo = mid;
    else hi = mid;
  }
  const width = q[lo + 1] - q[lo];
  const frac = width > 0 ? (x - q[lo]) / width : 0;
  return (lo + frac) / last;
}

/** The value at probability p under the piecewise-linear CDF through the quantile points. */
export function quantile(q: number[], p: number): number {
  const pos = Math.min(1, Math.max(0, p)) * (q.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(q.length - 1, lo + 1);
  return q[lo] + (q[hi] - q[lo]) * (pos - lo);
}

/** Merge two profiles of the same column (two chunks, or a run so far and one more chunk). */
export function mergeColumn(a: ColumnProfile, b: ColumnProfile): ColumnProfile {
  if (b.count === 0) return { ...a, nulls: a.nulls + b.nulls };
  if (a.count === 0) return { ...b, nulls: a.nulls + b.nulls };
  const n = a.count + b.count;
  const delta = b.mean! - a.mean!;
  const mean = a.mean! + (delta * b.count) / n;
  const m2 = a.m2 + b.m2 + (delta * delta * a.count * b.count) / n;
  return {
    column: a.column,
    role: a.role,
    count: n,
    nulls: a.nulls + b.nulls,
    min: Math.min(a.min!, b.min!),
    max: Math.max(a.max!, b.max!),
    mean,
    m2,
    q: mixQuantiles(a.q, a.count, b.q, b.count),
  };
}

/**
 * Quantiles of the mixture wa·F_a + wb·F_b: the mixture CDF is piecewise linear between the union of
 * both sets of points, so each target probability falls in one such segment and is interpolated there.
 */
function mixQuantiles(qa: number[], wa: number, qb: number[], wb: number): number[] {
  const points = [...new Set([...qa, ...qb])].sort((x, y) => x - y);
  const w = wa + wb;
  // At each point the mixture CDF jumps from its left limit to its value (a value many rows share is a
  // jump, not a slope); between points it is linear from one point's value to the next one's left limit.
  const right = points.map((x) => (wa * cdf(qa, x) + wb * cdf(qb, x)) / w);
  const left = points.map((x) => (wa * cdfBelow(qa, x) + wb * cdfBelow(qb, x)) / w);
  const out = new Array<number>(QUANTILE_POINTS);
  let j = 0;
  for (let i = 0; i < QUANTILE_POINTS; i++) {
    const p = i / (QUANTILE_POINTS - 1);
    while (j < points.length - 1 && right[j] < p) j++;
    if (j === 0 || p >= left[j] || left[j] === right[j - 1]) out[i] = points[j]; // inside the jump at points[j]
    else out[i] = points[j - 1] + ((points[j] - points[j - 1]) * (p - right[j - 1])) / (left[j] - right[j - 1]);
  }
  out[0] = points[0];
  out[QUANTILE_POINTS - 1] = points[points.length - 1];
  return out;
}

/** P(X < x): the left limit of `cdf` (differs from it where several quantile points share the value x). */
function cdfBelow(q: number[], x: number): number {
  const first = q.indexOf(x);
  return first < 0 ? cdf(q, x) : first / (q.length - 1);
}

/** Merge a chunk's profile into the run's (columns matched by role and name; new columns appended). */
export function mergeProfiles(into: Profile | undefined, add: Profile): Profile {
  if (!into) return add;
  const byKey = new Map(into.columns.map((c) => [profileKey(c), c]));
  for (const c of add.columns) {
    const key = profileKey(c);
    const prev = byKey.get(key);
    byKey.set(key, prev ? mergeColumn(prev, c) : c);
  }
  return { columns: [...byKey.values()] };
}

export interface ColumnDrift {
  column: string;
  role: ProfileRole;
  /** Population stability index over the reference's deciles; null when either side has no values. */
  psi: number | null;
  /** |mean − reference mean| / reference std; 0 for a constant reference that did not move, null when undefined (no values, or a constant reference that moved: PSI still sees that). */
  meanShift: number | null;
}

/**
 * PSI = Σ (c − r)·ln(c / r) over bins cut at the reference's deciles (duplicate cut points merged, so a
 * discrete column gets one bin per distinct value range). Rules of thumb: < 0.1 stable, 0.1–0.25 a
 * moderate shift, > 0.25 a large one.
 */
export function psi(reference: ColumnProfile, current: ColumnProfile): number | null {
  if (reference.count === 0 || current.count === 0 || !reference.q.length || !current.q.length) return null;
  const cuts: number[] = [];
  for (let i = 1; i < PSI_BINS; i++) {
    const c = quantile(reference.q, i / PSI_BINS);
    if (!cuts.length || c > cuts[cuts.length - 1]) cuts.push(c);
  }
  const shares = (q: number[]) => {
    const out: number[] = [];
    let prev = 0;
    for (const c of cuts) {
      const F = cdf(q, c);
      out.push(F - prev);
      prev = F;
    }
    out.push(1 - prev);
    return out;
  };
  const r = shares(reference.q);
  const c = shares(current.q);
  let total = 0;
  for (let i = 0; i < r.length; i++) {
    const ri = Math.max(PSI_FLOOR, r[i]);
    const ci = Math.max(PSI_FLOOR, c[i]);
    total += (ci - ri) * Math.log(ci / ri);
  }
  return total;
}

export function meanShift(reference: ColumnProfile, current: ColumnProfile): number | null {
  if (reference.mean === null || current.mean === null) return null;
  const diff = Math.abs(current.mean - reference.mean);
  const std = stdOf(reference) ?? 0;
  if (std > 0) return diff / std;
  return diff === 0 ? 0 : null;
}

/** Drift of every column of `current` that the reference also has. */
export function compareProfiles(reference: Profile, current: Profile): ColumnDrift[] {
  const ref = new Map(reference.columns.map((c) => [profileKey(c), c]));
  const out: ColumnDrift[] = [];
  for (const c of current.columns) {
    const r = ref.get(profileKey(c));
    if (r) out.push({ column: c.column, role: c.role, psi: psi(r, c), meanShift: meanShift(r, c) });
  }
  return out;
}
