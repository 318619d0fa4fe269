import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs, readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DEV_SERVER_DYNAMIC_CONFIG, startDevServer, type DevServer, type SearchAttributeTypeName } from '../../src/dev/dev-server';
import { ensureTemporalCli, findTemporalCli } from '../../src/dev/temporal-cli';

const SERVER_TEST_TIMEOUT_MS = 120_000;
/** The first run on a fresh machine may pip-install the CLI. */
const INSTALL_TIMEOUT_MS = 600_000;

let tmp: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'scoreline-dev-server-'));
});

afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('findTemporalCli', () => {
  it('rejects a TEMPORAL_CLI that points at nothing, naming the variable', async () => {
    const missing = path.join(tmp, 'no-such-dir', 'temporal');
    await expect(findTemporalCli({ projectDir: tmp, env: { TEMPORAL_CLI: missing, PATH: '' } })).rejects.toThrow(
      /TEMPORAL_CLI is set to ".*no-such-dir.*temporal", but no executable file exists there/,
    );
  });

  it('prefers TEMPORAL_CLI, then PATH, then the project-local install', async () => {
    const projectDir = path.join(tmp, 'lookup');
    const fromEnv = await fakeExecutable(path.join(projectDir, 'custom', 'temporal'));
    const onPath = await fakeExecutable(path.join(projectDir, 'on-path', 'temporal'));
    const local = await fakeExecutable(path.join(projectDir, '.scoreline', 'bin', 'temporal'));
    const pathDir = path.dirname(onPath);

    expect(await findTemporalCli({ projectDir, env: { TEMPORAL_CLI: fromEnv, PATH: pathDir } })).toEqual({
      path: fromEnv,
      source: 'env',
    });
    expect(await findTemporalCli({ projectDir, env: { PATH: pathDir } })).toEqual({ path: onPath, source: 'path' });
    expect(await findTemporalCli({ projectDir, env: { PATH: '' } })).toEqual({ path: local, source: 'project' });
  });
});

describe('startDevServer failures (fake CLI)', () => {
  it('reports the exit code and output tail when the server dies during start-up', async () => {
    const cliPath = await fakeExecutable(path.join(tmp, 'dying', 'temporal'), 'echo "boom: bad flag" >&2\nexit 3');
    await expect(startDevServer({ cliPath, headless: true })).rejects.toThrow(
      /exited with code 3 before becoming ready[\s\S]*boom: bad flag/,
    );
  });

  it('times out, kills the process and reports the output tail when the server never answers', async () => {
    const pidFile = path.join(tmp, 'silent.pid');
    const cliPath = await fakeExecutable(
      path.join(tmp, 'silent', 'temporal'),
      `echo $$ > ${pidFile}\necho "still warming up"\nexec sleep 60`,
    );
    await expect(startDevServer({ cliPath, headless: true, startTimeoutMs: 1_000 })).rejects.toThrow(
      /did not become ready within 1000 ms[\s\S]*still warming up/,
    );
    const pid = Number(await fs.readFile(pidFile, 'utf8'));
    expect(isProcessRunning(pid)).toBe(false);
  });

  it('raises the single shard task-queue read rates and puts a state file in WAL mode; callers override the rates', async () => {
    const argsFile = path.join(tmp, 'args.txt');
    const cliPath = await fakeExecutable(path.join(tmp, 'recording', 'temporal'), `printf '%s\\n' "$@" > ${argsFile}\nexit 7`);
    const startedWith = async (opts: Parameters<typeof startDevServer>[0]) => {
      await expect(startDevServer({ cliPath, headless: true, ...opts })).rejects.toThrow(/exited with code 7/);
      const lines = (await fs.readFile(argsFile, 'utf8')).trim().split('\n');
      const valuesOf = (flag: string) => lines.flatMap((l, i) => (l === flag ? [lines[i + 1]] : []));
      return { dynamic: valuesOf('--dynamic-config-value'), pragmas: valuesOf('--sqlite-pragma') };
    };

    const inMemory = await startedWith({});
    expect(inMemory.dynamic).toEqual(Object.entries(DEV_SERVER_DYNAMIC_CONFIG).map(([k, v]) => `${k}=${v}`));
    expect(inMemory.dynamic).toContain('history.transferProcessorMaxPollRPS=1000');
    expect(inMemory.pragmas).toEqual([]);

    const withFile = await startedWith({ dbFilename: path.join(tmp, 'state', 'temporal.db'), dynamicConfig: { 'history.transferProcessorMaxPollRPS': 50, 'limit.maxIDLength': 255 } });
    expect(withFile.dynamic).toContain('history.transferProcessorMaxPollRPS=50');
    expect(withFile.dynamic).not.toContain('history.transferProcessorMaxPollRPS=1000');
    expect(withFile.dynamic).toContain('limit.maxIDLength=255');
    expect(withFile.pragmas).toEqual(['journal_mode=wal', 'synchronous=normal']);
  });
});

describe('dev server (real Temporal CLI)', () => {
  let cliPath: string;
  const servers: DevServer[] = [];

  beforeAll(async () => {
    const cli = await ensureTemporalCli({ log: (m) => console.log(`[temporal-cli] ${m}`) });
    cliPath = cli.path;
  }, INSTALL_TIMEOUT_MS);

  afterAll(async () => {
    // Safety net if an assertion failed mid-test; stop() is idempotent.
    await Promise.all(servers.map((s) => s.stop()));
  });

  async function start(dbFilename: string, searchAttributes: Record<string, SearchAttributeTypeName>) {
    const server = await startDevServer({
      cliPath,
      dbFilename,
      headless: true,
      namespace: 'scoreline-test',
      searchAttributes,
      logFile: path.join(tmp, 'logs', 'temporal.log'),
    });
    servers.push(server);
    return server;
  }

  it(
    'serves the namespace with search attributes, stops cleanly and keeps state across restarts',
    async () => {
      const dbFilename = path.join(tmp, 'state', 'nested', 'temporal.db'); // directory does not exist yet
      const first = await start(dbFilename, { ScorelineTestPipeline: 'Keyword', ScorelineTestRows: 'Int' });

      expect(first.address).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(first.uiUrl).toBeUndefined();
      expect(first.pid).toBeGreaterThan(0);

      const workflowId = 'dev-server-test-persisted';
      await withClient(first.address, async (client, connection) => {
        const ns = await connection.workflowService.describeNamespace({ namespace: 'scoreline-test' });
        expect(ns.namespaceInfo?.name).toBe('scoreline-test');
        expect(await customSearchAttributes(connection)).toMatchObject({
          ScorelineTestPipeline: 2, // IndexedValueType KEYWORD
          ScorelineTestRows: 3, // INT
        });
        // No worker needed: the run just waits in its task queue, which is enough to prove persistence.
        await client.workflow.start('notARealWorkflow', { taskQueue: 'dev-server-test', workflowId });
      });

      await first.stop();
      await first.stop(); // idempotent
      await expect(isPortOpen(first.address)).resolves.toBe(false);

      // Same db file; one attribute added, which the CLI alone would silently ignore on an existing db.
      const second = await start(dbFilename, {
        ScorelineTestPipeline: 'Keyword',
        ScorelineTestRows: 'Int',
        ScorelineTestModel: 'Text',
      });
      await withClient(second.address, async (client, connection) => {
        expect(await customSearchAttributes(connection)).toMatchObject({
          ScorelineTestPipeline: 2,
          ScorelineTestRows: 3,
          ScorelineTestModel: 1, // TEXT
        });
        const handle = client.workflow.getHandle(workflowId);
        expect((await handle.describe()).status.name).toBe('RUNNING');
        await handle.terminate('test done');
      });
      await second.stop();
      await expect(isPortOpen(second.address)).resolves.toBe(false);
    },
    SERVER_TEST_TIMEOUT_MS,
  );

  it(
    'runs in memory with the Web UI; a second server on the same port fails fast instead of probing the first',
    async () => {
      const server = await startDevServer({ cliPath });
      servers.push(server);
      expect(server.namespace).toBe('default');
      expect(server.uiUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

      const port = Number(server.address.split(':')[1]);
      const started = Date.now();
      await expect(startDevServer({ cliPath, port, headless: true })).rejects.toThrow(
        /Port \d+ on 127\.0\.0\.1 is already in use .*choose another with --port\./,
      );
      expect(Date.now() - started).toBeLessThan(30_000);

      await server.stop();
    },
    SERVER_TEST_TIMEOUT_MS,
  );
});

async function fakeExecutable(file: string, body = 'exit 0'): Promise<string> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

function isProcessRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A killed child can linger as a zombie until reaped; that counts as gone.
  return !/^State:\s+Z/m.test(readProcStatus(pid));
}

function readProcStatus(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return '';
  }
}

async function withClient(address: string, fn: (client: Client, connection: Connection) => Promise<void>) {
  const connection = await Connection.connect({ address });
  try {
    await fn(new Client({ connection, namespace: 'scoreline-test' }), connection);
  } finally {
    await connection.close();
  }
}

async function customSearchAttributes(connection: Connection): Promise<Record<string, number>> {
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: 'scoreline-test' });
  return Object.fromEntries(Object.entries(customAttributes ?? {}).map(([name, type]) => [name, Number(type)]));
}

function isPortOpen(address: string): Promise<boolean> {
  const [host, port] = address.split(':') as [string, string];
  return new Promise((resolve) => {
    const socket = net.connect({ host, port: Number(port) });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
