'use strict';
/**
 * Child process of `scoreline models register --sample-from` (src/models/contract.ts): measures what
 * ONNX Runtime costs in memory, in a fresh process so nothing else the CLI did (DuckDB, the sample read)
 * blurs the numbers. Plain JS so it runs unchanged from src/ under tests and from an install.
 *
 * Receives (IPC, advanced serialization) { modelPath, feeds: [{ name, dtype, dims, data }], fetches,
 * runs, intraOpThreads } with the feeds already built by the parent (the same buildFeeds path a run
 * uses, the sample repeated to e.g. 16,384 rows), and replies with RSS deltas in bytes:
 *   runtimeBytes  the first session: ONNX Runtime's own start-up plus the model
 *   sessionBytes  one more session of the same model (what each further inference thread adds)
 *   runBytes      peak RSS growth over `runs` session.run calls on the feeds (intermediate tensors,
 *                 ONNX Runtime's arena, the outputs): the working memory of one inference thread
 *   runMs         wall time of each run
 *   peakFrom      'VmHWM' (Linux: the peak is reset before the runs) or 'maxRSS' (elsewhere: the
 *                 process's lifetime peak, an upper bound)
 */
const { readFileSync, writeFileSync } = require('node:fs');
const { performance } = require('node:perf_hooks');

const rss = () => process.memoryUsage().rss;

/** Reset the kernel's peak-RSS mark (Linux ≥ 4.0); false where that is not possible. */
function resetPeak() {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return readPeak() !== undefined;
  } catch {
    return false;
  }
}

function readPeak() {
  try {
    const kb = /VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'));
    return kb ? Number(kb[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function probe(job) {
  const ort = require('onnxruntime-node');
  const options = { intraOpNumThreads: job.intraOpThreads || 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' };
  const bytes = readFileSync(job.modelPath);
  const feeds = {};
  for (const f of job.feeds) feeds[f.name] = new ort.Tensor(f.dtype, f.data, f.dims);
  const r0 = rss();
  const session = await ort.InferenceSession.create(bytes, options);
  const r1 = rss();
  const second = await ort.InferenceSession.create(bytes, options);
  const r2 = rss();
  await second.release();
  const before = rss();
  const reset = resetPeak();
  const runMs = [];
  for (let i = 0; i < job.runs; i++) {
    const t = performance.now();
    const out = await session.run(feeds, job.fetches);
    runMs.push(performance.now() - t);
    for (const v of Object.values(out)) if (v && typeof v.dispose === 'function') v.dispose();
  }
  const after = rss();
  let peak;
  let peakFrom;
  if (reset) {
    peak = Math.max(readPeak() ?? after, after);
    peakFrom = 'VmHWM';
  } else {
    // Without a reset the lifetime peak may predate the runs: only an upper bound.
    peak = Math.max(process.resourceUsage().maxRSS * 1024, after);
    peakFrom = 'maxRSS';
  }
  await session.release();
  return { runtimeBytes: r1 - r0, sessionBytes: Math.max(0, r2 - r1), runBytes: Math.max(0, peak - before), runMs, peakFrom };
}

process.once('message', (job) => {
  probe(job).then(
    (result) => process.send({ ok: true, result }, () => process.exit(0)),
    (err) => process.send({ ok: false, error: String((err && err.message) || err) }, () => process.exit(0)),
  );
});
