import { CancellationScope, sleep } from '@temporalio/workflow';

/**
 * A workflow timer in a scope of its own, for racing something else: cancel the returned scope when that
 * finishes first; `onFire` runs only if the timer ran out. `timers`, if given, holds the scope while it runs.
 */
export function startTimer(ms: number, onFire: () => void, timers?: Set<CancellationScope>): CancellationScope {
  const scope = new CancellationScope();
  timers?.add(scope);
  scope
    .run(() => sleep(Math.max(1, ms)))
    .then(
      () => onFire(),
      () => undefined, // cancelled: what it raced finished first
    )
    .finally(() => timers?.delete(scope));
  return scope;
}
