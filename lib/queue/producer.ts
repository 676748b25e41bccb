/**
 * FastComposerQueue: generate() through a BullMQ queue, with FastComposer.generate()'s options
 * and result. The options are checked and completed here (the seed too), the job goes to Redis,
 * any worker runs it; progress and completion come back through QueueEvents. Every wait is
 * bounded: a periodic check finds jobs that vanished (Redis restarted without its data) or
 * finished unseen, and calls fail with ERR_QUEUE once Redis has been out of reach too long.
 */
import { randomUUID } from 'node:crypto';

import { Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';

import { AbortError, DisposedError, FastComposerError } from '../errors.js';
import { callbackError, type GenerateResult } from '../fastcomposer.js';
import type { GenerateOptions, NormalizedGenerateOptions, StepProgress } from '../options.js';
import { isCancelled, requestCancel } from './cancel.js';
import { bullConnection, CLOSE_BOUND_MS, redisClient, resultKey, settlesWithin } from './connection.js';
import { failureError, queueError } from './failures.js';
import { encodeJob } from './payload.js';
import { type FastComposerQueueOptions, type NormalizedQueueOptions, normalizeQueueOptions } from './queue-options.js';
import { resultMeta, takeResult } from './results.js';

/** FastComposer.generate()'s result, plus where it ran. */
export interface QueueGenerateResult extends GenerateResult {
  jobId: string;
  /** The worker that ran the job (its BullMQ name). */
  worker: string;
  /** generateMs: the whole call here (queue, run, transfer); workerMs: generate() on the worker. */
  timings: GenerateResult['timings'] & { workerMs: number };
}

interface Pending {
  jobId: string;
  opts: NormalizedGenerateOptions;
  started: number;
  /** Last time Redis answered about this job (the connectionTimeout clock). */
  contact: number;
  /** Its result is being read (the event and the periodic check may both see it finish). */
  taking?: boolean;
  resolve(result: QueueGenerateResult): void;
  reject(error: unknown): void;
}

/** How long a cancellation stays in Redis for a worker that has yet to take the job. */
const CANCEL_TTL_MS = 3_600_000;

export class FastComposerQueue {
  readonly name: string;
  private readonly opts: NormalizedQueueOptions;
  private readonly queue: Queue;
  private readonly redis: Redis;
  private events: QueueEvents | undefined;
  private readonly pending = new Map<string, Pending>();
  /** Cancels under way for calls that gave up; close() lets them reach Redis. */
  private readonly cancelling = new Set<Promise<void>>();
  private ready: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private checker: NodeJS.Timeout | undefined;
  private lastError: Error | undefined;

  constructor(options: FastComposerQueueOptions) {
    this.opts = normalizeQueueOptions(options);
    const { location } = this.opts;
    this.name = location.name;
    // A few retries, then commands fail (ERR_QUEUE) instead of waiting for Redis indefinitely.
    this.queue = new Queue(location.name, { connection: bullConnection(location, { maxRetriesPerRequest: 3 }), prefix: location.prefix });
    this.redis = redisClient(location, { maxRetriesPerRequest: 3 });
    const remember = (error: Error): void => void (this.lastError = error);
    this.queue.on('error', remember);
    this.redis.on('error', remember);
  }

  /**
   * Queues one generate() and waits for its result. Options as FastComposer.generate(); subject
   * pictures travel as bytes; `onStep` receives the worker's steps (a job recovered from a dead
   * worker starts again at step 1); `signal` cancels the job on whichever worker runs it.
   */
  async generate(options: GenerateOptions): Promise<QueueGenerateResult> {
    const started = performance.now();
    if (this.closing) throw new DisposedError('This FastComposerQueue has been closed');
    const { data, opts } = await encodeJob(options, this.opts.resultTtl);
    if (opts.signal?.aborted) throw new AbortError(opts.signal.reason);
    await this.connect();
    let jobId: string;
    try {
      const job = await this.queue.add('generate', data, {
        // Never reused, unlike BullMQ's counter, which starts again at 1 when Redis loses its data:
        // a caller still waiting for a lost job must not pick up a new job's result.
        jobId: randomUUID(),
        attempts: this.opts.attempts,
        backoff: { type: 'exponential', delay: 1000 },
        removeOnComplete: this.opts.removeOnComplete as { age: number },
        removeOnFail: this.opts.removeOnFail as { age: number },
      });
      jobId = job.id!;
    } catch (error) {
      throw this.redisError('Cannot add the job to the queue', error);
    }
    return this.wait(jobId, opts, started);
  }

  /**
   * Connects now instead of at the first generate(), e.g. to fail at start-up: rejects with
   * ERR_QUEUE when Redis cannot be reached within `connectionTimeout` (at once when it refuses).
   */
  async waitUntilReady(): Promise<void> {
    if (this.closing) throw new DisposedError('This FastComposerQueue has been closed');
    await this.connect();
  }

  /** Jobs in each state (waiting, active, delayed, completed, failed), e.g. for a health check. */
  async jobCounts(): Promise<Record<string, number>> {
    try {
      return await this.queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized');
    } catch (error) {
      throw this.redisError('Cannot read the job counts', error);
    }
  }

  /**
   * Stops waiting: pending calls reject with DisposedError at once and their jobs are cancelled;
   * closes the connections. Bounded: with Redis gone it lets go after a few seconds.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.checker);
      const jobs = [...this.pending.values()];
      for (const p of jobs) this.settle(p, () => p.reject(new DisposedError('The FastComposerQueue was closed during the call')));
      const cleanup = (async () => {
        // Cancels sent by calls that gave up just before (an abort, a timeout) go out too.
        await Promise.allSettled([...this.cancelling, ...jobs.map((p) => this.cancel(p.jobId))]);
        await Promise.allSettled([this.events?.close(), this.queue.close()]);
      })();
      if (!(await settlesWithin(cleanup, CLOSE_BOUND_MS))) {
        // Their clients stop reconnecting; nothing is left to keep the process alive.
        void this.events?.disconnect().catch(() => undefined);
        void this.queue.disconnect().catch(() => undefined);
      }
      this.redis.disconnect();
    })();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Connects once: QueueEvents reads from the Redis server's current time on, so no event of a
   * job added after this is missed, even across reconnects (BullMQ's default '$' can skip some). */
  private connect(): Promise<void> {
    this.ready ??= (async () => {
      const [seconds, micros] = await this.redis.time();
      const events = new QueueEvents(this.name, {
        connection: bullConnection(this.opts.location),
        prefix: this.opts.location.prefix,
        lastEventId: `${Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)}-0`,
        autorun: false,
      });
      this.events = events;
      events.on('error', (error: Error) => void (this.lastError = error));
      events.on('completed', ({ jobId, returnvalue }) => void this.completed(jobId, returnvalue));
      events.on('failed', ({ jobId, failedReason }) => this.failed(jobId, failedReason));
      events.on('progress', ({ jobId, data }) => this.progress(jobId, data));
      events.run().catch((error: Error) => void (this.lastError = error));
      await Promise.all([events.waitUntilReady(), this.queue.waitUntilReady()]);
    })();
    this.ready.catch(() => {
      // The next call connects again, with a new reader.
      void this.events?.disconnect().catch(() => undefined);
      this.events = undefined;
      this.ready = undefined;
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(this.redisError(`Cannot reach Redis within ${this.opts.connectionTimeout} ms`)),
        this.opts.connectionTimeout,
      );
    });
    const ready = this.ready.catch((error: unknown) => {
      // The connection's own error (ECONNREFUSED, ...) says more than ioredis's "max retries" that follows it.
      throw this.redisError('Cannot connect to Redis', this.lastError ?? error);
    });
    return Promise.race([ready, timeout]).finally(() => clearTimeout(timer));
  }

  private wait(jobId: string, opts: NormalizedGenerateOptions, started: number): Promise<QueueGenerateResult> {
    return new Promise<QueueGenerateResult>((resolve, reject) => {
      const signal = opts.signal;
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => this.stop(jobId, new AbortError(signal?.reason));
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const p: Pending = {
        jobId,
        opts,
        started,
        contact: Date.now(),
        resolve: (r) => (done(), resolve(r)),
        reject: (e) => (done(), reject(e)),
      };
      this.pending.set(jobId, p);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (signal?.aborted) onAbort();
      if (this.opts.timeout > 0) {
        const late = `Job ${jobId} did not finish within ${this.opts.timeout} ms (the timeout option); it was cancelled`;
        timer = setTimeout(() => this.stop(jobId, queueError(late)), this.opts.timeout);
      }
      this.startChecker();
    });
  }

  /** Settles a call exactly once: the first of completion, failure, abort, timeout or close wins. */
  private settle(p: Pending, how: () => void): void {
    if (this.pending.get(p.jobId) !== p) return;
    this.pending.delete(p.jobId);
    how();
  }

  /** The caller gives up (abort, timeout, a throwing onStep): reject now, cancel the job behind. */
  private stop(jobId: string, error: FastComposerError): void {
    const p = this.pending.get(jobId);
    if (!p) return;
    this.settle(p, () => p.reject(error));
    const cancelling = this.cancel(jobId).catch(() => undefined);
    this.cancelling.add(cancelling);
    void cancelling.finally(() => this.cancelling.delete(cancelling));
  }

  private async cancel(jobId: string): Promise<void> {
    await requestCancel(this.redis, this.opts.location, jobId, CANCEL_TTL_MS);
    // A job still waiting (or delayed for a retry) is removed; a running one stops on its worker.
    // A finished one is left alone: removing it would drop the record of how it ended (its
    // failure, kept for removeOnFail), which the queue's own tools and events still refer to.
    const state = await this.queue.getJobState(jobId);
    if (state === 'waiting' || state === 'delayed' || state === 'prioritized') await this.queue.remove(jobId);
  }

  private async completed(jobId: string, returnvalue: unknown): Promise<void> {
    const p = this.pending.get(jobId);
    if (!p || p.taking) return;
    p.taking = true;
    // Leave the map only once the result is in hand, so that close() or a timeout meanwhile wins.
    try {
      const meta = resultMeta(returnvalue, jobId);
      const result = await takeResult(this.redis, resultKey(this.opts.location, jobId), meta, jobId);
      const timings = { ...meta.timings, workerMs: meta.timings.generateMs, generateMs: performance.now() - p.started };
      this.settle(p, () => p.resolve({ ...result, timings, jobId, worker: meta.worker }));
    } catch (error) {
      this.settle(p, () =>
        p.reject(error instanceof FastComposerError ? error : this.redisError(`Cannot read the result of job ${jobId}`, error)),
      );
    }
  }

  private failed(jobId: string, reason: unknown): void {
    const p = this.pending.get(jobId);
    if (p) this.settle(p, () => p.reject(failureError(reason, jobId)));
  }

  private progress(jobId: string, data: unknown): void {
    const p = this.pending.get(jobId);
    const onStep = p?.opts.onStep;
    const d = data as Partial<StepProgress> | null;
    if (!p || !onStep || typeof d?.step !== 'number' || typeof d.steps !== 'number' || typeof d.timestep !== 'number') return;
    try {
      onStep({ step: d.step, steps: d.steps, timestep: d.timestep });
    } catch (error) {
      // As in-process: a throwing onStep stops the job and the call rejects with ERR_ABORTED.
      this.stop(jobId, callbackError(error));
    }
  }

  private startChecker(): void {
    if (this.checker) return;
    this.checker = setInterval(() => void this.check(), this.opts.checkInterval);
    this.checker.unref();
  }

  /** Catches what events cannot tell: a job gone from Redis, a finish missed, Redis out of reach. */
  private async check(): Promise<void> {
    if (this.pending.size === 0) {
      clearInterval(this.checker);
      this.checker = undefined;
      return;
    }
    await Promise.all(
      [...this.pending.values()].map(async (p) => {
        let state: string;
        try {
          state = await this.queue.getJobState(p.jobId);
        } catch (error) {
          if (Date.now() - p.contact > this.opts.connectionTimeout) {
            const lost = `Lost Redis for more than ${this.opts.connectionTimeout} ms while waiting for job ${p.jobId}`;
            this.settle(p, () => p.reject(this.redisError(lost, error)));
          }
          return;
        }
        p.contact = Date.now();
        if (state === 'unknown') {
          const cancelled = await isCancelled(this.redis, this.opts.location, p.jobId).catch(() => false);
          const why = cancelled ? 'it was cancelled' : 'Redis restarted without its data, or the job was removed';
          this.settle(p, () => p.reject(queueError(`Job ${p.jobId} is gone from the queue (${why})`)));
        } else if (state === 'completed' || state === 'failed') {
          const job = await this.queue.getJob(p.jobId).catch(() => undefined);
          if (state === 'completed' && job) await this.completed(p.jobId, job.returnvalue);
          else if (job) this.failed(p.jobId, job.failedReason);
        }
      }),
    );
  }

  private redisError(what: string, cause?: unknown): FastComposerError {
    const why = cause instanceof Error ? cause.message : this.lastError?.message;
    return queueError(why ? `${what}: ${why}` : what, cause ?? this.lastError);
  }
}
