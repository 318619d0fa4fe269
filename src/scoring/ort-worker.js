'use strict';
/**
 * Inference worker thread (plain JS so it runs unchanged from src/ under tests and from an install):
 * one ONNX Runtime session per model file per thread, tensors in and out as transferred typed arrays.
 * onnxruntime-node's run() executes on the calling thread, so running it here keeps the worker's event
 * loop (and with it Temporal heartbeats) free, and lets several chunks infer on several cores at once.
 */
const { createHash } = require('node:crypto');
const { readFileSync } = require('node:fs');
const { parentPort } = require('node:worker_threads');
const ort = require('onnxruntime-node');

const sessions = new Map();

function session(job) {
  let s = sessions.get(job.key);
  if (!s) {
    // Load the bytes the run pinned, not whatever the file holds now: verify before creating the session.
    const bytes = readFileSync(job.modelPath);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (sha256 !== job.sha256) {
      return Promise.reject(new Error(`${job.modelPath} hashes to ${sha256} but the run pinned ${job.sha256}; the model file changed during the run`));
    }
    s = ort.InferenceSession.create(bytes, {
      intraOpNumThreads: job.intraOpThreads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
    sessions.set(job.key, s);
    s.catch(() => sessions.delete(job.key));
  }
  return s;
}

parentPort.on('message', async (job) => {
  try {
    const s = await session(job);
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
    // The input buffers go back too, so the main thread can reuse them for the next chunk (src/io/buffers.ts).
    const inputs = job.tensors.map((t) => t.data.buffer).filter((b) => !transfer.includes(b));
    parentPort.postMessage({ id: job.id, ok: true, outputs, inputs }, [...transfer, ...inputs]);
  } catch (err) {
    parentPort.postMessage({ id: job.id, ok: false, error: err && err.message ? err.message : String(err) });
  }
});
