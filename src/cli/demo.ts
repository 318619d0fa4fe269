/**
 * `npm run demo`: the whole product on one machine in one command — Temporal CLI (found or installed),
 * dev server, worker, demo data, one scored day, and a summary a new user can follow up on.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ScorelineClient } from '../client';
import { generateDemoData } from '../demo/generate-data';
import { getFreePort } from '../dev/dev-server';
import { startStack } from '../dev/stack';
import { loadPipelineFile, readPipelineYaml } from '../config/pipeline';
import { TASK_QUEUE } from '../search-attributes';
import { isPortFree } from './ports';
import { formatDuration, ProgressReporter } from './progress';
import { resultJson, summaryLinesFor, waitForSignal } from './run-output';

export interface DemoOptions {
  projectDir: string;
  json?: boolean;
  keep?: boolean;
  rows: number;
  date: string;
  model: string;
}

export const DEMO_PIPELINE = 'examples/pipelines/churn-demo.yaml';
export const DEMO_DATA_DIR = 'examples/data/customers';

export async function runDemo(opts: DemoOptions): Promise<number> {
  const started = Date.now();
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const pipelinePath = join(opts.projectDir, DEMO_PIPELINE);
  const overrides = { model: opts.model };
  const config = loadPipelineFile(pipelinePath, overrides);

  const partition = join(opts.projectDir, DEMO_DATA_DIR, `ds=${opts.date}`);
  if (!existsSync(join(partition, 'part-0.parquet'))) {
    log(`generating demo data: ${opts.rows.toLocaleString('en-US')} customers × 32 features for ${opts.date} …`);
    const t = Date.now();
    await generateDemoData({ dir: join(opts.projectDir, DEMO_DATA_DIR), dates: [opts.date], rowsPerDate: opts.rows });
    log(`  wrote ${partition} in ${formatDuration(Date.now() - t)}`);
  } else {
    log(`demo data: ${partition} (exists)`);
  }

  // Default ports when free, so the Web UI is where the docs say; otherwise any free ones.
  const port = (await isPortFree(7233)) ? 7233 : await getFreePort();
  const uiPort = (await isPortFree(8233)) ? 8233 : await getFreePort();
  const stack = await startStack({
    projectDir: opts.projectDir,
    port,
    uiPort,
    worker: { pipelinesDir: join(opts.projectDir, 'examples', 'pipelines'), modelsDir: join(opts.projectDir, 'examples', 'models'), taskQueue: TASK_QUEUE },
    log,
  });
  let exitCode = 1;
  try {
    const client = await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE });
    try {
      const handle = await client.startRun({ config, raw: readPipelineYaml(pipelinePath), date: opts.date, overrides, trigger: 'demo' });
      log(`started ${handle.workflowId}`);
      const reporter = new ProgressReporter(process.stderr, true);
      const result = await client.wait(handle, (p) => reporter.update(p), 250);
      reporter.done();
      exitCode = result.status === 'succeeded' ? 0 : 1;
      process.stderr.write(`${summaryLinesFor(result, stack.uiUrl).join('\n')}\n`);
      log(`\nnext: query the output with  npx scoreline sql "SELECT count(*), avg(churn_probability) FROM churn_scores"`);
      log(`      total demo time ${formatDuration(Date.now() - started)}`);
      if (opts.json) process.stdout.write(`${JSON.stringify(resultJson(result))}\n`);
    } finally {
      await client.close();
    }
    if (opts.keep) {
      log(`\n--keep: server ${stack.address} and worker keep running${stack.uiUrl ? `; Web UI ${stack.uiUrl}` : ''}. Ctrl-C to stop.`);
      log(`  e.g. TEMPORAL_ADDRESS=${stack.address} npx scoreline run ${DEMO_PIPELINE} --date ${opts.date}`);
      await waitForSignal();
    }
  } finally {
    await stack.stop();
  }
  return exitCode;
}
