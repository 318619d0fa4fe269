/**
 * The near-real-time bench's load generator (bench/nrt.ts): clients timing `POST /score` through the
 * HTTP API. By default it runs in a process of its own, as a caller's client does, so the event loop
 * that serves the API (and, in `scoreline dev`, the worker) does not also carry the clients' request
 * building and response parsing; `--nrt-client in-process` times from the bench's own process instead.
 * As a process: `node nrt-load.js '<LoadCase as JSON>'` prints the sorted latencies (ms) as JSON.
 */
import { performance } from 'node:perf_hooks';

export interface LoadCase {
  url: string;
  token: string;
  pipeline: string;
  rows: number;
  clients: number;
  requests: number;
}

const FEATURES = Array.from({ length: 32 }, (_, i) => `f${String(i).padStart(2, '0')}`);

/** Deterministic demo-like rows (the values do not matter for latency, their shape does). */
function rows(n: number): Record<string, number>[] {
  return Array.from({ length: n }, (_, i) => Object.fromEntries([['customer_id', i], ...FEATURES.map((f, j) => [f, Math.sin(i * 7 + j) * 3])]));
}

/** Ten warm-up requests (session, workflow cache, JIT), then `requests` over `clients` concurrent loops: the latencies, sorted. */
export async function timeRequests(c: LoadCase): Promise<number[]> {
  const body = JSON.stringify({ rows: rows(c.rows) });
  const one = async () => {
    const t = performance.now();
    const res = await fetch(`${c.url}/v1/pipelines/${c.pipeline}/score`, { method: 'POST', headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' }, body });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`score returned ${res.status}: ${text}`);
    return performance.now() - t;
  };
  for (let i = 0; i < Math.min(10, c.requests); i++) await one();
  const times: number[] = [];
  let left = c.requests;
  await Promise.all(
    Array.from({ length: c.clients }, async () => {
      while (left-- > 0) times.push(await one());
    }),
  );
  return times.sort((a, b) => a - b);
}

if (require.main === module) {
  timeRequests(JSON.parse(process.argv[2]) as LoadCase).then(
    (times) => process.stdout.write(JSON.stringify(times)),
    (err: Error) => {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    },
  );
}
