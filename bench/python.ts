/**
 * The peer Scoreline is measured against: a hand-written pyarrow + onnxruntime script
 * (bench/python/score_parquet.py), run on the same Parquet file and models in the same bench
 * invocation. Its packages are installed by the bench into a project-local virtualenv on first use.
 */
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureVenvTool, venvExecutable } from '../src/dev/python-venv';

/** Pinned: onnxruntime at the version onnxruntime-node uses, so both score with the same kernels. */
export const PYTHON_BASELINE_PACKAGES = ['onnxruntime==1.30.0', 'pyarrow==26.0.1', 'numpy==2.4.6'];

export async function ensurePythonBaseline(root: string, log: (m: string) => void): Promise<string> {
  const venvDir = join(root, '.scoreline', 'bench-python-venv');
  await ensureVenvTool({
    venvDir,
    packages: PYTHON_BASELINE_PACKAGES,
    // numpy's console script: present once the packages are installed (a bare venv has `python` already).
    executable: 'f2py',
    what: 'the Python baseline (pyarrow + onnxruntime)',
    sizeNote: 'onnxruntime, pyarrow and numpy, ~250 MB unpacked',
    hint: 'Only `npm run bench` uses it; skip it with --skip-python.',
    log,
  });
  return venvExecutable(venvDir, 'python');
}

export interface PythonRun {
  rows: number;
  /** read → score → write, best of the repeats (the script's own timing). */
  seconds: number;
  /** Every timed run, in order. */
  secondsAll: number[];
  /** Interpreter start-up, imports and session creation, which a cron job pays on every run. */
  startupSeconds: number;
}

export async function runPythonBaseline(
  python: string,
  root: string,
  opts: { input: string; modelPath: string; modelName: string; modelVersion: string; outDir: string; ds: string; repeats: number },
): Promise<PythonRun> {
  mkdirSync(opts.outDir, { recursive: true });
  const { stdout } = await promisify(execFile)(
    python,
    [
      join(root, 'bench', 'python', 'score_parquet.py'),
      '--input', opts.input,
      '--model', opts.modelPath,
      '--model-name', opts.modelName,
      '--model-version', opts.modelVersion,
      '--output', join(opts.outDir, `${opts.modelName}.parquet`),
      '--ds', opts.ds,
      '--repeats', String(opts.repeats),
    ],
    { maxBuffer: 1 << 20, timeout: 30 * 60_000 },
  );
  const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as { rows: number; seconds: number; seconds_all: number[]; startup_seconds: number };
  return { rows: r.rows, seconds: r.seconds, secondsAll: r.seconds_all, startupSeconds: r.startup_seconds };
}
