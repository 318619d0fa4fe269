/**
 * A local Snowflake for tests and `npm run demo -- --source snowflake`: the PyPI package `fakesnow`
 * (a Snowflake-dialect server on DuckDB) in a project-local virtualenv, started on a free port through
 * `test/emulators/fakesnow_server.py` and stopped cleanly. Scoreline talks to it with the official
 * `snowflake-sdk` exactly as to a real account; only the connection options differ (`accessUrl` over
 * plain http, credentials the emulator does not check).
 *
 * Why a launcher and not `fakesnow -s`: fakesnow answers queries with Arrow rowsets, which the Node.js
 * driver does not decode, and tells the driver to upload every array bind with PUT, which it does not
 * support. The launcher re-encodes results as JSON and keeps binds inline (details in its docstring);
 * the product code is unchanged.
 */
import { spawnEmulator } from './emulator-process';
import * as path from 'node:path';
import type { SnowflakeConnection } from '../connections';
import { packageRoot } from '../paths';
import { getFreePort } from './dev-server';
import { defaultLog, ensureVenvTool, venvExecutable } from './python-venv';

/**
 * Pinned: the emulator's SQL translation changes between releases. fakesnow 0.12.1 imports modules that
 * snowflake-connector-python 5 moved, so the connector is pinned to the last 4.x.
 */
export const FAKESNOW_PACKAGES = ['fakesnow[server]==0.12.1', 'snowflake-connector-python==4.8.1'];

export const FAKESNOW_DATABASE = 'SCORELINE';
export const FAKESNOW_SCHEMA = 'PUBLIC';
/** fakesnow checks no credentials, but the SDK needs some; these are never secrets. */
const FAKESNOW_USER = 'scoreline';
const FAKESNOW_PASSWORD = 'fakesnow-local';
/** Array binds stay inline below this many values; the emulator cannot take the staged (PUT) path. */
const ARRAY_BIND_THRESHOLD = 2 ** 31 - 1;

const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 60_000;

export interface FakesnowOptions {
  /** Project directory (for messages); the install goes under `toolsDir`. */
  projectDir: string;
  /** Whose `.scoreline/fakesnow-venv` holds the install; default `projectDir` (tests pass the repo, so it happens once). */
  toolsDir?: string;
  /** Connection name, as a pipeline would refer to it; default `snowflake`. */
  name?: string;
  log?: (msg: string) => void;
}

export interface Fakesnow {
  port: number;
  /** `http://127.0.0.1:<port>`. */
  endpoint: string;
  /** What `Connections.snowflake(name)` would return for this emulator (database SCORELINE, schema PUBLIC). */
  connection: SnowflakeConnection;
  /** SIGTERM, then SIGKILL after 10 s. Idempotent. */
  stop(): Promise<void>;
}

/** The venv's python, installing fakesnow into `<toolsDir>/.scoreline/fakesnow-venv` if missing. */
export async function ensureFakesnow(toolsDir: string, log: (msg: string) => void = defaultLog): Promise<string> {
  const venvDir = path.join(toolsDir, '.scoreline', 'fakesnow-venv');
  await ensureVenvTool({
    venvDir,
    packages: FAKESNOW_PACKAGES,
    executable: 'fakesnow',
    what: 'the Snowflake emulator (fakesnow)',
    sizeNote: 'DuckDB, pyarrow, sqlglot and the Snowflake Python connector, ~350 MB unpacked',
    hint: 'It is only needed for the Snowflake tests and demo; pipelines against a real Snowflake account do not use it.',
    log,
  });
  return venvExecutable(venvDir, 'python');
}

/** The launcher ships with the package (test infrastructure, but the demo uses it too). */
export function fakesnowLauncher(): string {
  return path.join(packageRoot(), 'test', 'emulators', 'fakesnow_server.py');
}

export async function startFakesnow(opts: FakesnowOptions): Promise<Fakesnow> {
  const log = opts.log ?? (() => undefined);
  const python = await ensureFakesnow(opts.toolsDir ?? opts.projectDir, opts.log ?? defaultLog);
  const port = await getFreePort(HOST);
  const endpoint = `http://${HOST}:${port}`;
  log(`Starting fakesnow on ${endpoint}`);
  const proc = spawnEmulator('fakesnow', python, [fakesnowLauncher(), '--host', HOST, '--port', String(port)]);
  try {
    await proc.ready(`${endpoint}/scoreline/health`, START_TIMEOUT_MS);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  log(`fakesnow ready at ${endpoint} (pid ${proc.child.pid})`);
  return { port, endpoint, connection: fakesnowConnection(endpoint, opts.name ?? 'snowflake'), stop: proc.stop };
}

/** A connection to the emulator at `endpoint`, shaped exactly like one from `Connections`. */
export function fakesnowConnection(endpoint: string, name = 'snowflake'): SnowflakeConnection {
  return {
    kind: 'snowflake',
    name,
    options: {
      account: 'fakesnow',
      username: FAKESNOW_USER,
      password: FAKESNOW_PASSWORD,
      database: FAKESNOW_DATABASE,
      schema: FAKESNOW_SCHEMA,
      accessUrl: endpoint,
      arrayBindingThreshold: ARRAY_BIND_THRESHOLD,
    },
  };
}
