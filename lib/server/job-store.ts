/**
 * The server's jobs: a first-in first-out queue in front of the backend (at most `concurrency`
 * jobs run at once), their progress as events, cancellation through generate()'s AbortSignal, and
 * the expiry of finished jobs so that memory stays bounded over a long run.
 */
import { randomUUID } from 'node:crypto';

import type { GenerateOptions } from '../options.js';
import type { GenerateBackend } from './backend.js';
import { ApiError, jobError } from './errors.js';
import { Job, type JobJson } from './job.js';
import type { ServerLimits } from './limits.js';
import { encodeResult } from './results.js';

export type JobEventType = 'queued' | 'progress' | 'done' | 'failed' | 'cancelled';
export interface JobEvent {
  type: JobEventType;
  job: JobJson;
}
export type JobListener = (event: JobEvent) => void;

export interface NewJob {
  /** What goes to backend.generate(), with the seed already drawn. */
  options: GenerateOptions & { seed: number };
  steps: number;
  subjects: number;
  numImages: number;
}

export interface QueueStats {
  queued: number;
  running: number;
  concurrency: number;
  maxQueued: number;
  /** Jobs held (queued, running and finished ones not yet expired). */
  jobs: number;
  storedBytes: number;
}

export class JobStore {
  private readonly jobs = new Map<string, Job>();
  private readonly queue: Job[] = [];
  private readonly running = new Map<Job, Promise<void>>();
  /** Finished jobs in the order they finished: the first is the first to expire. */
  private readonly finished = new Map<string, Job>();
  private readonly listeners = new Map<string, Set<JobListener>>();
  private readonly cancelReasons = new Map<Job, { code: 'ERR_ABORTED' | 'ERR_SHUTTING_DOWN'; message: string }>();
  private storedBytes = 0;
  private closing: Promise<void> | undefined;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly backend: GenerateBackend,
    private readonly concurrency: number,
    private readonly limits: ServerLimits,
  ) {
    // Expiry also happens on every access; the timer frees memory on an idle server. It does not keep the process alive.
    this.sweeper = setInterval(() => this.sweep(), Math.min(limits.jobTtlMs, 60_000));
    this.sweeper.unref();
  }

  get isClosing(): boolean {
    return this.closing !== undefined;
  }

  /** Throws what add() would: 503 once closing, 429 when the queue is full. */
  checkRoom(): void {
    if (this.closing) throw new ApiError(503, 'ERR_SHUTTING_DOWN', 'The server is shutting down and takes no new jobs');
    if (this.queue.length >= this.limits.maxQueued) {
      throw new ApiError(429, 'ERR_QUEUE_FULL', `The queue is full (${this.limits.maxQueued} jobs waiting); try again later`);
    }
  }

  /** Queues a job; 429 when the queue is full, 503 once closing. */
  add(spec: NewJob): Job {
    this.sweep();
    this.checkRoom();
    const job = new Job(randomUUID(), spec.options, spec.options.seed, spec.steps, spec.subjects, spec.numImages);
    this.jobs.set(job.id, job);
    this.queue.push(job);
    this.pump();
    return job;
  }

  get(id: string): Job | undefined {
    this.sweep();
    return this.jobs.get(id);
  }

  /** get(), or 404. */
  require(id: string): Job {
    const job = this.get(id);
    if (!job) {
      const minutes = Math.round(this.limits.jobTtlMs / 60_000);
      throw new ApiError(404, 'ERR_JOB_NOT_FOUND', `Unknown job ${JSON.stringify(id)} (finished jobs are kept for ${minutes} min)`);
    }
    return job;
  }

  json(job: Job): JobJson {
    const at = job.status === 'queued' ? this.queue.indexOf(job) : -1;
    return job.toJSON(at < 0 ? null : at);
  }

  /** Cancels a queued job at once, or aborts a running one (it turns `cancelled` within a step); 409 when finished. */
  cancel(id: string): Job {
    const job = this.require(id);
    if (job.finished) throw new ApiError(409, 'ERR_JOB_FINISHED', `Job ${id} is already ${job.status}; there is nothing to cancel`);
    this.stop(job, { code: 'ERR_ABORTED', message: 'The job was cancelled' });
    return job;
  }

  /** Calls `listener` with each later event of the job; returns the unsubscribe function. */
  subscribe(id: string, listener: JobListener): () => void {
    let set = this.listeners.get(id);
    if (!set) this.listeners.set(id, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(id) === set) this.listeners.delete(id);
    };
  }

  stats(): QueueStats {
    return {
      queued: this.queue.length,
      running: this.running.size,
      concurrency: this.concurrency,
      maxQueued: this.limits.maxQueued,
      jobs: this.jobs.size,
      storedBytes: this.storedBytes,
    };
  }

  /** Takes no new jobs, cancels the queued ones, aborts the running ones and waits for them to settle. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const reason = { code: 'ERR_SHUTTING_DOWN' as const, message: 'The server is shutting down' };
      for (const job of [...this.queue]) this.stop(job, reason);
      for (const job of this.running.keys()) this.stop(job, reason);
      await Promise.allSettled(this.running.values());
      clearInterval(this.sweeper);
    })();
    return this.closing;
  }

  private stop(job: Job, reason: { code: 'ERR_ABORTED' | 'ERR_SHUTTING_DOWN'; message: string }): void {
    const at = this.queue.indexOf(job);
    if (at >= 0) {
      this.queue.splice(at, 1);
      job.error = reason;
      this.finish(job, 'cancelled');
      this.announcePositions(at);
    } else if (job.status === 'running' && !job.controller.signal.aborted) {
      this.cancelReasons.set(job, reason);
      job.controller.abort(new Error(reason.message));
    }
  }

  private pump(): void {
    while (!this.closing && this.running.size < this.concurrency && this.queue.length > 0) {
      const job = this.queue.shift()!;
      this.running.set(
        job,
        this.run(job).finally(() => {
          this.running.delete(job);
          this.pump();
        }),
      );
      this.announcePositions(0);
    }
  }

  private async run(job: Job): Promise<void> {
    const options = job.options!;
    job.options = undefined;
    job.status = 'running';
    job.startedAt = Date.now();
    this.emit(job, 'progress');
    const signal = job.controller.signal;
    try {
      const result = await this.backend.generate({
        ...options,
        signal,
        onStep: ({ step, steps }) => {
          job.step = step;
          job.steps = steps;
          this.emit(job, 'progress');
        },
      });
      job.warnings = result.warnings ?? [];
      try {
        const encoded = await encodeResult(result, job.subjects);
        job.images = encoded.images;
        job.heatmaps = encoded.heatmaps;
      } catch {
        job.error = { code: 'ERR_INTERNAL', message: "The backend's result could not be encoded as PNG" };
        this.finish(job, 'failed');
        return;
      }
      this.finish(job, 'done');
    } catch (error) {
      if (signal.aborted) {
        job.error = this.cancelReasons.get(job) ?? jobError(error);
        this.finish(job, 'cancelled');
      } else {
        job.error = jobError(error);
        this.finish(job, 'failed');
      }
    } finally {
      this.cancelReasons.delete(job);
    }
  }

  private finish(job: Job, status: 'done' | 'failed' | 'cancelled'): void {
    job.status = status;
    job.finishedAt = Date.now();
    job.expiresAt = job.finishedAt + this.limits.jobTtlMs;
    this.finished.set(job.id, job);
    this.storedBytes += job.storedBytes;
    this.emit(job, status);
    this.listeners.delete(job.id); // a finished job has no more events
    this.sweep();
  }

  /** Drops expired finished jobs, then the oldest ones while over the count or byte caps (never the newest). */
  private sweep(): void {
    const now = Date.now();
    for (const job of this.finished.values()) {
      const over =
        this.finished.size > this.limits.maxFinishedJobs || (this.storedBytes > this.limits.maxStoredBytes && this.finished.size > 1);
      if (!over && job.expiresAt! > now) break;
      this.finished.delete(job.id);
      this.jobs.delete(job.id);
      this.storedBytes -= job.storedBytes;
    }
  }

  private announcePositions(from: number): void {
    for (const job of this.queue.slice(from)) this.emit(job, 'queued');
  }

  private emit(job: Job, type: JobEventType): void {
    const set = this.listeners.get(job.id);
    if (!set || set.size === 0) return;
    const event = { type, job: this.json(job) };
    for (const listener of [...set]) listener(event);
  }
}
