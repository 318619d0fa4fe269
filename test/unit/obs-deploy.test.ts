/**
 * deploy/ and docs/observability.md against the metrics the registry really defines: every PromQL
 * expression in the Prometheus rules and the Grafana dashboard names only defined metrics (or
 * Prometheus's own `up`), matches only labels those metrics have, and only label values Scoreline
 * emits; the docs list every metric with its type and labels. (promtool, when installed, checks the
 * PromQL syntax too: docs/observability.md; CI does not depend on it.)
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { createActivities } from '../../activities';
import { metricDefinitions, STAGES, type MetricDefinition } from '../../src/obs/metrics';
import type { RunContext } from '../../src/run/context';
import { REPO } from '../helpers/project';

const RULES = join(REPO, 'deploy', 'prometheus', 'scoreline-rules.yaml');
const DASHBOARD = join(REPO, 'deploy', 'grafana', 'scoreline-dashboard.json');
const DOCS = join(REPO, 'docs', 'observability.md');

/** Series Prometheus itself makes for every target, and the labels it adds to every series. */
const BUILTIN: Record<string, string[]> = { up: [] };
const TARGET_LABELS = ['job', 'instance'];

/** Label values the code emits, where a rule or panel may name one. */
const VALUES: Record<string, string[]> = {
  status: ['succeeded', 'failed', 'cancelled'],
  stage: [...STAGES],
  outcome: ['ok', 'error', 'sent', 'failed'],
  activity: Object.keys(createActivities({} as RunContext)),
};

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan', 'atan2']);

interface Selector {
  metric: string;
  matchers: { label: string; op: string; value: string }[];
}

/**
 * The vector selectors of a PromQL expression (metric name plus label matchers). Not a full parser:
 * enough for the expressions in deploy/, and it fails loudly on what it does not understand.
 */
function selectors(expr: string): Selector[] {
  const out: Selector[] = [];
  // Label matchers first, then strip them, strings, ranges and grouping clauses out of the way.
  let rest = expr.replace(/([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}/g, (_, metric: string | undefined, body: string) => {
    const matchers = [...body.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)].map((m) => ({ label: m[1], op: m[2], value: m[3] }));
    const leftover = body.replace(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g, '').replace(/[\s,]/g, '');
    if (leftover) throw new Error(`cannot read the matchers {${body}} in: ${expr}`);
    if (!metric) throw new Error(`a selector without a metric name in: ${expr}`);
    out.push({ metric, matchers });
    return ' ';
  });
  rest = rest
    .replace(/"(?:[^"\\]|\\.)*"/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  for (const m of rest.matchAll(/(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    if (m[2] || KEYWORDS.has(m[1])) continue; // a function or aggregation call, or an operator
    out.push({ metric: m[1], matchers: [] });
  }
  return out;
}

let defs: Map<string, MetricDefinition>;

/** What a selector's metric name refers to: a defined metric, a histogram's series, or Prometheus's own. */
function resolve(metric: string): { labels: string[] } | undefined {
  const def = defs.get(metric);
  if (def) return { labels: def.labelNames };
  const m = /^(.+)_(bucket|sum|count)$/.exec(metric);
  const base = m && defs.get(m[1]);
  if (base && (base.type === 'histogram' || base.type === 'summary')) return { labels: [...base.labelNames, ...(m[2] === 'bucket' ? ['le'] : [])] };
  if (metric in BUILTIN) return { labels: BUILTIN[metric] };
  return undefined;
}

function checkExpr(expr: string, where: string): string[] {
  const problems: string[] = [];
  const found = selectors(expr);
  if (found.length === 0) problems.push(`${where}: no metric in ${expr}`);
  for (const s of found) {
    const known = resolve(s.metric);
    if (!known) {
      problems.push(`${where}: ${s.metric} is not a metric the registry defines`);
      continue;
    }
    for (const m of s.matchers) {
      if (![...known.labels, ...TARGET_LABELS].includes(m.label)) problems.push(`${where}: ${s.metric} has no label "${m.label}" (it has: ${known.labels.join(', ') || 'none'})`);
      else if (m.op === '=' && VALUES[m.label] && !VALUES[m.label].includes(m.value)) problems.push(`${where}: ${s.metric}{${m.label}="${m.value}"} never occurs (values: ${VALUES[m.label].join(', ')})`);
    }
  }
  return problems;
}

beforeAll(async () => {
  defs = new Map((await metricDefinitions()).map((d) => [d.name, d]));
});

describe('the expression checker itself', () => {
  it('finds metric names and matchers, skipping functions, keywords, durations and Grafana variables', () => {
    const s = selectors('histogram_quantile(0.95, sum by (pipeline, le) (rate(scoreline_chunk_duration_seconds_bucket{pipeline=~"$pipeline"}[$__rate_interval]))) > 1e3 and on (instance) up == 1');
    expect(s).toEqual([
      { metric: 'scoreline_chunk_duration_seconds_bucket', matchers: [{ label: 'pipeline', op: '=~', value: '$pipeline' }] },
      { metric: 'up', matchers: [] },
    ]);
  });

  it('reports unknown metrics, labels and values', async () => {
    expect(checkExpr('rate(scoreline_rows_total[5m])', 'x')).toEqual(['x: scoreline_rows_total is not a metric the registry defines']);
    expect(checkExpr('scoreline_runs_total{status="success"}', 'x')[0]).toMatch(/never occurs/);
    expect(checkExpr('scoreline_runs_total{run_id="r"}', 'x')[0]).toMatch(/has no label "run_id"/);
    expect(checkExpr('scoreline_chunk_duration_seconds_bucket{le="1", job="w"}', 'x')).toEqual([]);
  });
});

describe('deploy/prometheus/scoreline-rules.yaml', () => {
  interface Rule {
    alert: string;
    expr: string;
    for?: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
  }
  const doc = parseYaml(readFileSync(RULES, 'utf8')) as { groups: { name: string; rules: Rule[] }[] };
  const rules = doc.groups.flatMap((g) => g.rules.map((r) => ({ group: g.name, ...r })));

  it('is a rules file of alerting rules, each with severity, summary and a duration', () => {
    expect(doc.groups.length).toBeGreaterThan(0);
    expect(new Set(doc.groups.map((g) => g.name)).size).toBe(doc.groups.length);
    for (const r of rules) {
      expect(r.alert, JSON.stringify(r)).toMatch(/^Scoreline[A-Z][A-Za-z]+$/);
      expect(typeof r.expr).toBe('string');
      if (r.for !== undefined) expect(r.for).toMatch(/^\d+[smhd]$/);
      expect(r.labels.severity).toMatch(/^(info|warning|critical)$/);
      expect(typeof r.annotations.summary).toBe('string');
    }
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
  });

  it('uses only metrics, labels and values the registry defines', () => {
    const problems = rules.flatMap((r) => checkExpr(r.expr, r.alert));
    expect(problems).toEqual([]);
    // Every alert the issue asks for is there.
    expect(rules.map((r) => r.alert)).toEqual(
      expect.arrayContaining(['ScorelineRunFailed', 'ScorelineNoSuccessfulRun', 'ScorelineChunkSlow', 'ScorelineWorkerDown', 'ScorelineActivitiesStuck', 'ScorelineNrtLatencyHigh']),
    );
  });
});

describe('deploy/grafana/scoreline-dashboard.json', () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8'));
  const panels: Record<string, any>[] = dashboard.panels.flatMap((p: Record<string, any>) => [p, ...(p.panels ?? [])]);

  it('is a dashboard model with a Prometheus data source variable that every panel uses', () => {
    expect(dashboard).toMatchObject({ title: 'Scoreline', uid: 'scoreline-overview' });
    expect(typeof dashboard.schemaVersion).toBe('number');
    const vars = dashboard.templating.list as Record<string, any>[];
    expect(vars.find((v) => v.name === 'datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    for (const p of panels) {
      expect(p.gridPos, p.title).toMatchObject({ h: expect.any(Number), w: expect.any(Number), x: expect.any(Number), y: expect.any(Number) });
      if (p.type === 'row') continue;
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets) expect(t.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
    }
  });

  it('queries only metrics, labels and values the registry defines', () => {
    const problems = panels.filter((p) => p.type !== 'row').flatMap((p) => p.targets.flatMap((t: { expr: string }) => checkExpr(t.expr, `panel "${p.title}"`)));
    for (const v of dashboard.templating.list.filter((x: { type: string }) => x.type === 'query')) {
      const m = /^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*),\s*([a-zA-Z_]+)\)$/.exec(v.query.query);
      expect(m, v.query.query).not.toBeNull();
      const known = resolve(m![1]);
      if (!known) problems.push(`variable ${v.name}: ${m![1]} is not defined`);
      else if (!known.labels.includes(m![2])) problems.push(`variable ${v.name}: ${m![1]} has no label ${m![2]}`);
    }
    expect(problems).toEqual([]);
    // Each Scoreline metric is on the dashboard somewhere.
    const exprs = panels.flatMap((p) => (p.targets ?? []).map((t: { expr: string }) => t.expr)).join('\n');
    for (const name of defs.keys()) if (name.startsWith('scoreline_')) expect(exprs, name).toContain(name);
  });
});

describe('docs/observability.md', () => {
  it('lists every Scoreline metric with its type and labels', () => {
    const docs = readFileSync(DOCS, 'utf8');
    const rows = new Map(
      [...docs.matchAll(/^\| `(scoreline_[a-z_]+)` \| (\w+) \| ([^|]*) \|/gm)].map((m) => [m[1], { type: m[2], labels: m[3].trim() === '–' ? [] : m[3].split(',').map((l) => l.trim()) }]),
    );
    const ours = [...defs.values()].filter((d) => d.name.startsWith('scoreline_'));
    expect(ours.length).toBeGreaterThanOrEqual(14);
    for (const d of ours) expect(rows.get(d.name), d.name).toEqual({ type: d.type, labels: d.labelNames });
    expect([...rows.keys()].sort()).toEqual(ours.map((d) => d.name).sort());
  });
});
