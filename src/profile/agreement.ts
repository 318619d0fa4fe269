/**
 * Champion/challenger agreement: per prediction column both models produce, sums that merge across
 * chunks by addition (so the workflow can total them) and give mean/max absolute difference, the
 * exact-agreement rate (label agreement for integer labels) and Pearson correlation.
 *
 * Pure and free of runtime imports: the workflow merges chunk agreements with it.
 */

export interface ColumnAgreement {
  column: string;
  n: number;
  sumAbs: number;
  maxAbs: number;
  /** Rows where both models gave exactly the same value. */
  equal: number;
  sx: number;
  sy: number;
  sxx: number;
  syy: number;
  sxy: number;
}

export interface Agreement {
  /** Rows both models scored (after each one's NULL policy). */
  rows: number;
  columns: ColumnAgreement[];
}

export interface AgreementSummary {
  rows_compared: number;
  /** Why the shadow table was not committed (the run itself succeeded). */
  error?: string;
  columns: Record<string, { mean_abs_diff: number | null; max_abs_diff: number | null; agreement_rate: number | null; correlation: number | null }>;
}

/**
 * Compare two sets of prediction columns row by row. `keptA`/`keptB` are the source rows each model
 * scored (ascending; undefined = all `rows`), so rows dropped by one model's NULL policy are skipped.
 */
export function compareChunk(
  a: Map<string, ArrayLike<number | bigint>>,
  b: Map<string, ArrayLike<number | bigint>>,
  rows: number,
  keptA?: Int32Array,
  keptB?: Int32Array,
): Agreement {
  // Pairs of positions (in a's and b's outputs) that hold the same source row.
  let ia: Int32Array | undefined;
  let ib: Int32Array | undefined;
  let n = rows;
  if (keptA || keptB) {
    const ka = keptA ?? Int32Array.from({ length: rows }, (_, i) => i);
    const kb = keptB ?? Int32Array.from({ length: rows }, (_, i) => i);
    ia = new Int32Array(Math.min(ka.length, kb.length));
    ib = new Int32Array(ia.length);
    n = 0;
    for (let i = 0, j = 0; i < ka.length && j < kb.length; ) {
      if (ka[i] === kb[j]) {
        ia[n] = i++;
        ib[n++] = j++;
      } else if (ka[i] < kb[j]) i++;
      else j++;
    }
  }
  const columns: ColumnAgreement[] = [];
  for (const [column, xa] of a) {
    const xb = b.get(column);
    if (!xb) continue;
    const c: ColumnAgreement = { column, n: 0, sumAbs: 0, maxAbs: 0, equal: 0, sx: 0, sy: 0, sxx: 0, syy: 0, sxy: 0 };
    for (let k = 0; k < n; k++) {
      const x = Number(xa[ia ? ia[k] : k]);
      const y = Number(xb[ib ? ib[k] : k]);
      if (x !== x || y !== y) continue;
      const d = Math.abs(x - y);
      c.n++;
      c.sumAbs += d;
      if (d > c.maxAbs) c.maxAbs = d;
      if (d === 0) c.equal++;
      c.sx += x;
      c.sy += y;
      c.sxx += x * x;
      c.syy += y * y;
      c.sxy += x * y;
    }
    columns.push(c);
  }
  return { rows: n, columns };
}

export function mergeAgreement(into: Agreement | undefined, add: Agreement): Agreement {
  if (!into) return add;
  const byName = new Map(into.columns.map((c) => [c.column, { ...c }]));
  for (const c of add.columns) {
    const t = byName.get(c.column);
    if (!t) {
      byName.set(c.column, { ...c });
      continue;
    }
    t.n += c.n;
    t.sumAbs += c.sumAbs;
    t.maxAbs = Math.max(t.maxAbs, c.maxAbs);
    t.equal += c.equal;
    t.sx += c.sx;
    t.sy += c.sy;
    t.sxx += c.sxx;
    t.syy += c.syy;
    t.sxy += c.sxy;
  }
  return { rows: into.rows + add.rows, columns: [...byName.values()] };
}

const round = (v: number) => Math.round(v * 1e6) / 1e6;

export function summarizeAgreement(a: Agreement): AgreementSummary {
  const columns: AgreementSummary['columns'] = {};
  for (const c of a.columns) {
    if (c.n === 0) {
      columns[c.column] = { mean_abs_diff: null, max_abs_diff: null, agreement_rate: null, correlation: null };
      continue;
    }
    const cov = c.sxy - (c.sx * c.sy) / c.n;
    const vx = c.sxx - (c.sx * c.sx) / c.n;
    const vy = c.syy - (c.sy * c.sy) / c.n;
    // Correlation is undefined when either side is constant.
    const correlation = vx > 0 && vy > 0 ? Math.max(-1, Math.min(1, cov / Math.sqrt(vx * vy))) : null;
    columns[c.column] = {
      mean_abs_diff: round(c.sumAbs / c.n),
      max_abs_diff: round(c.maxAbs),
      agreement_rate: round(c.equal / c.n),
      correlation: correlation === null ? null : round(correlation),
    };
  }
  return { rows_compared: a.rows, columns };
}
