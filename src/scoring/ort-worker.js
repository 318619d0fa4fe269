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
  try {
    entry = acquire(job);
    const s = await entry.session;
    const feeds = {};
    for (const t of job.tensors) feeds[t.name] = new ort.Tensor(t.dtype, t.data, t.dims);
    const results = await s.run(feeds, job.fetches);
    const outputs = {};
    const transfer = [];
    for (const name of job.fetches) {
      const tensor = results[name];
      const data = tensor.data;
      outputs[name] = { dims: tensor.dims, data };
      if (data && data.buffer && !transfer.includes(data.buffer)) transfer.push(data.buffer);
    }
    // The features' profile (docs/drift.md), here rather than on the main thread, which reads and writes.
    const profiles = job.profile ? kernel.profileTensors(job.tensors, job.profile) : undefined;
    // The input buffers go back too, so the main thread can reuse them for the next chunk (src/io/buffers.ts).
    const inputs = job.tensors.map((t) => t.data.buffer).filter((b) => !transfer.includes(b));
    parentPort.postMessage({ id: job.id, ok: true, outputs, profiles, inputs, cache: { sessions: sessions.size, evictions } }, [...transfer, ...inputs]);
  } catch (err) {
    parentPort.postMessage({ id: job.id, ok: false, error: err && err.message ? err.message : String(err) });
  } finally {
    if (entry) done(entry);
  }
});

