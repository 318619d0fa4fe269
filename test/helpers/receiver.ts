/**
 * One local HTTP server standing in for webhook receivers, Slack and PagerDuty in tests: records every
 * request and answers 200 (202 under /pd) unless told to fail the next requests to a path.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  raw: string;
  json: Record<string, any>;
  at: number;
}

/** One local HTTP server for all three services; answers 200/202 unless told to fail the next requests to a path. */
export class Receiver {
  readonly received: Received[] = [];
  private readonly failures = new Map<string, number[]>();
  private server!: Server;
  base = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      let raw = '';
      req.setEncoding('utf8');
      req.on('data', (d) => (raw += d));
      req.on('end', () => {
        const path = req.url ?? '';
        this.received.push({ path, headers: req.headers, raw, json: JSON.parse(raw), at: Date.now() });
        const status = this.failures.get(path)?.shift() ?? (path.endsWith('/pd') ? 202 : 200);
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(status >= 300 ? '{"error":"try again later"}' : path.endsWith('/pd') ? '{"status":"success","message":"Event processed"}' : 'ok');
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  failNext(path: string, ...statuses: number[]): void {
    this.failures.set(path, statuses);
  }

  at(path: string): Received[] {
    return this.received.filter((r) => r.path === path);
  }

  /** PagerDuty events of one pipeline (the dedup key names it). */
  pagerduty(pipeline: string): Received[] {
    return this.received.filter((r) => r.path === '/pd' && String(r.json.dedup_key).startsWith(`scoreline/${pipeline}/`));
  }

  async waitFor(pred: () => boolean, timeoutMs = 15_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > until) throw new Error(`timed out waiting; received: ${this.received.map((r) => r.path).join(', ')}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}
