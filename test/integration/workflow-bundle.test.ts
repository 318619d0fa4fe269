import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../../src/paths';
import { workflowBundle } from '../../src/workflow-bundle';

const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

describe('workflow bundle kept between worker starts', () => {
  let dir: string;
  let workflows: string;
  let cacheDir: string;
  const bundle = () => workflowBundle({ workflowsPath: workflows, cacheDir, logger: quiet });
  /** Source written "a minute ago": a module changed during bundling (a fresh mtime) is never kept. */
  const writeSource = async (body: string) => {
    await fs.writeFile(workflows, body);
    const then = new Date(Date.now() - 60_000);
    await fs.utimes(workflows, then, then);
  };
  const kept = async () => (await fs.readdir(cacheDir).catch(() => [])).filter((f) => f.endsWith('.bundle'));

  beforeAll(async () => {
    // Inside the repository: the bundler resolves @temporalio/workflow from the workflow file's directory.
    await fs.mkdir(path.join(packageRoot(), '.scoreline'), { recursive: true });
    dir = await fs.mkdtemp(path.join(packageRoot(), '.scoreline', 'bundle-test-'));
    workflows = path.join(dir, 'workflows.js');
    cacheDir = path.join(dir, 'cache');
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('builds once, reuses it while every module hashes the same, and rebuilds when one changes', async () => {
    await writeSource(`exports.greet = async function greet() { return 'first version'; };\n`);
    const first = await bundle();
    expect(first.code).toContain('first version');
    const [file] = await kept();
    expect(file).toMatch(/^workflows-[0-9a-f]{16}\.bundle$/);
    const manifest = JSON.parse((await fs.readFile(path.join(cacheDir, file), 'utf8')).split('\n', 1)[0]) as { modules: Record<string, string> };
    expect(Object.keys(manifest.modules)).toContain(workflows);
    expect(Object.keys(manifest.modules).some((m) => m.includes(`${path.sep}@temporalio${path.sep}workflow${path.sep}`))).toBe(true);

    // Reused: a marker put into the kept code comes back, so nothing was bundled.
    await fs.appendFile(path.join(cacheDir, file), '\n// kept copy\n');
    expect((await bundle()).code).toContain('// kept copy');

    // An edited module: bundled again from the new source, and the new bundle replaces the old one.
    await writeSource(`exports.greet = async function greet() { return 'second version'; };\n`);
    const second = await bundle();
    expect(second.code).toContain('second version');
    expect(second.code).not.toContain('// kept copy');
    expect(await kept()).toEqual([file]);

    // A module written while (or just before) bundling is not trusted: the bundle is used but not kept.
    await fs.writeFile(workflows, `exports.greet = async function greet() { return 'third version'; };\n`);
    await fs.rm(path.join(cacheDir, file));
    expect((await bundle()).code).toContain('third version');
    expect(await kept()).toEqual([]);
  }, 60_000);

  it('builds without keeping when the cache directory cannot be written', async () => {
    await writeSource(`exports.greet = async function greet() { return 'unkept'; };\n`);
    const blocked = path.join(dir, 'not-a-dir');
    await fs.writeFile(blocked, 'a file where the cache directory would be');
    expect((await workflowBundle({ workflowsPath: workflows, cacheDir: blocked, logger: quiet })).code).toContain('unkept');
  }, 60_000);
});
