/**
 * A local emulator process (fakesnow, bqemulator) for tests, demos and benchmarks: started with its
 * output captured (the tail goes into error messages), polled until its health URL answers, stopped
 * with SIGTERM then SIGKILL, and killed if this process exits first (emulators keep state in memory,
 * so nothing is lost).
 */
import { spawn, type ChildProcess } from 'node:child_process';

const STOP_GRACE_MS = 10_000;
const OUTPUT_TAIL_CHARS = 8_000;

export interface EmulatorProcess {
  child: ChildProcess;
  /** Resolves once it is ready; rejects with its output if it exits or times out first. */
  ready(healthUrl: string, timeoutMs: number): Promise<void>;
  /** Idempotent. */
  stop(): Promise<void>;
}

export function spawnEmulator(what: string, executable: string, args: string[]): EmulatorProcess {
  const child = spawn(executable, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  let description: string | undefined;
  const capture = (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-OUTPUT_TAIL_CHARS);
  };
  child.stdout?.on('data', capture);
  child.stderr?.on('data', capture);
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      description ??= `failed to start (${err.message})`;
      resolve();
    });
    child.once('close', (code, signal) => {
      description ??= signal ? `killed by ${signal}` : `exited with code ${code}`;
      resolve();
    });
  }).then(() => {
    exited = true;
  });
  const killOnParentExit = () => child.kill('SIGKILL');
  process.on('exit', killOnParentExit);
  void exit.then(() => process.off('exit', killOnParentExit));
  const output = () => `Output (tail):\n${tail || '(none)'}`;

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (exited || child.pid === undefined) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await exit;
      clearTimeout(timer);
    })());

  const ready = async (healthUrl: string, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    let lastError = 'no answer yet';
    while (Date.now() < deadline) {
      if (exited) throw new Error(`${what} ${description ?? 'exited'} before becoming ready at ${healthUrl}.\n${output()}`);
      try {
        const res = await fetch(healthUrl, { signal: AbortSignal.timeout(2_000) });
        if (res.ok) return;
        lastError = `HTTP ${res.status}: ${await res.text()}`;
      } catch (err) {
        lastError = (err as Error).message;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`${what} at ${healthUrl} did not become ready within ${timeoutMs} ms (last: ${lastError}).\n${output()}`);
  };
  return { child, ready, stop };
}
