/**
 * The worker's workflow bundle, built once and reused. Bundling workflows/ with the SDK's webpack takes
 * ~1.2–1.5 s of CPU, and every worker paid it at start (`scoreline worker`, `dev`, `demo`, each test
 * and each worker the chaos tests restart). The bundle is kept on disk with the sha256 of every module
 * file it was built from; a worker reuses it only when all of them still hash the same, so an edited
 * workflow, a changed dependency or a different SDK always gets a fresh bundle, never a stale one.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { bundleWorkflowCode, type Logger } from '@temporalio/worker';
import { errorMessage } from './errors';
import { sha256File, writeFileAtomic } from './models/store';
import { logger } from './obs/log';

export interface BundleRequest {
  workflowsPath: string;
  /** Bundled in when set (the codec's failure converter): a bundle per value. */
  failureConverterPath?: string;
  /** Where bundles are kept; unwritable = build without keeping it. */
  cacheDir: string;
  logger?: Logger;
}

interface Manifest {
  /** Absolute path → sha256 of each module file in the bundle. */
  modules: Record<string, string>;
}

export async function workflowBundle(req: BundleRequest): Promise<{ code: string }> {
  const options = { workflowsPath: resolve(req.workflowsPath), failureConverterPath: req.failureConverterPath && resolve(req.failureConverterPath) };
  const key = createHash('sha256').update(JSON.stringify(options)).digest('hex').slice(0, 16);
  const file = join(req.cacheDir, `workflows-${key}.bundle`);
  const cached = await readValid(file);
  if (cached !== undefined) return { code: cached };
  const startedMs = Date.now();
  const { code } = await bundleWorkflowCode({ ...options, ...(req.logger && { logger: req.logger }) });
  try {
    const manifest = await manifestOf(code, process.cwd(), startedMs);
    // Manifest and code in one file, replaced whole: a reader sees a matching pair or nothing.
    if (manifest) {
      await fs.mkdir(dirname(file), { recursive: true });
      await writeFileAtomic(file, `${JSON.stringify(manifest)}\n${code}`);
    }
  } catch (err) {
    logger.debug({ cache: req.cacheDir, error: errorMessage(err) }, 'workflow bundle built but not kept');
  }
  return { code };
}

/** The bundle in `file` (its manifest on the first line, then the code) if every module it was built from is unchanged. */
async function readValid(file: string): Promise<string | undefined> {
  try {
    const text = await fs.readFile(file, 'utf8');
    const newline = text.indexOf('\n');
    const manifest = JSON.parse(text.slice(0, newline)) as Manifest;
    const modules = Object.entries(manifest.modules);
    if (modules.length === 0) return undefined;
    for (const [path, hash] of modules) if ((await sha256File(path)) !== hash) return undefined;
    return text.slice(newline + 1);
  } catch {
    return undefined; // none yet, unreadable, or a module gone: build it again
  }
}

/**
 * Webpack heads each module with its path relative to the working directory it bundled in, on a line
 * of its own (`/***\/ "./dist/workflows/batch.js"`); virtual modules (`?31ff`) have no file. None when a module
 * changed while bundling (its hash now might not be what was bundled).
 */
async function manifestOf(code: string, cwd: string, startedMs: number): Promise<Manifest | undefined> {
  const ids = new Set([...code.matchAll(/^\/\*\*\*\/ "(\.\.?\/[^"]+)"$/gm)].map((m) => m[1]));
  const modules: Record<string, string> = {};
  for (const id of ids) {
    const path = resolve(cwd, id);
    if ((await fs.stat(path)).mtimeMs >= startedMs - MTIME_SLACK_MS) return undefined;
    modules[path] = await sha256File(path);
  }
  return { modules };
}

/** File systems with coarse timestamps round an mtime down by up to this much. */
const MTIME_SLACK_MS = 2000;
