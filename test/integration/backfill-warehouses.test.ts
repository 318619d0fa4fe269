/**
 * Input fingerprints of the warehouse sources on their emulators (fakesnow, bigquery-emulator): the
 * plan gives one, the same input gives the same one, and a changed value in a read column changes it.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bigQueryClient, BigQuerySource } from '../../connectors/bigquery';
import { closeSnowflakeConnections, runSnowflake, SnowflakeSource } from '../../connectors/snowflake';
import type { Source } from '../../connectors/types';
import { parsePipeline, type PipelineConfig } from '../../src/config/pipeline';
import { seedBigQueryTable } from '../../src/dev/bq-seed';
import { startBqEmulator, type BqEmulator } from '../../src/dev/bqemulator';
import { startFakesnow, type Fakesnow } from '../../src/dev/fakesnow';
import { seedSnowflakeTable } from '../../src/dev/snowflake-seed';
import type { RunRef } from '../../src/types';
import { cleanup, REPO, tempProject } from '../helpers/project';

const DATE = '2026-11-01';
const ROWS = 500;
let project: string;
let counter = 0;

const runOf = (config: PipelineConfig): RunRef => ({ runId: `fp-${++counter}-${Date.now()}`, workflowId: 'fp', pipeline: config.name, logicalDate: DATE, trigger: 'test' });

/** The fingerprint of one plan (its snapshot dropped again). */
async function fingerprint(source: Source, config: PipelineConfig): Promise<string | undefined> {
  const run = runOf(config);
  try {
    const plan = await source.plan({ config, run, columns: ['customer_id', 'f00', 'f01'], chunkRows: 1000 });
    expect(plan.rows).toBe(ROWS);
    return plan.fingerprint;
  } finally {
    await source.cleanup?.(config, run);
  }
}

beforeAll(() => {
  project = tempProject('scoreline-fp-wh-');
});
afterAll(() => cleanup(project));

describe('snowflake fingerprint', () => {
  let emulator: Fakesnow;
  beforeAll(async () => {
    emulator = await startFakesnow({ projectDir: project, toolsDir: REPO });
    await seedSnowflakeTable({ connection: emulator.connection, table: 'features', dates: [DATE], rowsPerDate: ROWS, dir: join(project, 'data', 'sf') });
  }, 300_000);
  afterAll(async () => {
    await closeSnowflakeConnections();
    await emulator?.stop();
  });

  it('is stable for the same input and changes with a value the run reads', async () => {
    const config = parsePipeline(
      { name: 'fp-sf', source: { kind: 'snowflake', connection: 'snowflake', table: 'features', where: 'ds = {{ ds }}', key: ['customer_id'] }, model: 'm@champion', sink: { kind: 'snowflake', connection: 'snowflake', table: 'out' } },
      'test',
    );
    const source = new SnowflakeSource(emulator.connection);
    const first = await fingerprint(source, config);
    expect(first).toMatch(new RegExp(`^snowflake:v1:${ROWS}:-?\\d+$`));
    expect(await fingerprint(source, config)).toBe(first);
    await runSnowflake(emulator.connection, 'UPDATE features SET f00 = f00 + 1 WHERE customer_id = (SELECT MIN(customer_id) FROM features)');
    const changed = await fingerprint(source, config);
    expect(changed).toMatch(/^snowflake:v1:/);
    expect(changed).not.toBe(first);
  }, 120_000);
});

describe('bigquery fingerprint', () => {
  let emulator: BqEmulator;
  beforeAll(async () => {
    emulator = await startBqEmulator({ projectDir: REPO });
    await seedBigQueryTable({ connection: emulator.connection, table: 'scoreline.features', dates: [DATE], rowsPerDate: ROWS, dir: join(project, 'data', 'bq') });
  }, 300_000);
  afterAll(async () => {
    await emulator?.stop();
  });

  it('is stable for the same input and changes with a value the run reads', async () => {
    const config = parsePipeline(
      { name: 'fp-bq', source: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.features', where: 'ds = {{ ds }}', key: ['customer_id'] }, model: 'm@champion', sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.out' } },
      'test',
    );
    const source = new BigQuerySource(emulator.connection);
    const first = await fingerprint(source, config);
    expect(first).toMatch(new RegExp(`^bigquery:v1:${ROWS}:-?\\d+$`));
    expect(await fingerprint(source, config)).toBe(first);
    const [job] = await bigQueryClient(emulator.connection).createQueryJob({ query: 'UPDATE scoreline.features SET f00 = f00 + 1 WHERE customer_id = (SELECT MIN(customer_id) FROM scoreline.features)', useLegacySql: false });
    await job.promise();
    const changed = await fingerprint(source, config);
    expect(changed).toMatch(/^bigquery:v1:/);
    expect(changed).not.toBe(first);
  }, 120_000);
});
