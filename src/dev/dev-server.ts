/**
 * Starts and stops a real Temporal dev server (`temporal server start-dev`) as a child process, for
 * the `scoreline dev` stack and integration tests. Start resolves only once the frontend answers
 * gRPC for the namespace, so callers can connect right away.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, promises as fs, type WriteStream } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';
import { ConfigError } from '../errors';
import { ensureTemporalCli } from './temporal-cli';

export type SearchAttributeTypeName = 'Text' | 'Keyword' | 'Int' | 'Double' | 'Bool' | 'Datetime' | 'KeywordList';

export interface DevServerOptions {
  /** Path to the `temporal` binary; default: ensureTemporalCli(). */
  cliPath?: string;
  /** SQLite file that keeps state across restarts; undefined = in-memory. Its directory is created. */
  dbFilename?: string;
  /** Frontend bind address; default 127.0.0.1. */
  ip?: string;
  /** Frontend gRPC port; 0 or undefined = pick a free port. */
  port?: number;
  /** Web UI port; default: a free port (or port + 1000 when port was given, like the CLI). */
  uiPort?: number;
  /** Disable the Web UI. */
  headless?: boolean;
  /** Remote codec endpoint the Web UI decodes payloads with (`--ui-codec-endpoint`; docs/security.md). */
  uiCodecEndpoint?: string;
  /** Namespace to create and wait for; default "default" (which the CLI always creates). */
  namespace?: string;
  searchAttributes?: Record<string, SearchAttributeTypeName>;
  /** Dynamic config overrides (over DEV_SERVER_DYNAMIC_CONFIG); values are passed as JSON. */
  dynamicConfig?: Record<string, unknown>;
  /** Append server stdout/stderr here (e.g. .scoreline/temporal.log); its directory is created. */
  logFile?: string;
  log?: (m: string) => void;
  /** How long to wait for the server to answer; default 60 s. */
  startTimeoutMs?: number;
}

export interface DevServer {
  /** host:port of the frontend gRPC service. */
  address: string;
  /** Web UI URL, unless headless. */
  uiUrl?: string;
  namespace: string;
  pid: number;
  /** SIGTERM, then SIGKILL after 10 s. Idempotent. */
  stop(): Promise<void>;
}

/**
 * The dev server runs one history shard, and each shard reads its task queues at most
 * `…ProcessorMaxPollRPS` times a second (default 20). Every workflow task that follows an activity, and
 * every activity on another task queue, waits for the next read of the transfer queue: one step of a run
 * took ≥ 50 ms whatever it did (measured: a workflow of 50 no-op activities, 50.9 ms a step at the
 * default, 11–14 ms at 1000). A production cluster spreads the same reads over hundreds of shards.
 * The limit only caps reads that new tasks trigger, so a higher one costs nothing when idle.
 * `opts.dynamicConfig` overrides these.
 */
export const DEV_SERVER_DYNAMIC_CONFIG: Readonly<Record<string, unknown>> = {
  'history.transferProcessorMaxPollRPS': 1000,
  'history.timerProcessorMaxPollRPS': 1000,
  'history.visibilityProcessorMaxPollRPS': 1000,
};

/**
 * A state file is written in WAL mode with `synchronous=normal`: each state transition is one append
 * instead of a rollback journal and two fsyncs (a Workflow Update round trip with a local activity:
 * ~20 → ~16 ms on the dev machine, level with in-memory state). Committed state survives the server
 * being killed; the last transactions before a power loss may not, which a dev server can afford.
 */
const SQLITE_PRAGMAS = ['journal_mode=wal', 'synchronous=normal'];

const DEFAULT_IP = '127.0.0.1';
const DEFAULT_NAMESPACE = 'default';
const DEFAULT_START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const KILL_WAIT_MS = 5_000;
const LOG_TAIL_CHARS = 8_000;
const READY_ATTEMPT_TIMEOUT_MS = 2_000;
const READY_RETRY_DELAY_MS = 200;

/** temporal.api.enums.v1.IndexedValueType, as the operator API reports and accepts it. */
const INDEXED_VALUE_TYPES: Record<SearchAttributeTypeName, number> = {
  Text: 1,
  Keyword: 2,
  Int: 3,
  Double: 4,
  Bool: 5,
  Datetime: 6,
  KeywordList: 7,
};

export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  const log = opts.log ?? (() => undefined);
  const ip = opts.ip ?? DEFAULT_IP;
  const namespace = opts.namespace ?? DEFAULT_NAMESPACE;
  const cliPath = opts.cliPath ?? (await ensureTemporalCli({ log })).path;
  const port = opts.port || (await getFreePort(ip));
  const uiPort = opts.headless ? undefined : (opts.uiPort ?? (opts.port ? opts.port + 1000 : await getFreePort(ip)));

  // Checked up front because otherwise the readiness probe could succeed against whatever already
  // listens there (e.g. another dev server) before our child notices the clash and exits.
  await assertPortFree(ip, port, '--port');
  if (uiPort !== undefined) await assertPortFree(ip, uiPort, '--ui-port');

  if (opts.dbFilename) await fs.mkdir(path.dirname(path.resolve(opts.dbFilename)), { recursive: true });
  const logStream = opts.logFile ? await openLogFile(opts.logFile) : undefined;

  const args = buildArgs({ ...opts, ip, port, uiPort, namespace });
  log(`Starting Temporal dev server: ${cliPath} ${args.join(' ')}`);
  const startedAt = Date.now();
  const proc = spawnServer(cliPath, args, logStream);
  const address = `${hostForClient(ip)}:${port}`;

  try {
    await proc.spawned;
    await waitUntilReady(address, namespace, proc, opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
    await ensureSearchAttributes(address, namespace, opts.searchAttributes ?? {}, opts.dbFilename, log);
  } catch (err) {
    await proc.stop();
    throw err;
  }

  const uiUrl = uiPort === undefined ? undefined : `http://${hostForClient(ip)}:${uiPort}`;
  log(`Temporal dev server ready at ${address}${uiUrl ? `, Web UI ${uiUrl}` : ''} after ${Date.now() - startedAt} ms (pid ${proc.child.pid})`);
  return {
    address,
    uiUrl,
    namespace,
    pid: proc.child.pid!,
    stop: proc.stop,
  };
}

/** Asks the OS for a free port. Another process could grab it before the server binds; rare enough for dev. */
export async function getFreePort(host: string = DEFAULT_IP): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A port `scoreline dev` is about to use, checked first; `flag` is the option that chooses it. */
export async function assertPortFree(ip: string, port: number, flag: string): Promise<void> {
  const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', resolve);
    server.listen(port, ip, () => server.close(() => resolve(undefined)));
  });
  if (!error) return;
  const why = error.code === 'EADDRINUSE' ? 'is already in use (another dev server or API?)' : `cannot be bound (${error.message})`;
  throw new ConfigError(`Port ${port} on ${ip} ${why}. Stop whatever uses it, or choose another with ${flag}.`);
}

// ---------------------------------------------------------------------------------------------------
// Command line

interface ResolvedArgs extends DevServerOptions {
  ip: string;
  port: number;
  uiPort: number | undefined;
  namespace: string;
}

/** Every flag here was checked against `temporal server start-dev --help` of CLI 1.9.1. */
function buildArgs(o: ResolvedArgs): string[] {
  const args = ['server', 'start-dev', '--ip', o.ip, '--port', String(o.port), '--log-level', 'warn'];
  if (o.dbFilename) {
    args.push('--db-filename', path.resolve(o.dbFilename));
    for (const pragma of SQLITE_PRAGMAS) args.push('--sqlite-pragma', pragma);
  }
  if (o.uiPort === undefined) args.push('--headless');
  else args.push('--ui-port', String(o.uiPort));
  if (o.uiPort !== undefined && o.uiCodecEndpoint) args.push('--ui-codec-endpoint', o.uiCodecEndpoint);
  // "default" is always created; naming it again is harmless but noisy.
  if (o.namespace !== DEFAULT_NAMESPACE) args.push('--namespace', o.namespace);
  for (const [name, type] of Object.entries(o.searchAttributes ?? {})) {
    args.push('--search-attribute', `${name}=${type}`);
  }
  for (const [key, value] of Object.entries({ ...DEV_SERVER_DYNAMIC_CONFIG, ...o.dynamicConfig })) {
    args.push('--dynamic-config-value', `${key}=${JSON.stringify(value)}`);
  }
  return args;
}

/** A wildcard bind address is not something a client can dial; IPv6 literals need brackets. */
function hostForClient(ip: string): string {
  if (ip === '0.0.0.0') return '127.0.0.1';
  if (ip === '::') return '[::1]';
  return ip.includes(':') ? `[${ip}]` : ip;
}

async function openLogFile(file: string): Promise<WriteStream> {
  await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  return createWriteStream(file, { flags: 'a' });
}

// ---------------------------------------------------------------------------------------------------
// Child process

interface ServerProcess {
  child: ChildProcess;
  /** Resolves once the OS started the binary; rejects e.g. on ENOENT/EACCES. */
  spawned: Promise<void>;
  /** Resolves when the process is gone (exited or never started). */
  exited: Promise<void>;
  exitDescription(): string | undefined;
  outputTail(): string;
  stop(): Promise<void>;
}

function spawnServer(cliPath: string, args: string[], logStream: WriteStream | undefined): ServerProcess {
  const child = spawn(cliPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let outputTail = '';
  let exitDescription: string | undefined;

  // Keep a tail in memory even with a log file: error messages should not make people go digging.
  const capture = (chunk: Buffer): void => {
    outputTail = (outputTail + chunk.toString('utf8')).slice(-LOG_TAIL_CHARS);
    logStream?.write(chunk);
  };
  child.stdout?.on('data', capture);
  child.stderr?.on('data', capture);

  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) => reject(new Error(`Could not run the Temporal CLI at ${cliPath}: ${err.message}`)));
  });
  spawned.catch(() => undefined); // observed by startDevServer; avoid an unhandled rejection meanwhile

  const exited = new Promise<void>((resolve) => {
    child.once('error', () => {
      exitDescription ??= 'failed to start';
      resolve();
    });
    // 'close' (not 'exit') so all output has reached the tail and the log file.
    child.once('close', (code, signal) => {
      exitDescription ??= signal ? `killed by ${signal}` : `exited with code ${code}`;
      resolve();
    });
  });

  // No 'exit'-time async work is possible, so kill hard; SQLite commits are durable, nothing is lost.
  const killOnParentExit = (): void => {
    child.kill('SIGKILL');
  };
  process.on('exit', killOnParentExit);
  void exited.then(() => {
    process.off('exit', killOnParentExit);
    logStream?.end();
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= stopProcess(child, exited));

  return { child, spawned, exited, exitDescription: () => exitDescription, outputTail: () => outputTail, stop };
}

async function stopProcess(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
    await exited;
    return;
  }
  child.kill('SIGTERM');
  if (await settlesWithin(exited, STOP_GRACE_MS)) return;
  child.kill('SIGKILL');
  if (!(await settlesWithin(exited, KILL_WAIT_MS))) {
    throw new Error(`Temporal dev server (pid ${child.pid}) did not exit after SIGKILL`);
  }
}

async function settlesWithin(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------------
// Readiness

/**
 * Polls DescribeNamespace: the port accepting connections is not enough, the namespace must be
 * served. Fails fast with the server's output if the process dies (bad flag, port in use, locked db).
 */
async function waitUntilReady(address: string, namespace: string, proc: ServerProcess, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    const attemptTimeout = Math.min(READY_ATTEMPT_TIMEOUT_MS, deadline - Date.now());
    const attempt = probeReady(address, namespace, attemptTimeout);
    const outcome = await Promise.race([
      attempt.then(
        () => 'ready' as const,
        (err: unknown) => {
          lastError = err;
          return 'retry' as const;
        },
      ),
      proc.exited.then(() => 'exited' as const),
    ]);
    if (outcome === 'ready') return;
    if (outcome === 'exited') {
      throw new Error(
        `Temporal dev server ${proc.exitDescription() ?? 'exited'} before becoming ready at ${address}.\n` +
          `Server output (tail):\n${proc.outputTail() || '(none)'}`,
      );
    }
    await sleep(READY_RETRY_DELAY_MS);
  }
  throw new Error(
    `Temporal dev server at ${address} did not become ready within ${timeoutMs} ms ` +
      `(last error: ${errorMessage(lastError)}).\nServer output (tail):\n${proc.outputTail() || '(none)'}`,
  );
}

/**
 * A plain TCP connect first: it fails instantly while the port is closed, whereas a gRPC channel that
 * saw a refused connection backs off for a second or more before retrying, slowing start-up.
 */
async function probeReady(address: string, namespace: string, timeoutMs: number): Promise<void> {
  await tcpConnect(address, timeoutMs);
  await withConnection(address, timeoutMs, (connection) =>
    connection.withDeadline(Date.now() + timeoutMs, () => connection.workflowService.describeNamespace({ namespace })),
  );
}

function tcpConnect(address: string, timeoutMs: number): Promise<void> {
  const { host, port } = splitAddress(address);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, timeout: timeoutMs });
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(new Error(`TCP connect to ${address} timed out`));
    });
    socket.once('error', reject);
  });
}

function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(address.slice(colon + 1)) };
}

async function withConnection<T>(
  address: string,
  connectTimeoutMs: number,
  fn: (connection: Connection) => Promise<T>,
): Promise<T> {
  // lazy + ensureConnected (not connect) so a failed attempt still closes its gRPC channel.
  const connection = Connection.lazy({ address, connectTimeout: Math.max(connectTimeoutMs, 1) });
  try {
    await connection.ensureConnected();
    return await fn(connection);
  } finally {
    await connection.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// Search attributes

/**
 * The CLI writes --search-attribute into the namespace record only when it creates the namespace, so
 * on a restart with an existing db file, newly added attributes are silently ignored (re-passing the
 * old ones is fine). Register whatever is missing through the operator API, and refuse type changes,
 * which Temporal does not support.
 */
async function ensureSearchAttributes(
  address: string,
  namespace: string,
  wanted: Record<string, SearchAttributeTypeName>,
  dbFilename: string | undefined,
  log: (m: string) => void,
): Promise<void> {
  if (Object.keys(wanted).length === 0) return;
  await withConnection(address, READY_ATTEMPT_TIMEOUT_MS * 5, async (connection) => {
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
    const registered = customAttributes ?? {};
    const missing: Record<string, number> = {};
    for (const [name, type] of Object.entries(wanted)) {
      const current = registered[name];
      if (current === undefined || current === null) missing[name] = INDEXED_VALUE_TYPES[type];
      else if (Number(current) !== INDEXED_VALUE_TYPES[type]) throw typeConflictError(name, type, Number(current), dbFilename);
    }
    if (Object.keys(missing).length === 0) return;
    log(`Registering search attributes missing from the existing namespace: ${Object.keys(missing).join(', ')}`);
    await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: missing });
  });
}

function typeConflictError(
  name: string,
  wanted: SearchAttributeTypeName,
  current: number,
  dbFilename: string | undefined,
): Error {
  const currentName = Object.entries(INDEXED_VALUE_TYPES).find(([, code]) => code === current)?.[0] ?? `type #${current}`;
  return new Error(
    `Search attribute ${name} is already registered as ${currentName}, but ${wanted} was requested. ` +
      'Temporal cannot change a search attribute type; ' +
      (dbFilename ? `delete ${dbFilename} to start fresh, or use a new attribute name.` : 'use a new attribute name.'),
  );
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err ?? 'none');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
