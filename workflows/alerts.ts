/**
 * A run's alerts, on the workflow side: when `failed`, `slow`, `late`, `stalled` and `recovered` fire.
 * The SLA is a durable timer racing the run (it fires on time across worker restarts, while chunks are
 * still being scored); `late` is a projection checked on every chunk's stats (no timer per chunk), with
 * one timer at the deadline as a backstop; `stalled` is one timer that re-arms to the last chunk's
 * finish + `stall_after`. Each delivery is an activity per channel with its own small retry budget. A
 * delivery's outcome becomes a record for the audit row, never the run's outcome: the status is decided first.
 */
import { CancellationScope, proxyActivities, sleep, workflowInfo } from '@temporalio/workflow';
import type { ScorelineActivities } from '../activities';
import type { AlertsConfig } from '../src/alerts/config';
import { deadlineAfter, parseDeadline } from '../src/alerts/deadline';
import { parseDuration } from '../src/alerts/duration';
import { channelsFor, type AlertEvent, type AlertFacts, type AlertRecord, type ProjectionFacts, type StallFacts, type StuckChunk } from '../src/alerts/events';
import type { PendingChunk } from '../src/alerts/stall';
import type { PipelineConfig } from '../src/config/pipeline';
import type { DriftSummary, RunInput, RunPlan, RunProgress, RunRef, RunStatus } from '../src/types';
import { chunkGroupWorkflowId } from './chunks';
import { startTimer } from './timer';
import { describeError } from './describe';

/** Reads the pipeline file or the audit table on the worker: quick, and only needed at the run's end. */
const { resolveAlertConfig, previousRunFailed } = proxyActivities<ScorelineActivities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 3, initialInterval: '1 second', backoffCoefficient: 2 },
});

/**
 * One alert to one channel. Retries are the channel's own (a 500 or a refused connection is tried
 * again after 1 s and 2 s), bounded at one minute in all, so an endpoint that is down delays the end
 * of the run by at most that and never fails it. Each request times out after 5 s (src/alerts/channels.ts).
 */
const { deliverAlert } = proxyActivities<ScorelineActivities>({
  startToCloseTimeout: '15 seconds',
  scheduleToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 3, initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '10 seconds' },
});

/** Asks the server which workers hold the chunks in flight (a `stalled` alert only): best effort, quick. */
const { describeChunkActivities } = proxyActivities<ScorelineActivities>({
  startToCloseTimeout: '20 seconds',
  retry: { maximumAttempts: 2, initialInterval: '1 second' },
});

/** A limit the run is measured against: the `deadline`'s instant, or the run's start + `sla`. */
interface Limit {
  kind: 'deadline' | 'sla';
  text: string;
  atMs: number;
}

export interface RunOutcome {
  status: RunStatus;
  /** For `failed`: the step that failed and its error. */
  step?: string;
  error?: string;
  /** For a succeeded run: what the profile step found (a `drift` alert when columns crossed a threshold). */
  drift?: DriftSummary;
}

export class RunAlerts {
  /** undefined until the plan (or, for a run whose plan failed, the worker) says; null = no alerts section. */
  private config: AlertsConfig | null | undefined;
  private pipeline?: PipelineConfig;
  private run: RunRef;
  private model?: string;
  /** One slot per delivery, in the order the alerts were sent, filled in as deliveries finish. */
  private readonly records: (AlertRecord | undefined)[] = [];
  private readonly deliveries: Promise<void>[] = [];
  /** The `slow` timers (all cancelled once it fired) and the `late` backstop. */
  private readonly timers = new Set<CancellationScope>();
  private readonly lateTimers = new Set<CancellationScope>();
  private slowFired = false;
  private lateFired = false;
  private stalledFired = false;
  private finished = false;
  /** `late`: the deadline and/or SLA instants (empty: not watched). */
  private limits: Limit[] = [];
  /** `stalled`: the watchdog's scope, cancelled when scoring ends; the last progress it measures from. */
  private stallWatch?: CancellationScope;
  private lastChunkAtMs = 0;
  private anyChunkDone = false;
  private chunksDone = 0;
  private progress?: RunProgress;
  /** Chunks in flight in this workflow (index → when scheduled), kept only while `stalled` is watched. */
  private readonly inFlight = new Map<number, number>();
  /** The child workflow's group in flight, for a run scored in child workflows. */
  private group?: { index: number; firstChunk: number; lastChunk: number; sinceMs: number };

  constructor(
    private readonly input: RunInput,
    run: RunRef,
    private readonly startedAtMs: number,
  ) {
    this.run = run;
  }

  /**
   * The plan is known (and with it the config): arm the run's SLA timer. Its deadline counts from the
   * run's start, so time spent planning counts too; a plan that takes longer than the SLA fires at once.
   * With `late` watched, the limits (deadline, start + sla) and one backstop timer at the earliest; with
   * `stalled` watched, the watchdog. A config without them (every run started before they existed)
   * arms nothing new, so such runs replay unchanged.
   */
  planned(plan: RunPlan): void {
    this.config = plan.config.alerts ?? null;
    this.pipeline = plan.config;
    this.run = plan.run;
    this.model = `${plan.model.name}:${plan.model.version}`;
    const sla = this.watchesSlowness()?.sla;
    if (sla) this.startTimer(parseDuration(sla)! - (Date.now() - this.startedAtMs), () => this.fireSlow({}));
    this.lastChunkAtMs = Date.now();
    const late = this.watching('late');
    if (late) {
      const deadline = late.deadline ? parseDeadline(late.deadline) : undefined;
      if (deadline) this.limits.push({ kind: 'deadline', text: late.deadline!, atMs: deadlineAfter(deadline, this.startedAtMs) });
      if (late.sla) this.limits.push({ kind: 'sla', text: late.sla, atMs: this.startedAtMs + parseDuration(late.sla)! });
      // The backstop: a run still going at its limit is late whatever the projection said (e.g. one big chunk).
      const first = Math.min(...this.limits.map((l) => l.atMs));
      if (this.limits.length > 0) this.startTimer(first - Date.now(), () => this.checkLate(true), this.lateTimers);
    }
    const stallAfter = this.watching('stalled')?.stall_after;
    if (stallAfter) {
      this.stallWatch = new CancellationScope();
      this.stallWatch.run(() => this.watchStalls(parseDuration(stallAfter)!)).catch(() => undefined);
    }
  }

  /**
   * New chunk stats (a chunk of this workflow, or a child's progress report): `stalled` measures from the
   * last one that finished a chunk, `late` checks the projection. No timers, no history events.
   */
  progressed(progress: RunProgress): void {
    this.progress = progress;
    if (progress.chunksDone > this.chunksDone) {
      this.chunksDone = progress.chunksDone;
      this.lastChunkAtMs = Date.now();
      this.anyChunkDone = true;
    }
    if (this.limits.length > 0) this.checkLate(false);
  }

  /** Scoring is over (the commit is next): no more `stalled` (a long commit finishes no chunks). */
  scoringDone(): void {
    this.stallWatch?.cancel();
  }

  /** A child workflow starts scoring chunks `firstChunk`…`lastChunk` (for `stalled` to name them). */
  groupStarting(index: number, firstChunk: number, lastChunk: number): void {
    this.group = { index, firstChunk, lastChunk, sinceMs: Date.now() };
  }

  /**
   * Races `chunk_sla` against one chunk activity. Costs two history events per chunk (timer started and
   * cancelled), and none once `slow` has fired.
   */
  watchChunk<T>(index: number, work: Promise<T>): Promise<T> {
    if (this.stallWatch && !this.stalledFired) {
      this.inFlight.set(index, Date.now());
      work = work.finally(() => this.inFlight.delete(index));
    }
    const chunkSla = this.watchesSlowness()?.chunk_sla;
    if (!chunkSla || this.slowFired) return work;
    const startedAt = Date.now();
    const timer = this.startTimer(parseDuration(chunkSla)!, () => this.fireSlow({ chunk: { index, elapsedMs: Date.now() - startedAt, sla: chunkSla } }));
    return work.finally(() => timer.cancel());
  }

  /** `chunk_sla` in ms for a child workflow to watch its chunks by (workflows/chunks.ts); none once `slow` fired. */
  chunkSlaMs(): number | undefined {
    const chunkSla = this.watchesSlowness()?.chunk_sla;
    return chunkSla && !this.slowFired ? parseDuration(chunkSla)! : undefined;
  }

  /** A child workflow saw a chunk run past `chunk_sla`. */
  slowChunk(index: number, elapsedMs: number): void {
    const sla = this.watchesSlowness()?.chunk_sla;
    if (sla) this.fireSlow({ chunk: { index, elapsedMs, sla } });
  }

  /**
   * The run's status is decided: stop the timers, send `failed` or `recovered`, and wait until every
   * delivery (including a `slow` one still under way) has an outcome. Never throws.
   */
  async finish(outcome: RunOutcome): Promise<AlertRecord[]> {
    this.finished = true;
    for (const timer of [...this.timers, ...this.lateTimers]) timer.cancel();
    this.stallWatch?.cancel();
    if (outcome.status === 'failed') {
      // The plan never returned, so only the worker can say what the pipeline's alerts are.
      if (this.config === undefined) this.config = await resolveAlertConfig({ input: this.input }).catch(() => null);
      this.send('failed', { status: 'failed', step: outcome.step, error: outcome.error });
    } else if (outcome.status === 'succeeded' && this.pipeline && channelsFor(this.config, 'recovered').length > 0) {
      const previousFailed = await previousRunFailed({ config: this.pipeline, run: this.run, ...(this.input.resume !== undefined && { resumed: true }) }).catch(() => false);
      const from = previousFailed ? 'failed' : this.slowFired ? 'slow' : this.lateFired ? 'late' : this.stalledFired ? 'stalled' : undefined;
      if (from) this.send('recovered', { status: 'succeeded', recoveredFrom: from });
    }
    const drift = outcome.drift;
    if (outcome.status === 'succeeded' && drift?.reference && drift.breached.length > 0 && this.pipeline) {
      const worst = [...drift.breached].sort((a, b) => (b.psi ?? 0) - (a.psi ?? 0) || (b.meanShift ?? 0) - (a.meanShift ?? 0));
      this.send('drift', {
        status: 'succeeded',
        drift: {
          reference: drift.reference,
          psiThreshold: this.pipeline.drift.psi,
          meanShiftThreshold: this.pipeline.drift.mean_shift,
          columns: worst.slice(0, 20).map((c) => ({ column: c.column, role: c.role, psi: c.psi, meanShift: c.meanShift })),
          count: drift.breached.length,
        },
      });
    }
    // A `stalled` alert still asking the server about its chunks adds its deliveries as it goes.
    for (let n = 0; n < this.deliveries.length; ) {
      n = this.deliveries.length;
      await Promise.all(this.deliveries.slice(0, n));
    }
    return this.records.filter((r): r is AlertRecord => r !== undefined);
  }

  private watchesSlowness(): AlertsConfig | undefined {
    return this.watching('slow');
  }

  /** The config, when some channel hears `event`. */
  private watching(event: AlertEvent): AlertsConfig | undefined {
    return this.config && channelsFor(this.config, event).length > 0 ? this.config : undefined;
  }

  /**
   * `late`, at most once: the projection (or, from the backstop timer, the clock) is past a limit. With
   * both limits, the earliest one passed is the one reported.
   */
  private checkLate(backstop: boolean): void {
    if (this.lateFired || this.finished) return;
    const now = Date.now();
    const p = this.progress;
    const estimate = p?.estimate;
    // At the backstop the run is still going, so it ends after now at the earliest.
    const eta = backstop ? Math.max(now, estimate?.finishAtMs ?? now) : estimate?.finishAtMs;
    if (eta === undefined) return;
    const passed = this.limits.filter((l) => eta > l.atMs || (backstop && eta >= l.atMs)).sort((a, b) => a.atMs - b.atMs)[0];
    if (!passed) return;
    this.lateFired = true;
    for (const timer of this.lateTimers) timer.cancel();
    const projection: ProjectionFacts = {
      eta: new Date(eta).toISOString(),
      deadline: new Date(passed.atMs).toISOString(),
      limit: passed.kind,
      limitText: passed.text,
      lateByMs: eta - passed.atMs,
      rowsDone: p?.rowsDone ?? 0,
      rowsPlanned: p?.rowsPlanned ?? 0,
      rowsPerSec: estimate?.rowsPerSec ?? 0,
      chunksDone: p?.chunksDone ?? 0,
      chunksTotal: p?.chunksTotal ?? 0,
    };
    this.send('late', { status: 'running', projection });
  }

  /**
   * One timer at a time, set to the last chunk's finish + `stall_after`: woken early by nothing, it
   * re-arms for what is left when a chunk finished meanwhile. About one timer per `stall_after` of run time.
   */
  private async watchStalls(stallMs: number): Promise<void> {
    for (;;) {
      const idle = Date.now() - this.lastChunkAtMs;
      if (idle >= stallMs) break;
      await sleep(stallMs - idle);
    }
    if (this.finished || this.stalledFired) return;
    this.stalledFired = true;
    // Asking the server, then sending, must not be cut short when scoring ends meanwhile; finish() waits for it.
    this.deliveries.push(CancellationScope.nonCancellable(() => this.fireStalled()));
  }

  private async fireStalled(): Promise<void> {
    const now = Date.now();
    const idleMs = now - this.lastChunkAtMs;
    const info = workflowInfo();
    const group = this.group;
    // The workflow that holds the chunk activities: this run, or the child scoring the current group.
    const target = group ? { workflowId: chunkGroupWorkflowId(info.workflowId, this.run.runId, group.index) } : { workflowId: info.workflowId, runId: info.runId };
    // Best effort: without the server's answer the alert still names the chunks and since when.
    const pending: PendingChunk[] = await describeChunkActivities(target).catch(() => []);
    const iso = (ms: number) => new Date(ms).toISOString();
    const matched = new Set<PendingChunk>();
    const inFlight: StuckChunk[] = [...this.inFlight.entries()].map(([index, since]) => {
      // Matched by the chunk index of its last heartbeat; a lone chunk and a lone activity without one are the same.
      const lone = this.inFlight.size === 1 && pending.length === 1 && pending[0].chunk === null ? pending[0] : undefined;
      const found = pending.find((a) => a.chunk === index) ?? lone;
      if (found) matched.add(found);
      return { index, since: iso(since), worker: found?.worker ?? null, attempt: found?.attempt ?? null, step: found?.step ?? null, lastHeartbeatAt: found?.lastHeartbeatAt ?? null };
    });
    // A child's chunks are known only from the server (the workflow knows the group's range).
    for (const a of pending) {
      if (!matched.has(a)) inFlight.push({ index: a.chunk, since: a.startedAt, worker: a.worker, attempt: a.attempt, step: a.step, lastHeartbeatAt: a.lastHeartbeatAt });
    }
    inFlight.sort((a, b) => (a.since ?? '').localeCompare(b.since ?? '') || (a.index ?? -1) - (b.index ?? -1));
    const p = this.progress;
    const stall: StallFacts = {
      after: this.config!.stall_after!,
      idleMs,
      lastChunkAt: this.anyChunkDone ? iso(this.lastChunkAtMs) : null,
      chunksDone: p?.chunksDone ?? 0,
      chunksTotal: p?.chunksTotal ?? 0,
      inFlight,
      ...(group && { group: { index: group.index, firstChunk: group.firstChunk, lastChunk: group.lastChunk, since: iso(group.sinceMs) } }),
    };
    if (this.finished) return; // the run's outcome is decided and alerted; a stall report would arrive after it
    this.send('stalled', { status: 'running', stall });
  }

  /** A timer in its own scope: cancelled when what it races finishes, or with the run. */
  private startTimer(ms: number, onFire: () => void, timers = this.timers): CancellationScope {
    return startTimer(ms, onFire, timers);
  }

  /** `slow` fires at most once per run, whichever SLA (run or chunk) runs out first. */
  private fireSlow(extra: Partial<AlertFacts>): void {
    if (this.slowFired || this.finished) return;
    this.slowFired = true;
    for (const timer of this.timers) timer.cancel();
    this.send('slow', { status: 'running', ...extra });
  }

  private send(event: AlertEvent, extra: Partial<AlertFacts>): void {
    const alert: AlertFacts = {
      event,
      pipeline: this.run.pipeline,
      logicalDate: this.run.logicalDate,
      runId: this.run.runId,
      // This execution: a resumed run keeps the run id of the one it resumes, but its link and delivery
      // id must be its own (a second failure is not a duplicate of the first).
      executionId: workflowInfo().runId,
      workflowId: this.run.workflowId,
      trigger: this.run.trigger,
      status: 'running',
      durationMs: Date.now() - this.startedAtMs,
      sla: this.config?.sla,
      model: this.model,
      occurredAt: new Date().toISOString(),
      ...extra,
    };
    for (const channel of channelsFor(this.config, event)) {
      const slot = this.records.push(undefined) - 1;
      // Not cancellable: cancelling the run (or the chunk window) must not cut a delivery short.
      const delivery = CancellationScope.nonCancellable(() => deliverAlert({ alert, channel })).then(
        () => void (this.records[slot] = { event, channel: channel.name, ok: true }),
        (err) => void (this.records[slot] = { event, channel: channel.name, ok: false, error: describeError(err) }),
      );
      this.deliveries.push(delivery);
    }
  }
}
