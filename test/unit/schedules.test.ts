/**
 * Schedules without a server: logical dates in a timezone (midnight, DST), the `schedule:` section's
 * validation, and the field-by-field view `schedule apply` diffs.
 */
import { describe, expect, it } from 'vitest';
import { parsePipeline } from '../../src/config/pipeline';
import { ConfigError } from '../../src/errors';
import { logicalDateFor } from '../../src/run/batch';
import { cronProblem } from '../../src/schedules/config';
import { addDays, logicalDateIn, startOfDateIn } from '../../src/schedules/logical-date';
import { desiredSchedule, diffFields, flatten, formatMs } from '../../src/schedules/spec';

const base = {
  name: 'churn-daily',
  source: { kind: 'parquet', path: 'data/ds={{ ds }}/*.parquet', key: ['customer_id'] },
  model: 'churn-gbt@champion',
  sink: { kind: 'parquet', path: 'out/churn_scores' },
};
const withSchedule = (schedule: unknown) => ({ ...base, schedule });

describe('logical date of a nominal time', () => {
  it('is the calendar date in the schedule timezone, not in UTC', () => {
    // 00:30 in Berlin on 2026-11-02 (CET, UTC+1) is still 2026-11-01 in UTC.
    const nominal = new Date('2026-11-01T23:30:00Z');
    expect(logicalDateIn(nominal, 'Europe/Berlin')).toBe('2026-11-02');
    expect(logicalDateIn(nominal, 'UTC')).toBe('2026-11-01');
    // West of UTC the other way round: 23:59 on 2026-10-31 in New York (EDT) is already 11-01 in UTC.
    expect(logicalDateIn(new Date('2026-11-01T03:59:00Z'), 'America/New_York')).toBe('2026-10-31');
    expect(logicalDateIn(new Date('2026-11-01T04:00:00Z'), 'America/New_York')).toBe('2026-11-01');
  });

  it('follows DST changes around midnight', () => {
    // Berlin: CEST (UTC+2) until 2026-10-25 03:00, then CET (UTC+1).
    expect(logicalDateIn(new Date('2026-10-24T22:30:00Z'), 'Europe/Berlin')).toBe('2026-10-25'); // 00:30 CEST
    expect(logicalDateIn(new Date('2026-10-25T22:30:00Z'), 'Europe/Berlin')).toBe('2026-10-25'); // 23:30 CET
    expect(logicalDateIn(new Date('2026-10-25T23:00:00Z'), 'Europe/Berlin')).toBe('2026-10-26'); // 00:00 CET
    // Spring forward 2026-03-29: midnight before is CET, midnight after is CEST.
    expect(startOfDateIn('2026-03-29', 'Europe/Berlin').toISOString()).toBe('2026-03-28T23:00:00.000Z');
    expect(startOfDateIn('2026-03-30', 'Europe/Berlin').toISOString()).toBe('2026-03-29T22:00:00.000Z');
    expect(startOfDateIn('2026-11-02', 'Europe/Berlin').toISOString()).toBe('2026-11-01T23:00:00.000Z');
    expect(startOfDateIn('2026-11-01', 'UTC').toISOString()).toBe('2026-11-01T00:00:00.000Z');
  });

  it('finds the start of a date even where the zone skips midnight', () => {
    // Chile moves clocks forward at 24:00 (00:00 does not exist that day); whatever the tz rules say,
    // the start of a date is the first instant of it.
    for (const date of ['2026-09-06', '2026-09-05', '2026-04-05']) {
      const start = startOfDateIn(date, 'America/Santiago');
      expect(logicalDateIn(start, 'America/Santiago')).toBe(date);
      expect(logicalDateIn(new Date(start.getTime() - 1000), 'America/Santiago')).toBe(addDays(date, -1));
    }
    // UTC+14: the date starts 14 hours before UTC's.
    expect(startOfDateIn('2026-11-02', 'Pacific/Kiritimati').toISOString()).toBe('2026-11-01T10:00:00.000Z');
  });

  it('logicalDateFor: an explicit date wins, else the nominal time in the run input timezone', () => {
    const now = new Date('2026-11-05T12:00:00Z');
    expect(logicalDateFor({ pipeline: 'p', date: '2026-10-01', timezone: 'Europe/Berlin' }, '2026-11-01T23:30:00Z', now)).toBe('2026-10-01');
    expect(logicalDateFor({ pipeline: 'p', timezone: 'Europe/Berlin' }, '2026-11-01T23:30:00Z', now)).toBe('2026-11-02');
    expect(logicalDateFor({ pipeline: 'p' }, '2026-11-01T23:30:00Z', now)).toBe('2026-11-01');
    expect(logicalDateFor({ pipeline: 'p', timezone: 'Asia/Tokyo' }, undefined, new Date('2026-11-05T20:00:00Z'))).toBe('2026-11-06');
    expect(() => logicalDateFor({ pipeline: 'p', timezone: 'Mars/Olympus' }, undefined, now)).toThrow(ConfigError);
  });
});

describe('schedule section of a pipeline file', () => {
  it('fills documented defaults and accepts one cron or a list', () => {
    const c = parsePipeline(withSchedule({ cron: '0 2 * * *' }), 'p.yaml');
    expect(c.schedule).toEqual({ cron: ['0 2 * * *'], timezone: 'UTC', overlap: 'skip', catchup_window: '1d', pause_on_failure: false, jitter: '0s' });
    const list = parsePipeline(withSchedule({ cron: ['30 0 * * MON-FRI', '@hourly'], timezone: 'Europe/Berlin', overlap: 'buffer_one', jitter: '5m', paused: true }), 'p.yaml');
    expect(list.schedule).toMatchObject({ cron: ['30 0 * * MON-FRI', '@hourly'], timezone: 'Europe/Berlin', overlap: 'buffer_one', jitter: '5m', paused: true });
    expect(parsePipeline(base, 'p.yaml').schedule).toBeUndefined();
  });

  it('rejects a bad cron naming the field and the problem', () => {
    expect(() => parsePipeline(withSchedule({ cron: '61 2 * * *' }), 'p.yaml')).toThrow('p.yaml: schedule.cron: not a valid cron expression "61 2 * * *": minute "61": values must be 0-59');
    expect(() => parsePipeline(withSchedule({ cron: ['0 2 * * *', 'every day'] }), 'p.yaml')).toThrow(/p\.yaml: schedule\.cron\.1: not a valid cron expression "every day": expected 5 fields/);
    expect(() => parsePipeline(withSchedule({ cron: '0 2 * * *' , timezone: 'UTC', overlap: 'skip', catchup_window: '5s' }), 'p.yaml')).toThrow('p.yaml: schedule.catchup_window: must be at least 10s');
    expect(() => parsePipeline(withSchedule({ cron: '0 2 * * *', overlap: 'queue' }), 'p.yaml')).toThrow(/schedule\.overlap: expected one of "skip", "buffer_one"/);
    expect(() => parsePipeline(withSchedule({ cron: '0 2 * * *', every: '1d' }), 'p.yaml')).toThrow('p.yaml: schedule: unknown field "every"');
    expect(() => parsePipeline(withSchedule({ timezone: 'UTC' }), 'p.yaml')).toThrow('p.yaml: schedule.cron: required (expected a cron expression');
    expect(() => parsePipeline(withSchedule({ cron: 5 }), 'p.yaml')).toThrow('p.yaml: schedule.cron: expected a cron expression');
    expect(cronProblem('TZ=Europe/Berlin 0 2 * * *')).toMatch(/schedule.timezone/);
    expect(cronProblem('0 2 * * SUN-SAT')).toBeUndefined();
    expect(cronProblem('*/15 8-18 1,15 JAN-MAR 1-5')).toBeUndefined();
    expect(cronProblem('@every 6h/30m')).toBeUndefined();
    expect(cronProblem('0 2 * * 5-1')).toMatch(/runs backwards/);
    expect(cronProblem('0 */0 * * *')).toMatch(/at least 1/);
    expect(cronProblem('@fortnightly')).toMatch(/unknown shorthand/);
    // 7 is Sunday too, as for the server; a day no listed month has is refused, since it never fires.
    expect(cronProblem('0 2 * * 5-7')).toBeUndefined();
    expect(cronProblem('0 2 * * 8')).toMatch(/values must be 0-7/);
    expect(cronProblem('0 0 31 2 *')).toBe('day of month "31" never falls in month "2", so the schedule would never run');
    expect(cronProblem('0 0 30,31 FEB,APR *')).toBeUndefined(); // 30 April
    expect(cronProblem('0 0 29 2 *')).toBeUndefined(); // leap years
    expect(cronProblem('0 0 31 2 MON')).toBeUndefined(); // with a day of week, either matches
    expect(cronProblem('0 0 5/10 */2 *')).toBeUndefined();
  });

  it('rejects a bad timezone naming the field, with a hint for case typos', () => {
    expect(() => parsePipeline(withSchedule({ cron: '0 2 * * *', timezone: 'Europe/Berln' }), 'p.yaml')).toThrow(
      'p.yaml: schedule.timezone: unknown timezone "Europe/Berln"; expected an IANA name such as UTC, Europe/Berlin or America/New_York',
    );
    expect(() => parsePipeline(withSchedule({ cron: '0 2 * * *', timezone: 'europe/berlin' }), 'p.yaml')).toThrow('(did you mean "Europe/Berlin"?)');
    expect(() => parsePipeline(withSchedule({ cron: '0 2 * * *', timezone: '+01:00' }), 'p.yaml')).toThrow(/schedule\.timezone: unknown timezone/);
  });
});

describe('what schedule apply compares', () => {
  it('flattens the schedule, the action and the embedded pipeline into dotted fields', () => {
    const raw = withSchedule({ cron: '30 0 * * *', timezone: 'Europe/Berlin', catchup_window: '90m' });
    const config = parsePipeline(raw, 'p.yaml');
    const d = desiredSchedule({ config, taskQueue: 'scoreline', searchAttributes: true });
    expect(d.scheduleId).toBe('scoreline/churn-daily');
    expect(d.fields).toMatchObject({
      'schedule.cron': ['30 0 * * *'],
      'schedule.timezone': 'Europe/Berlin',
      'schedule.overlap': 'skip',
      'schedule.catchup_window': '1h30m',
      'schedule.jitter': '0s',
      'action.workflow_type': 'scorelineScheduledRun',
      'action.timezone': 'Europe/Berlin',
      'action.search_attributes.ScorelinePipeline': 'churn-daily',
      'action.search_attributes.ScorelineModel': 'churn-gbt',
      'pipeline.model': 'churn-gbt@champion',
      'pipeline.source.key': ['customer_id'],
      'pipeline.chunk_rows': 'auto', // defaults filled in: the comparison does not depend on how the file is written
    });
    // The schedule section is the spec, not part of the embedded pipeline.
    expect(Object.keys(d.fields).some((k) => k.startsWith('pipeline.schedule'))).toBe(false);
    expect(d.fields['schedule.paused']).toBeUndefined();
    expect(d.options.policies).toEqual({ overlap: 'SKIP', catchupWindow: 5_400_000, pauseOnFailure: false });
  });

  it('diffs field by field: changed, added and removed', () => {
    const before = flatten({ schedule: { cron: ['0 2 * * *'], jitter: '0s' }, pipeline: { chunk_rows: 5000, description: 'x' } });
    const after = flatten({ schedule: { cron: ['30 0 * * *'], jitter: '0s' }, pipeline: { chunk_rows: 5000, parallelism: 2 } });
    expect(diffFields(before, after)).toEqual([
      { field: 'schedule.cron', before: ['0 2 * * *'], after: ['30 0 * * *'] },
      { field: 'pipeline.parallelism', after: 2 },
      { field: 'pipeline.description', before: 'x' },
    ]);
    expect(diffFields(after, after)).toEqual([]);
  });

  it('writes durations the way pipeline files do', () => {
    expect(formatMs(86_400_000)).toBe('1d');
    expect(formatMs(5_400_000)).toBe('1h30m');
    expect(formatMs(0)).toBe('0s');
    expect(formatMs(1_500)).toBe('1s500ms');
  });
});
