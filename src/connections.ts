/**
 * Named warehouse connections. Pipelines say `connection: warehouse`; the worker resolves the name from
 * `SCORELINE_CONNECTION_<NAME>` (JSON) or the connections file (`SCORELINE_CONNECTIONS`, default
 * `<project>/connections.yaml`) and reads credentials from its own environment at connect time. So a
 * secret never appears in a pipeline file, workflow input, Temporal history, log line or audit row:
 * the connections file itself may only *name* environment variables, and saying `password:` there is
 * an error.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { BigQueryOptions } from '@google-cloud/bigquery';
import type { ConnectionOptions as SnowflakeOptions } from 'snowflake-sdk';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { NAME_PATTERN } from './config/pipeline';
import { ConfigError } from './errors';

export interface SnowflakeConnection {
  kind: 'snowflake';
  name: string;
  /** Exactly what `snowflake.createConnection` takes, credentials included: never log or persist it. */
  options: SnowflakeOptions;
}

export interface BigQueryConnection {
  kind: 'bigquery';
  name: string;
  project: string;
  /** Default dataset for unqualified table names and the audit tables. */
  dataset?: string;
  location?: string;
  /** Exactly what `new BigQuery(options)` takes, credentials included: never log or persist it. */
  options: BigQueryOptions;
}

export type WarehouseConnection = SnowflakeConnection | BigQueryConnection;

/** Keys that would put a secret into the file; the message says which `*_env` key to use instead. */
const SECRET_KEYS: Record<string, string> = {
  password: 'password_env',
  passcode: 'password_env',
  token: 'access_token_env',
  access_token: 'access_token_env',
  accesstoken: 'access_token_env',
  privatekey: 'private_key_path',
  private_key: 'private_key_path',
  privatekeypass: 'private_key_passphrase_env',
  private_key_passphrase: 'private_key_passphrase_env',
  credentials: 'key_file',
  client_secret: 'key_file',
};

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name');
/** Extra SDK options (timeouts, retry settings, arrayBindingThreshold…): plain values only. */
const extraOptions = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({});

const snowflakeSchema = z.strictObject({
  kind: z.literal('snowflake'),
  account: z.string().min(1),
  username: z.string().min(1),
  database: z.string().min(1).optional(),
  schema: z.string().min(1).optional(),
  warehouse: z.string().min(1).optional(),
  role: z.string().min(1).optional(),
  /** Password auth: the environment variable holding it (default SNOWFLAKE_PASSWORD). */
  password_env: envName.default('SNOWFLAKE_PASSWORD'),
  /** Key-pair auth (SNOWFLAKE_JWT): path of the PEM private key, or the env var holding that path. */
  private_key_path: z.string().min(1).optional(),
  private_key_path_env: envName.optional(),
  private_key_passphrase_env: envName.optional(),
  /** Only for private links and local emulators; real accounts derive it from `account`. */
  access_url: z.string().url().optional(),
  options: extraOptions,
});

const bigquerySchema = z.strictObject({
  kind: z.literal('bigquery'),
  project: z.string().regex(/^[a-z][a-z0-9-]{4,61}[a-z0-9]$|^[A-Za-z][A-Za-z0-9_-]{0,62}$/, 'a Google Cloud project id'),
  dataset: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,1023}$/, 'a dataset name (letters, digits, _)').optional(),
  location: z.string().min(1).optional(),
  /** Service-account key file; default: application default credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud, metadata server). */
  key_file: z.string().min(1).optional(),
  key_file_env: envName.optional(),
  /** A bearer token from this env var instead of ADC (short-lived tokens, local emulators). */
  access_token_env: envName.optional(),
  /** Only for local emulators and private endpoints. */
  api_endpoint: z.string().url().optional(),
  options: extraOptions,
});

const connectionSchema = z.discriminatedUnion('kind', [snowflakeSchema, bigquerySchema]);
export type ConnectionSpec = z.output<typeof connectionSchema>;

const fileSchema = z.strictObject({ connections: z.record(z.string().regex(NAME_PATTERN, 'a connection name'), z.unknown()) });

export interface ConnectionsOptions {
  /** Directory that holds `connections.yaml` by default and against which relative paths resolve. */
  baseDir: string;
  env?: NodeJS.ProcessEnv;
  /** Connections given in code (tests, the demo against local emulators); they win over env and file. */
  given?: Record<string, WarehouseConnection>;
}

/** Resolves connection names to SDK options, reading secrets from the environment on each resolve. */
export class Connections {
  private readonly env: NodeJS.ProcessEnv;
  private fileSpecs?: Record<string, unknown>;

  constructor(private readonly opts: ConnectionsOptions) {
    this.env = opts.env ?? process.env;
  }

  /** The file consulted for names not set in code or env (it need not exist). */
  get file(): string {
    return resolve(this.opts.baseDir, this.env.SCORELINE_CONNECTIONS ?? 'connections.yaml');
  }

  spec(name: string): ConnectionSpec {
    const envKey = `SCORELINE_CONNECTION_${name.toUpperCase().replace(/-/g, '_')}`;
    const fromEnv = this.env[envKey];
    if (fromEnv !== undefined) {
      let raw: unknown;
      try {
        raw = JSON.parse(fromEnv);
      } catch {
        // Not the parser's message: it quotes the input, which may hold a password put there by mistake.
        throw new ConfigError(`${envKey}: not valid JSON (expected an object such as {"kind": "bigquery", "project": "…"})`);
      }
      return parseSpec(raw, envKey);
    }
    const specs = this.loadFile();
    if (!(name in specs)) {
      const known = Object.keys(specs);
      throw new ConfigError(
        `connection "${name}" is not defined: add it under "connections:" in ${this.file}` +
          `${known.length ? ` (defined there: ${known.join(', ')})` : ''}, or set ${envKey} to its JSON in the worker's environment`,
      );
    }
    return parseSpec(specs[name], `${this.file}: connections.${name}`);
  }

  snowflake(name: string): SnowflakeConnection {
    const given = this.given(name, 'snowflake');
    if (given) return given;
    const spec = this.spec(name);
    if (spec.kind !== 'snowflake') throw new ConfigError(`connection "${name}" is a ${spec.kind} connection, the pipeline needs snowflake`);
    return { kind: 'snowflake', name, options: this.snowflakeOptions(name, spec) };
  }

  bigquery(name: string): BigQueryConnection {
    const given = this.given(name, 'bigquery');
    if (given) return given;
    const spec = this.spec(name);
    if (spec.kind !== 'bigquery') throw new ConfigError(`connection "${name}" is a ${spec.kind} connection, the pipeline needs bigquery`);
    const options: BigQueryOptions = { ...spec.options, projectId: spec.project };
    if (spec.location) options.location = spec.location;
    if (spec.api_endpoint) options.apiEndpoint = spec.api_endpoint;
    const keyFile = spec.key_file ?? (spec.key_file_env ? this.requireEnv(name, spec.key_file_env, 'the key file path') : undefined);
    if (keyFile) options.keyFilename = resolve(this.opts.baseDir, keyFile);
    if (spec.access_token_env) {
      const { OAuth2Client } = require('google-auth-library') as typeof import('google-auth-library'); // only for BigQuery
      const client = new OAuth2Client();
      client.setCredentials({ access_token: this.requireEnv(name, spec.access_token_env, 'the access token') });
      options.authClient = client;
    }
    return { kind: 'bigquery', name, project: spec.project, dataset: spec.dataset, location: spec.location, options };
  }

  private given<K extends WarehouseConnection['kind']>(name: string, kind: K): Extract<WarehouseConnection, { kind: K }> | undefined {
    const conn = this.opts.given?.[name];
    if (conn && conn.kind !== kind) throw new ConfigError(`connection "${name}" is a ${conn.kind} connection, the pipeline needs ${kind}`);
    return conn as Extract<WarehouseConnection, { kind: K }> | undefined;
  }

  private snowflakeOptions(name: string, spec: Extract<ConnectionSpec, { kind: 'snowflake' }>): SnowflakeOptions {
    // The driver retries a failed login 7 times with backoff (~2 minutes to give up on an unreachable
    // account) inside a step that Temporal retries anyway: 2 tries (~4 s), unless `options` says otherwise.
    const options: SnowflakeOptions = { sfRetryMaxLoginRetries: 2, ...spec.options, account: spec.account, username: spec.username };
    if (spec.database) options.database = spec.database;
    if (spec.schema) options.schema = spec.schema;
    if (spec.warehouse) options.warehouse = spec.warehouse;
    if (spec.role) options.role = spec.role;
    if (spec.access_url) options.accessUrl = spec.access_url;
    const keyPath = spec.private_key_path ?? (spec.private_key_path_env ? this.requireEnv(name, spec.private_key_path_env, 'the private key path') : undefined);
    if (keyPath) {
      options.authenticator = 'SNOWFLAKE_JWT';
      options.privateKeyPath = resolve(this.opts.baseDir, keyPath);
      if (spec.private_key_passphrase_env) options.privateKeyPass = this.requireEnv(name, spec.private_key_passphrase_env, 'the key passphrase');
    } else {
      options.password = this.requireEnv(name, spec.password_env, 'the password');
    }
    return options;
  }

  private requireEnv(name: string, variable: string, what: string): string {
    const value = this.env[variable];
    if (value === undefined || value === '') {
      throw new ConfigError(`connection "${name}": ${what} comes from the environment variable ${variable}, which is not set in the worker's environment`);
    }
    return value;
  }

  private loadFile(): Record<string, unknown> {
    if (this.fileSpecs) return this.fileSpecs;
    const file = this.file;
    if (!existsSync(file)) return {};
    let raw: unknown;
    try {
      raw = parseYaml(readFileSync(file, 'utf8'));
    } catch (err) {
      // Only the position: the parser's message shows the offending line, which may hold a secret.
      const pos = (err as { linePos?: { line: number; col: number }[] }).linePos?.[0];
      throw new ConfigError(`${file}: invalid YAML${pos ? ` at line ${pos.line}, column ${pos.col}` : ''}`);
    }
    const parsed = fileSchema.safeParse(raw);
    if (!parsed.success) {
      throw new ConfigError(`${file}: expected a mapping "connections:" of name → connection (${parsed.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`).join('; ')})`);
    }
    this.fileSpecs = parsed.data.connections;
    return this.fileSpecs;
  }
}

function parseSpec(raw: unknown, origin: string): ConnectionSpec {
  rejectSecrets(raw, origin);
  const parsed = connectionSchema.safeParse(raw);
  if (!parsed.success) {
    // Messages name fields, never values: a mistyped key could hold a secret.
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.code === 'unrecognized_keys' ? `unknown field(s) ${i.keys.join(', ')}` : i.message}`);
    throw new ConfigError(`${origin}: ${issues.join('; ')}`);
  }
  return parsed.data;
}

function rejectSecrets(raw: unknown, origin: string): void {
  if (typeof raw !== 'object' || raw === null) return;
  const entries = Object.entries(raw as Record<string, unknown>);
  const nested = (raw as { options?: unknown }).options;
  const all = typeof nested === 'object' && nested !== null ? [...entries, ...Object.entries(nested)] : entries;
  const snowflake = (raw as { kind?: unknown }).kind === 'snowflake';
  for (const [key] of all) {
    let instead = SECRET_KEYS[key.toLowerCase()];
    // access_token_env is BigQuery's; a Snowflake connection authenticates by password or key pair.
    if (instead === 'access_token_env' && snowflake) instead = 'password_env" (or key-pair auth with "private_key_path';
    if (instead) {
      throw new ConfigError(`${origin}: "${key}" would put a secret into the connection's configuration; name the environment variable that holds it with "${instead}" instead`);
    }
  }
}
