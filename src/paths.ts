import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The installed Scoreline package's root (works from src/ under vitest and from dist/ when compiled). */
export function packageRoot(from = __dirname): string {
  let dir = from;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'scoreline') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the scoreline package root above ${from}`);
    dir = parent;
  }
}

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
