/** Progress for humans: a redrawn bar on a terminal, a line every few seconds otherwise. */
import type { RunProgress } from '../types';

export function formatRate(rowsPerSec: number): string {
  if (rowsPerSec >= 1e6) return `${(rowsPerSec / 1e6).toFixed(2)}M rows/s`;
  if (rowsPerSec >= 1e3) return `${(rowsPerSec / 1e3).toFixed(1)}k rows/s`;
  return `${Math.round(rowsPerSec)} rows/s`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export function progressLine(p: RunProgress, nowMs: number, width = 24): string {
  if (p.phase === 'planning') return `planning ${p.pipeline} ${p.logicalDate}…`;
  const fraction = p.rowsPlanned > 0 ? p.rowsDone / p.rowsPlanned : p.chunksTotal > 0 ? p.chunksDone / p.chunksTotal : 1;
  const filled = Math.round(Math.min(1, fraction) * width);
  const elapsed = Math.max(1, nowMs - p.startedAtMs);
  const rate = (p.rowsDone / elapsed) * 1000;
  // The workflow's estimate (throughput since the first chunk finished; src/alerts/eta.ts), said to be one.
  const left = p.phase === 'scoring' && p.estimate ? p.estimate.finishAtMs - nowMs : undefined;
  const eta = left !== undefined ? ` ETA ~${formatDuration(Math.max(0, left))} (estimate)` : '';
  const phase = p.phase === 'scoring' ? '' : ` ${p.phase}`;
  return (
    `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${p.chunksDone}/${p.chunksTotal} chunks ` +
    `${p.rowsDone.toLocaleString('en-US')}/${p.rowsPlanned.toLocaleString('en-US')} rows ${formatRate(rate)}${eta}${phase}`
  );
}

export class ProgressReporter {
  private lastPrinted = 0;
  private lastLine = '';

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly enabled: boolean,
  ) {}

  update(p: RunProgress): void {
    if (!this.enabled) return;
    const now = Date.now();
    const line = progressLine(p, now);
    if (this.stream.isTTY) {
      this.stream.write(`\r\x1b[2K${line}`);
    } else if (now - this.lastPrinted > 5000 && line !== this.lastLine) {
      this.stream.write(`${line}\n`);
      this.lastPrinted = now;
    }
    this.lastLine = line;
  }

  done(): void {
    if (this.enabled && this.stream.isTTY && this.lastLine) this.stream.write('\n');
  }
}
