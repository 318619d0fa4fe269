/**
 * A lock file per model (`<root>/<name>/.lock`, created with O_EXCL), so two promotions or
 * registrations racing on one model serialise instead of interleaving their read-modify-write of
 * `aliases.yaml` and `alias-history.jsonl`. Readers never take it: every file they read is replaced
 * by rename (aliases.yaml, version directories) or only appended to (the history).
 */
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ModelError } from '../errors';

export const LOCK_FILE = '.lock';

export interface LockOptions {
  /** Give up after waiting this long (default 10 s). */
  timeoutMs?: number;
  /** A lock older than this is left over from a crashed process and is taken over (default 60 s). */
  staleMs?: number;
}

export async function withModelLock<T>(modelDir: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const staleMs = options.staleMs ?? 60_000;
  const path = join(modelDir, LOCK_FILE);
  await fs.mkdir(modelDir, { recursive: true });
  const started = Date.now();
  for (;;) {
    try {
      const handle = await fs.open(path, 'wx');
      await handle.writeFile(`${process.pid}@${hostname()} ${new Date().toISOString()}\n`);
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = await fs.stat(path).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > staleMs) {
        await fs.rm(path, { force: true });
        continue;
      }
      if (Date.now() - started > timeoutMs) {
        const holder = await fs.readFile(path, 'utf8').catch(() => '?');
        throw new ModelError(`${modelDir} is locked by ${holder.trim()} (${path}); another registration or promotion is running. If none is, delete the lock file`);
      }
      await new Promise((r) => setTimeout(r, 10 + Math.random() * 40));
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(path, { force: true });
  }
}
