/**
 * A run's alerts, on the workflow side: when `failed`, `slow` and `recovered` fire. The SLA is a
 * durable timer racing the run (it fires on time across worker restarts, while chunks are still being
 * scored); each delivery is an activity per channel with its own small retry budget. A delivery's
 * outcome becomes a record for the audit row, never the run's outcome: the status is decided first.
 */
import { CancellationScope, proxyActivities, sleep } from '@temporalio/workflow';
import type { ScorelineActivities } from '../activities';
import type { AlertsConfig } from '../src/alerts/config';
import { parseDuration } from '../src/alerts/duration';
import { channelsFor, type AlertEvent, type AlertFacts, type AlertRecord } from '../src/alerts/events';
import type { PipelineConfig } from '../src/config/pipeline';
import type { DriftSummary, RunInput, RunPlan, RunRef, RunStatus } from '../src/types';
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
  private readonly timers = new Set<CancellationScope>();
  private slowFired = false;
  private finished = false;

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
   */
  planned(plan: RunPlan): void {
    this.config = plan.config.alerts ?? null;
    this.pipeline = plan.config;
    this.run = plan.run;
    this.model = `${plan.model.name}:${plan.model.version}`;
    const sla = this.watchesSlowness()?.sla;
    if (sla) this.startTimer(parseDuration(sla)! - (Date.now() - this.startedAtMs), () => this.fireSlow({}));
  }

  /**
   * Races `chunk_sla` against one chunk activity. Costs two history events per chunk (timer started and
   * cancelled), and none once `slow` has fired.
   */
  watchChunk<T>(index: number, work: Promise<T>): Promise<T> {
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
    for (const timer of this.timers) timer.cancel();
    if (outcome.status === 'failed') {
      // The plan never returned, so only the worker can say what the pipeline's alerts are.
      if (this.config === undefined) this.config = await resolveAlertConfig({ input: this.input }).catch(() => null);
      this.send('failed', { status: 'failed', step: outcome.step, error: outcome.error });
    } else if (outcome.status === 'succeeded' && this.pipeline && channelsFor(this.config, 'recovered').length > 0) {
      const previousFailed = await previousRunFailed({ config: this.pipeline, run: this.run }).catch(() => false);
      if (previousFailed || this.slowFired) this.send('recovered', { status: 'succeeded', recoveredFrom: previousFailed ? 'failed' : 'slow' });
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
    await Promise.all(this.deliveries);
    return this.records.filter((r): r is AlertRecord => r !== undefined);
  }

  private watchesSlowness(): AlertsConfig | undefined {
    return this.config && channelsFor(this.config, 'slow').length > 0 ? this.config : undefined;
  }

  /** A timer in its own scope: cancelled when what it races finishes, or with the run. */
  private startTimer(ms: number, onFire: () => void): CancellationScope {
    const scope = new CancellationScope();
    this.timers.add(scope);
    scope
      .run(() => sleep(Math.max(1, ms)))
      .then(
        () => onFire(),
        () => undefined, // cancelled: the run or the chunk finished first
      )
      .finally(() => this.timers.delete(scope));
    return scope;
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
