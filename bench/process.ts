/** The bench's worker processes and what /proc says about them (Linux). */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../src/paths';

const ROOT = packageRoot(__dirname);

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** CPU seconds per thread (main, worker threads by tid, libuv pool, V8 helpers, Temporal core's tokio), by name. */
export function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      // Worker threads inherit the name `node`: tell the main thread apart by its tid.
      const name = Number(tid) === pid ? 'main' : comm === 'node' ? `thread ${tid}` : comm;
      const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
      out.set(name, (out.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100);
    } catch {
      // thread exited between readdir and read
    }
  }
  return out;
}

export function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

export interface WorkerProcessOptions {
  /** V8 CPU profiles of the worker (main and inference threads), written when it exits. */
  cpuProfileDir?: string;
  env?: Record<string, string>;
}

/** `scoreline worker` in its own process (so its CPU and memory are its own), once it polls. */
export async function startWorkerProcess(address: string, opts: WorkerProcessOptions = {}): Promise<ChildProcess> {
  const cpuProfileDir = opts.cpuProfileDir;
  const nodeArgs = [...(cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfileDir] : []), ...(process.env.BENCH_WORKER_NODE_ARGS?.split(' ').filter(Boolean) ?? [])];
  const child = spawn(process.execPath, [...nodeArgs, join(ROOT, 'bin', 'scoreline.js'), 'worker'], {
    cwd: ROOT,
    // Info level at least: readiness is the `worker started` line.
    env: { ...process.env, TEMPORAL_ADDRESS: address, SCORELINE_MODELS_DIR: join(ROOT, 'examples', 'models'), SCORELINE_LOG_LEVEL: 'info', ...opts.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-8000); // the worker logs every activity: keep the tail
      // `scoreline worker` logs this once the worker is created; tasks wait on the server until it polls.
      if (stderr.includes('worker started')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`worker exited ${code}: ${stderr.slice(-2000)}`)));
  });
  return child;
}
