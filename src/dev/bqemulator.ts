/**
 * A local BigQuery for tests and `npm run demo -- --source bigquery`: the PyPI package `bqemulator`
 * (REST + gRPC on DuckDB) in a project-local virtualenv, started on free ports and stopped cleanly.
 * Scoreline talks to it through the official `@google-cloud/bigquery` SDK exactly as to the real
 * service; only the connection differs (`apiEndpoint` plus a static bearer token the emulator accepts).
 *
 * Two things the package needs that its metadata does not say, both pinned below:
 * - `numpy` (its built-in UDFs are registered through DuckDB's numpy path), and
 * - DuckDB's `spatial` extension, which it downloads from extensions.duckdb.org at start and refuses to
 *   start without. That host is unreachable here (and on many CI machines), and no PyPI package ships
 *   the extension for the DuckDB it requires, so we start it through a tiny launcher that keeps trying
 *   the download but carries on without it: only GEOGRAPHY functions are lost, which Scoreline never uses.
 * The launcher also answers the emulator's own Python errors as what they are, HTTP 500 `internalError`
 * (as BigQuery answers its internal failures, which clients retry), not 400 `invalidQuery`: two requests
 * at once on its one shared DuckDB connection intermittently fail with "'NoneType' object has no
 * attribute 'schema'", which then failed a run's key check as if the query were wrong.
 */
import { spawnEmulator } from './emulator-process';
import * as path from 'node:path';
import { bigQueryClient } from '../../connectors/bigquery';
import type { BigQueryConnection } from '../connections';
import { getFreePort } from './dev-server';
import { defaultLog, ensureVenvTool, venvExecutable } from './python-venv';

/** Pinned: the emulator's SQL translation changes between releases; tests must see the same one. */
export const BQEMULATOR_PACKAGES = ['bqemulator==1.4.0', 'duckdb==2.0.1', 'numpy==2.4.6'];

export const EMULATOR_PROJECT = 'scoreline-local';
export const EMULATOR_DATASET = 'scoreline';
/** The emulator checks no credentials, but the SDK needs some; this one is never a secret. */
const EMULATOR_TOKEN = 'bqemulator-local-token';

const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 90_000;

/** Runs `bqemulator` with the spatial extension made optional (see the file comment). */
const LAUNCHER = `
import sys
from bqemulator.storage import engine as _engine
_load_spatial = _engine.DuckDBEngine._load_spatial
def _spatial_optional(self):
    try:
        _load_spatial(self)
    except Exception:
        sys.stderr.write("scoreline launcher: DuckDB spatial extension unavailable; GEOGRAPHY disabled\\n")
_engine.DuckDBEngine._load_spatial = _spatial_optional
import duckdb
from bqemulator.domain.errors import DomainError, InternalError
from bqemulator.jobs import error_mapper as _errors, executor as _executor
_translate = _errors.translate_runtime_error
def _internal_as_500(exc, *args, **kwargs):
    if isinstance(exc, (DomainError, duckdb.Error)):
        return _translate(exc, *args, **kwargs)
    return InternalError(f"bqemulator internal error: {type(exc).__name__}: {exc}")
_errors.translate_runtime_error = _internal_as_500
_executor.translate_runtime_error = _internal_as_500
from bqemulator.cli import main
sys.argv[0] = "bqemulator"
sys.exit(main())
`;

export interface BqEmulatorOptions {
  /** Project whose `.scoreline/bqemulator-venv` holds the install (tests pass the repo, so it happens once). */
  projectDir: string;
  /** Project id the emulator serves by default; default `scoreline-local`. */
  project?: string;
  /** Dataset to create and use as the connection's default; default `scoreline`. */
  dataset?: string;
  /** Connection name, as a pipeline would refer to it; default `bigquery`. */
  name?: string;
  log?: (msg: string) => void;
}

export interface BqEmulator {
  /** REST port (`http://127.0.0.1:<port>`). */
  port: number;
  grpcPort: number;
  endpoint: string;
  /** What `Connections.bigquery(name)` would return for this emulator. */
  connection: BigQueryConnection;
  /** SIGTERM, then SIGKILL after 10 s. Idempotent. */
  stop(): Promise<void>;
}

/** The emulator's executable, installing it into `<projectDir>/.scoreline/bqemulator-venv` if missing. */
export async function ensureBqEmulator(projectDir: string, log: (msg: string) => void = defaultLog): Promise<string> {
  const venvDir = path.join(projectDir, '.scoreline', 'bqemulator-venv');
  await ensureVenvTool({
    venvDir,
    packages: BQEMULATOR_PACKAGES,
    executable: 'bqemulator',
    what: 'the BigQuery emulator (bqemulator)',
    sizeNote: 'DuckDB, pyarrow, grpc and friends, ~450 MB unpacked',
    hint: 'It is only needed for the BigQuery tests and demo; pipelines against real BigQuery do not use it.',
    log,
  });
  return venvExecutable(venvDir, 'python');
}

export async function startBqEmulator(opts: BqEmulatorOptions): Promise<BqEmulator> {
  const log = opts.log ?? (() => undefined);
  const project = opts.project ?? EMULATOR_PROJECT;
  const dataset = opts.dataset ?? EMULATOR_DATASET;
  const python = await ensureBqEmulator(opts.projectDir, opts.log ?? defaultLog);
  const port = await getFreePort(HOST);
  const grpcPort = await getFreePort(HOST);
  // Flags checked against `bqemulator start --help` of 1.4.0. Ephemeral: state lives in memory only.
  const args = ['-c', LAUNCHER, 'start', '--rest-host', HOST, '--rest-port', String(port), '--grpc-host', HOST, '--grpc-port', String(grpcPort), '--project', project, '--ephemeral', '--log-level', 'warning'];
  log(`Starting bqemulator on ${HOST}:${port} (gRPC ${grpcPort})`);
  const proc = spawnEmulator('bqemulator', python, args);
  const endpoint = `http://${HOST}:${port}`;
  try {
    await proc.ready(`${endpoint}/readyz`, START_TIMEOUT_MS);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  const connection = emulatorConnection(endpoint, project, dataset, opts.name ?? 'bigquery');
  try {
    await bigQueryClient(connection).dataset(dataset).get({ autoCreate: true });
  } catch (err) {
    await proc.stop();
    throw new Error(`bqemulator at ${endpoint} started but creating dataset ${project}.${dataset} failed: ${(err as Error).message}`);
  }
  log(`bqemulator ready at ${endpoint} (pid ${proc.child.pid})`);
  return { port, grpcPort, endpoint, connection, stop: proc.stop };
}

/** A connection to an emulator at `endpoint`, shaped exactly like one from `Connections`. */
export function emulatorConnection(endpoint: string, project = EMULATOR_PROJECT, dataset = EMULATOR_DATASET, name = 'bigquery'): BigQueryConnection {
  // A static token: no ADC lookup, no metadata server. Do not use BIGQUERY_EMULATOR_HOST instead: the
  // SDK then drops the `/bigquery/v2` base path for uploads, and load jobs fail.
  const { OAuth2Client } = require('google-auth-library') as typeof import('google-auth-library');
  const authClient = new OAuth2Client();
  authClient.setCredentials({ access_token: EMULATOR_TOKEN });
  return { kind: 'bigquery', name, project, dataset, options: { projectId: project, apiEndpoint: endpoint, authClient } };
}
