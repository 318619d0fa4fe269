/**
 * The benchmark is a user-facing command too (`npm run bench`), and other tooling reads its --json
 * summary. This runs it small, as a smoke test of the whole path and of the summary's fields — never
 * asserting on speed (that is what the benchmark itself reports).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ensurePythonBaseline } from '../../bench/python';
import { ensureTemporalCli } from '../../src/dev/temporal-cli';
import { cleanup, REPO, tempProject } from '../helpers/project';

let data: string;
let cli: string;

beforeAll(async () => {
  data = tempProject('scoreline-bench-');
  cli = (await ensureTemporalCli({ projectDir: REPO })).path;
  // The bench installs its Python peer itself; done here so the first install (~250 MB of wheels) is
  // not counted against the bench run's own timeout.
  await ensurePythonBaseline(REPO, (m) => process.stderr.write(`${m}\n`));
}, 900_000);
afterAll(() => cleanup(data));

it('npm run bench -- --json ends with the summary line other tooling reads', async () => {
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(
      process.execPath,
      [join(REPO, 'dist', 'bench', 'run.js'), '--json', '--skip-libs', '--rows', '40000', '--repeats', '1', '--data', data],
      { cwd: REPO, env: { ...process.env, TEMPORAL_CLI: cli }, timeout: 300_000, maxBuffer: 16 << 20 },
      (err, out, stderr) => (err ? reject(new Error(`${err.message}\n${stderr.slice(-3000)}`)) : resolve(out)),
    ),
  );
  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const summary = lines.at(-1)!;
  expect(summary.case).toBe('summary');
  for (const field of ['e2e_vs_raw_ort_tree', 'e2e_vs_raw_ort_mlp', 'profile_overhead_tree', 'profile_overhead_mlp', 'profile_cpu_overhead_tree', 'profile_cpu_overhead_mlp', 'e2e_vs_python_tree', 'e2e_vs_python_mlp', 'peak_rss_mb']) {
    expect(typeof summary[field], field).toBe('number');
    expect(summary[field] as number).toBeGreaterThan(0);
  }
  expect(lines.filter((l) => l.case === 'raw-ort')).toHaveLength(6);
  expect(lines.filter((l) => l.case === 'python').map((l) => [l.model, l.rows])).toEqual([
    ['mlp', 40000],
    ['gbt', 40000],
  ]);
  expect(lines.filter((l) => l.case === 'e2e' || l.case === 'e2e-no-profile').map((l) => [l.case, l.model, l.rows])).toEqual([
    ['e2e', 'mlp', 40000],
    ['e2e-no-profile', 'mlp', 40000],
    ['e2e', 'gbt', 40000],
    ['e2e-no-profile', 'gbt', 40000],
  ]);
}, 300_000);
