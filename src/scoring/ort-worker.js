'use strict';
/**
 * Inference worker thread (plain JS so it runs unchanged from src/ under tests and from an install):
 * sessions loaded by sha256 (the bytes are hashed and must equal the run's pin), kept in a bounded LRU
 * (workerData.cacheSize, from SCORELINE_MODEL_CACHE), tensors in and out as transferred typed arrays.
 * An evicted session is released only when no job is using it.
 * onnxruntime-node's run() executes on the calling thread, so running it here keeps the worker's event
 * loop (and with it Temporal heartbeats) free, and lets several chunks infer on several cores at once.
 */
const { createHash } = require('node:crypto');
const { readFileSync } = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const ort = require('onnxruntime-node');
const kernel = require('../profile/kernel.js');

const cacheSize = Math.max(1, Number((workerData && workerData.cacheSize) || 8));
/**
 * Rows per session.run: a chunk's tensor is scored in slices of this many rows. ONNX Runtime sizes its
 * intermediate buffers (and keeps its arena) by the largest batch it has run, so a 262k-row chunk
 * through a 64-wide MLP held ~300 MB per thread (a 10M-row run peaked at 1.39 GB, 0.95 GB in 16k-row slices); slices bound that while the chunk stays large for
 * everything else (SCORELINE_ORT_BATCH_ROWS; 0 = whole chunks).
 */
const batchRows = Math.max(0, Number((workerData && workerData.batchRows) ?? 16384));
/** sha256 → { session: Promise<InferenceSession>, inUse }; Map order = recency (a hit moves to the end). */
const sessions = new Map();
let evictions = 0;

function acquire(job) {
  let entry = sessions.get(job.sha256);
  if (entry) {
    sessions.delete(job.sha256);
  } else {
    // Load the bytes the run pinned, not whatever the file holds now: verify before creating the session.
    const bytes = readFileSync(job.modelPath);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (sha256 !== job.sha256) {
      throw new Error(`${job.modelPath} hashes to ${sha256} but the run pinned ${job.sha256}; the model file changed during the run`);
    }
    entry = {
      inUse: 0,
      session: ort.InferenceSession.create(bytes, {
        intraOpNumThreads: job.intraOpThreads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      }),
    };
    entry.session.catch(() => sessions.get(job.sha256) === entry && sessions.delete(job.sha256));
  }
  sessions.set(job.sha256, entry);
  entry.inUse++;
  trim();
  return entry;
}

function done(entry) {
  entry.inUse--;
  trim();
}

/** Release least recently used idle sessions beyond the bound; one in use stays (and is trimmed later). */
function trim() {
  for (const [key, entry] of sessions) {
    if (sessions.size <= cacheSize) return;
    if (entry.inUse > 0) continue;
    sessions.delete(key);
    evictions++;
    entry.session.then((s) => s.release()).catch(() => undefined);
  }
}

parentPort.on('message', async (job) => {
  let entry;
  let scored = false;
  try {
    entry = acquire(job);
    const outputs = await runSliced(await entry.session, job.tensors, job.fetches);
    const transfer = [];
    for (const { data } of Object.values(outputs)) if (data && data.buffer && !transfer.includes(data.buffer)) transfer.push(data.buffer);
    // The input buffers go back too, so the main thread can reuse them for the next chunk (src/io/buffers.ts).
    const inputs = () => job.tensors.map((t) => t.data.buffer).filter((b) => !transfer.includes(b));
    const cache = () => ({ sessions: sessions.size, evictions });
    if (!job.profile) {
      const back = inputs();
      parentPort.postMessage({ id: job.id, ok: true, outputs, inputs: back, cache: cache(), last: true }, [...transfer, ...back]);
      return;
    }
    // Predictions first: the main thread writes the chunk while this thread profiles its features
    // (docs/drift.md) from the tensor it holds, then hands the profile and the input buffers back.
    parentPort.postMessage({ id: job.id, ok: true, outputs, last: false }, transfer);
    scored = true;
    const profiles = kernel.profileTensors(job.tensors, job.profile);
    const back = inputs();
    parentPort.postMessage({ id: job.id, ok: true, profiles, inputs: back, cache: cache(), last: true }, back);
  } catch (err) {
    parentPort.postMessage({ id: job.id, ok: false, scored, error: err && err.message ? err.message : String(err), last: true });
  } finally {
    if (entry) done(entry);
  }
});

/** One run over rows [start, end) of every input (all batched along their first dimension). */
async function runRows(session, tensors, fetches, start, end, rows) {
  const feeds = {};
  for (const t of tensors) {
    const per = t.data.length / rows;
    const data = start === 0 && end === rows ? t.data : t.data.subarray(start * per, end * per);
    feeds[t.name] = new ort.Tensor(t.dtype, data, [end - start, ...t.dims.slice(1)]);
  }
  const results = await session.run(feeds, fetches);
  const out = {};
  for (const name of fetches) out[name] = { dims: results[name].dims, data: results[name].data };
  return out;
}

/**
 * The chunk in slices of `batchRows` rows, outputs concatenated in order. Whole when it is small, when
 * an input is not a batched typed array, or when an output is not one row per input row (then slices
 * could not be joined).
 */
async function runSliced(session, tensors, fetches) {
  const rows = tensors.length > 0 ? tensors[0].dims[0] : 0;
  const sliceable = batchRows > 0 && rows > batchRows && tensors.every((t) => t.dims[0] === rows && ArrayBuffer.isView(t.data));
  if (!sliceable) return runRows(session, tensors, fetches, 0, rows, rows);
  const parts = [];
  for (let start = 0; start < rows; start += batchRows) {
    const end = Math.min(rows, start + batchRows);
    const part = await runRows(session, tensors, fetches, start, end, rows);
    if (fetches.some((name) => part[name].dims[0] !== end - start)) return runRows(session, tensors, fetches, 0, rows, rows);
    parts.push(part);
  }
  const outputs = {};
  for (const name of fetches) {
    const pieces = parts.map((p) => p[name].data);
    let data;
    if (ArrayBuffer.isView(pieces[0])) {
      data = new pieces[0].constructor(pieces.reduce((n, d) => n + d.length, 0));
      let offset = 0;
      for (const d of pieces) {
        data.set(d, offset);
        offset += d.length;
      }
    } else {
      data = pieces.flat(); // string tensors
    }
    outputs[name] = { dims: [rows, ...parts[0][name].dims.slice(1)], data };
  }
  return outputs;
}
