'use strict';
/**
 * The per-chunk profile kernel (docs/drift.md): exact moments and a stratified quantile sample of
 * columns of a row-major tensor. Plain JS so the inference threads (src/scoring/ort-worker.js) run it on
 * the tensor they already hold, off the worker's main thread, from src/ under tests and from an install
 * alike; src/profile/chunk.ts loads the same file for the main thread. Merging and drift scores are in
 * src/profile/sketch.ts (types there: ColumnProfile).
 */

const QUANTILE_POINTS = 33; // p = i / 32, as sketch.ts
const SAMPLE_ROWS = 1024;
const PROFILE_BLOCK_ROWS = 512;

/**
 * Profile one column given as a strided view: value i is `data[offset + i * stride]` for i < rows
 * (a column of a row-major [rows, stride] tensor, or a plain array with stride 1).
 */
function profileColumn(column, role, data, rows, stride = 1, offset = 0, nulls = 0) {
  // int64 columns (labels) as doubles: exact up to 2^53, and one loop for both.
  const values = data instanceof BigInt64Array ? int64AsDoubles(data) : data;
  let n = 0;
  let min = Infinity;
  let max = -Infinity;
  // Sums of (x - shift): exact enough for any chunk, even when the mean is far from 0.
  let shift = NaN;
  let s1 = 0;
  let s2 = 0;
  for (let i = 0, p = offset; i < rows; i++, p += stride) {
    const v = values[p];
    if (v !== v) continue; // NaN: not a value (the NULL policy has already run)
    if (shift !== shift) shift = v;
    const d = v - shift;
    s1 += d;
    s2 += d * d;
    if (v < min) min = v;
    if (v > max) max = v;
    n++;
  }
  if (n === 0) return { column, role, count: 0, nulls, min: null, max: null, mean: null, m2: 0, q: [] };
  const mean = shift + s1 / n;
  const m2 = Math.max(0, s2 - (s1 * s1) / n);
  return { column, role, count: n, nulls, min, max, mean, m2, q: sampleQuantiles(values, rows, stride, offset, min, max) };
}

/**
 * Every column of a row-major [rows, width] number tensor in one pass over memory (a pass per column
 * would stream the whole tensor `width` times): the same result as profileColumn per column (the sums
 * are added block by block, so the last bits may differ). `simd` false keeps to the JS loops (tests).
 */
function profileMatrix(columns, role, data, rows, width, nulls = [], simd = true) {
  const n = new Float64Array(width);
  const min = new Float64Array(width).fill(Infinity);
  const max = new Float64Array(width).fill(-Infinity);
  const s1 = new Float64Array(width);
  const s2 = new Float64Array(width);
  // Each column's first value (NaN skipped) as its shift, as in profileColumn.
  const shift = new Float64Array(width).fill(NaN);
  for (let j = 0; j < width; j++) {
    for (let p = j; p < rows * width; p += width) {
      if (data[p] === data[p]) {
        shift[j] = data[p];
        break;
      }
    }
  }
  // Blocks of rows that stay in cache; four adjacent columns at a time (they share cache lines): in
  // WebAssembly SIMD for float32 tensors (kernel.wat, ~2x faster), else summed in JS locals (~2x faster
  // than one column at a time, ~6x faster than one row at a time). Both give the same doubles.
  const acc = { n, min, max, s1, s2, shift };
  const wasm = simd && width >= 4 && data instanceof Float32Array ? simdBlocks(width, shift) : null;
  for (let r0 = 0; r0 < rows; r0 += PROFILE_BLOCK_ROWS) {
    const r1 = Math.min(rows, r0 + PROFILE_BLOCK_ROWS);
    let j = 0;
    if (wasm) {
      j = wasm.block(data, r0, r1, acc);
    } else {
      for (; j + 4 <= width; j += 4) {
        if (!sumFour(data, r0, r1, width, j, acc)) for (let k = j; k < j + 4; k++) sumOne(data, r0, r1, width, k, acc);
      }
    }
    for (; j < width; j++) sumOne(data, r0, r1, width, j, acc);
  }
  return columns.map((column, j) => {
    const count = n[j];
    const nullCount = nulls[j] ?? 0;
    if (count === 0) return { column, role, count: 0, nulls: nullCount, min: null, max: null, mean: null, m2: 0, q: [] };
    return {
      column,
      role,
      count,
      nulls: nullCount,
      min: min[j],
      max: max[j],
      mean: shift[j] + s1[j] / count,
      m2: Math.max(0, s2[j] - (s1[j] * s1[j]) / count),
      q: sampleQuantiles(data, rows, width, j, min[j], max[j]),
    };
  });
}

/** Column j over rows [r0, r1) into the accumulators, skipping NaN. */
function sumOne(data, r0, r1, width, j, acc) {
  const sh = acc.shift[j];
  let a = 0;
  let b = 0;
  let c = 0;
  let lo = acc.min[j];
  let hi = acc.max[j];
  for (let p = r0 * width + j, end = r1 * width; p < end; p += width) {
    const v = data[p];
    if (v !== v) continue;
    const d = v - sh;
    a += d;
    b += d * d;
    c++;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  acc.s1[j] += a;
  acc.s2[j] += b;
  acc.n[j] += c;
  acc.min[j] = lo;
  acc.max[j] = hi;
}

/**
 * Columns j..j+3 over rows [r0, r1), assuming no NaN; false (nothing added) when a sum says there was
 * one (NaN propagates through the sums), and the caller takes those columns one at a time.
 */
function sumFour(data, r0, r1, width, j, acc) {
  const { shift, min, max } = acc;
  const h0 = shift[j];
  const h1 = shift[j + 1];
  const h2 = shift[j + 2];
  const h3 = shift[j + 3];
  let a0 = 0, b0 = 0, a1 = 0, b1 = 0, a2 = 0, b2 = 0, a3 = 0, b3 = 0;
  let lo0 = min[j], hi0 = max[j], lo1 = min[j + 1], hi1 = max[j + 1];
  let lo2 = min[j + 2], hi2 = max[j + 2], lo3 = min[j + 3], hi3 = max[j + 3];
  for (let p = r0 * width + j, end = r1 * width; p < end; p += width) {
    const v0 = data[p];
    const v1 = data[p + 1];
    const v2 = data[p + 2];
    const v3 = data[p + 3];
    const d0 = v0 - h0;
    const d1 = v1 - h1;
    const d2 = v2 - h2;
    const d3 = v3 - h3;
    a0 += d0;
    b0 += d0 * d0;
    a1 += d1;
    b1 += d1 * d1;
    a2 += d2;
    b2 += d2 * d2;
    a3 += d3;
    b3 += d3 * d3;
    if (v0 < lo0) lo0 = v0;
    if (v0 > hi0) hi0 = v0;
    if (v1 < lo1) lo1 = v1;
    if (v1 > hi1) hi1 = v1;
    if (v2 < lo2) lo2 = v2;
    if (v2 > hi2) hi2 = v2;
    if (v3 < lo3) lo3 = v3;
    if (v3 > hi3) hi3 = v3;
  }
  if (a0 !== a0 || a1 !== a1 || a2 !== a2 || a3 !== a3) return false;
  const { s1, s2, n } = acc;
  const c = r1 - r0;
  s1[j] += a0;
  s2[j] += b0;
  s1[j + 1] += a1;
  s2[j + 1] += b1;
  s1[j + 2] += a2;
  s2[j + 2] += b2;
  s1[j + 3] += a3;
  s2[j + 3] += b3;
  for (let k = j; k < j + 4; k++) n[k] += c;
  min[j] = lo0;
  max[j] = hi0;
  min[j + 1] = lo1;
  max[j + 1] = hi1;
  min[j + 2] = lo2;
  max[j + 2] = hi2;
  min[j + 3] = lo3;
  max[j + 3] = hi3;
  return true;
}

let wasmKernel; // { block, memory } once loaded; null where WebAssembly SIMD is not available

function loadWasm() {
  if (wasmKernel === undefined) {
    try {
      const { exports } = new WebAssembly.Instance(new WebAssembly.Module(require('./kernel-wasm.js')));
      wasmKernel = { block: exports.block, memory: exports.memory };
    } catch {
      wasmKernel = null;
    }
  }
  return wasmKernel;
}

/** Whether this runtime runs the WebAssembly SIMD kernel (Node 20 does). */
function simdAvailable() {
  return loadWasm() !== null;
}

/**
 * The SIMD kernel (kernel.wat) set up for one tensor of `width` columns: memory for a block of rows, the
 * columns' shifts, and the per-group results. block() copies rows [r0, r1) in, adds each four-column group
 * to the accumulators (a group whose sums came out NaN is redone by sumOne, as sumFour's caller does), and
 * returns the first column it left to the caller (width rounded down to a multiple of 4).
 */
function simdBlocks(width, shift) {
  const k = loadWasm();
  if (!k) return null;
  const groups = width >> 2;
  const dataBytes = PROFILE_BLOCK_ROWS * width * 4;
  const shiftsAt = Math.ceil(dataBytes / 16) * 16;
  const outAt = shiftsAt + groups * 32;
  const need = outAt + groups * 96;
  try {
    if (k.memory.buffer.byteLength < need) k.memory.grow(Math.ceil((need - k.memory.buffer.byteLength) / 65536));
  } catch {
    return null; // a tensor too wide for the module's memory: the JS loops take it
  }
  const buffer = k.memory.buffer;
  const f32 = new Float32Array(buffer);
  const f64 = new Float64Array(buffer);
  f64.set(shift.subarray(0, groups * 4), shiftsAt / 8);
  return {
    block(data, r0, r1, acc) {
      f32.set(data.subarray(r0 * width, r1 * width), 0);
      k.block(r1 - r0, width, shiftsAt, outAt);
      const { s1, s2, n, min, max } = acc;
      const c = r1 - r0;
      for (let g = 0; g < groups; g++) {
        const o = (outAt + g * 96) / 8;
        const j = g * 4;
        if (f64[o] !== f64[o] || f64[o + 1] !== f64[o + 1] || f64[o + 2] !== f64[o + 2] || f64[o + 3] !== f64[o + 3]) {
          for (let x = j; x < j + 4; x++) sumOne(data, r0, r1, width, x, acc);
          continue;
        }
        const m = (outAt + g * 96 + 64) / 4;
        for (let x = 0; x < 4; x++) {
          s1[j + x] += f64[o + x];
          s2[j + x] += f64[o + 4 + x];
          n[j + x] += c;
          if (f32[m + x] < min[j + x]) min[j + x] = f32[m + x];
          if (f32[m + 4 + x] > max[j + x]) max[j + x] = f32[m + 4 + x];
        }
      }
      return groups * 4;
    },
  };
}

/**
 * BigInt64Array → Float64Array through its two 32-bit halves (little-endian, as on every platform Node
 * runs on): Number(bigint) per value cost ~150 ns, which a 262,144-row label column felt (~40 ms).
 */
function int64AsDoubles(data) {
  const halves = new Int32Array(data.buffer, data.byteOffset, data.length * 2);
  const out = new Float64Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = halves[2 * i + 1] * 4294967296 + (halves[2 * i] >>> 0);
  return out;
}

/**
 * Quantiles of a stratified sample: one row drawn from each block of ⌈rows / SAMPLE_ROWS⌉ rows (so at most
 * SAMPLE_ROWS of them), at a pseudo-random position seeded by the chunk's size — deterministic, so a
 * retried chunk gets the same profile, and not fooled by data with a period (every k-th row would be).
 * Ends pinned to the exact min and max; empty when the sample holds no value.
 */
function sampleQuantiles(data, rows, stride, offset, min, max) {
  const step = Math.max(1, Math.ceil(rows / SAMPLE_ROWS));
  const sample = new Float64Array(Math.ceil(rows / step));
  let seed = (rows * 2654435761) >>> 0 || 1;
  let k = 0;
  for (let start = 0; start < rows; start += step) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    const i = start + ((seed >>> 0) % Math.min(step, rows - start));
    const v = data[offset + i * stride];
    if (v === v) sample[k++] = v;
  }
  if (k === 0) return [];
  const sorted = sample.subarray(0, k).sort();
  const q = new Array(QUANTILE_POINTS);
  for (let i = 0; i < QUANTILE_POINTS; i++) {
    const pos = (i / (QUANTILE_POINTS - 1)) * (k - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(k - 1, lo + 1);
    const v = sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    // Six significant digits of the distance from min (resolution range / 10^6 however far from 0 the
    // values are, e.g. epoch seconds), kept inside [min, max]: rounding is monotone, so still sorted.
    q[i] = Math.min(max, min + Number((v - min).toPrecision(6)));
  }
  q[0] = min;
  q[QUANTILE_POINTS - 1] = max;
  return q;
}

/**
 * The feature columns of a chunk's input tensors ({name, dims, data}), per spec {tensor, columns, nulls}
 * in spec order (a column fed to two inputs comes twice; the caller keeps the first).
 */
function profileTensors(tensors, specs) {
  const out = [];
  for (const spec of specs) {
    const tensor = tensors.find((t) => t.name === spec.tensor);
    if (!tensor) continue;
    const values = tensor.data instanceof BigInt64Array ? int64AsDoubles(tensor.data) : tensor.data;
    out.push(...profileMatrix(spec.columns, 'feature', values, tensor.dims[0], tensor.dims[1], spec.nulls));
  }
  return out;
}

module.exports = { profileColumn, profileMatrix, profileTensors, simdAvailable, QUANTILE_POINTS, SAMPLE_ROWS };
