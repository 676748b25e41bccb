// Shared by the queue tests: a log of a queue's events seen from outside (what BullMQ reports,
// not what our code says), worker processes run from the command line, and small waits.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

import { QueueEvents } from 'bullmq';

export const subjectA = join(import.meta.dirname, '..', '..', 'examples', 'subject-a.png');

export interface LoggedEvent {
  event: string;
  jobId?: string;
  [key: string]: unknown;
}

/** Every event of one queue, in order, from its own QueueEvents reader. */
export class EventLog {
  readonly events: LoggedEvent[] = [];
  private readonly reader: QueueEvents;

  constructor(url: string, name: string) {
    this.reader = new QueueEvents(name, { connection: { url } });
    this.reader.on('error', () => undefined); // Redis restarts are part of the tests
    for (const event of ['active', 'completed', 'failed', 'progress', 'stalled', 'waiting', 'removed', 'retries-exhausted']) {
      this.reader.on(event as 'active', (args: object) => this.events.push({ event, ...args }));
    }
  }

  ready(): Promise<void> {
    return this.reader.waitUntilReady().then(() => undefined);
  }

  of(jobId: string, event?: string): LoggedEvent[] {
    return this.events.filter((e) => e.jobId === jobId && (event === undefined || e.event === event));
  }

  /** Bounded: BullMQ's QueueEvents.close() waits forever for a Redis that is gone. */
  async close(): Promise<void> {
    const closed = this.reader.close().then(() => true);
    const late = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 3000).unref());
    if (!(await Promise.race([closed, late]))) void this.reader.disconnect().catch(() => undefined);
  }
}

/** Polls until `check` returns a value (not undefined), or fails after `ms`. */
export async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface WorkerProcess {
  name: string;
  child: ChildProcess;
  output(): string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `fastcomposer worker` in a child process (the bundled CLI); resolves once it says it is ready. */
export function startWorker(cli: string, url: string, queue: string, name: string, args: string[] = []): Promise<WorkerProcess> {
  const child = spawn(
    process.execPath,
    [cli, 'worker', '--redis', url, '--queue', queue, '--name', name, '--device', 'cpu', '--threads', '1', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`worker ${name} not ready after 120 s:\n${out}`));
    }, 120_000);
    const onData = (d: string): void => {
      out += d;
      if (out.includes(`worker ${name} ready`)) {
        clearTimeout(timer);
        resolve({ name, child, output: () => out, exit });
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    void exit.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`worker ${name} exited with ${code} before it was ready:\n${out}`));
    });
  });
}
