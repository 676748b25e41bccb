/**
 * FastComposerWorker: one model on one device taking generate() jobs from a BullMQ queue, one at
 * a time, or as many at once as the model's batches hold (load option maxBatchSize: the jobs
 * share its UNet batches). Each step is reported with job.updateProgress(); a cancellation (lib/queue/cancel.ts)
 * stops the job within one step; the result goes to Redis (lib/queue/results.ts). A worker that
 * dies loses its job to another after the lock expires (BullMQ's stalled-job check); close()
 * stops taking jobs and lets the running ones finish, or hands them back to the queue after `grace`.
 */
import { type Job, WaitingError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';

import { AbortError } from '../errors.js';
import { FastComposer } from '../fastcomposer.js';
import type { StepProgress } from '../options.js';
import { CancelListener, isCancelled } from './cancel.js';
import { bullConnection, CLOSE_BOUND_MS, redisClient, resultKey, settlesWithin } from './connection.js';
import { jobFailure } from './failures.js';
import { decodeJob } from './payload.js';
import { type FastComposerWorkerOptions, type NormalizedWorkerOptions, normalizeWorkerOptions } from './queue-options.js';
import { type ResultMeta, storeResult } from './results.js';

/** What a worker reports, for logs. */
export type WorkerEvent =
  | { type: 'active'; jobId: string }
  | { type: 'completed'; jobId: string; ms: number; seed: number }
  | { type: 'failed'; jobId: string; reason: string; willRetry: boolean }
  | { type: 'handed-back'; jobId: string }
  /** A caller's cancel stopped a running job: the step under way when it arrived, and the last step run. */
  | { type: 'cancelled'; jobId: string; atStep: number; lastStep: number }
  | { type: 'error'; error: Error };

interface Running {
  job: Job;
  controller: AbortController;
  /** close()'s grace ran out: the abort hands the job back instead of failing it. */
  handBack: boolean;
  /** Steps finished so far, and how many had when the caller's cancel arrived. */
  step: number;
  cancelledAt?: number;
}

export class FastComposerWorker {
  private worker: Worker | undefined;
  private cancels: CancelListener | undefined;
  private readonly running = new Map<string, Running>();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly opts: NormalizedWorkerOptions,
    readonly model: FastComposer,
    private readonly ownsModel: boolean,
    private readonly redis: Redis,
    private readonly onEvent: (event: WorkerEvent) => void,
  ) {}

  /** Loads the model (unless given one), connects, and starts taking jobs. */
  static async start(
    options: FastComposerWorkerOptions,
    onEvent: (event: WorkerEvent) => void = () => undefined,
  ): Promise<FastComposerWorker> {
    const opts = normalizeWorkerOptions(options);
    // The model first: a worker that cannot run jobs never takes one.
    const model = opts.model instanceof FastComposer ? opts.model : await FastComposer.load(opts.model, opts.load);
    // Results must survive a Redis restart: commands wait for the reconnect.
    const redis = redisClient(opts.location, { maxRetriesPerRequest: null });
    redis.on('error', (error: Error) => onEvent({ type: 'error', error }));
    const self = new FastComposerWorker(opts, model, !(opts.model instanceof FastComposer), redis, onEvent);
    try {
      await self.listen();
    } catch (error) {
      await self.close({ grace: 0 });
      throw error;
    }
    return self;
  }

  get name(): string {
    return this.opts.workerName;
  }

  private async listen(): Promise<void> {
    const { location } = this.opts;
    this.cancels = new CancelListener(
      location,
      (jobId) => this.cancelled(jobId),
      () => void this.recheckCancel(),
      (error) => this.onEvent({ type: 'error', error }),
    );
    await this.cancels.start();
    const worker = new Worker(location.name, (job, token) => this.process(job, token), {
      connection: bullConnection(location),
      prefix: location.prefix,
      name: this.opts.workerName,
      // One job at a time, or enough to fill a batch: jobs taken together share the model's batches.
      concurrency: this.model.maxBatchSize,
      lockDuration: this.opts.lockDuration,
      stalledInterval: this.opts.stalledInterval,
      maxStalledCount: this.opts.maxStalledCount,
      autorun: false,
    });
    this.worker = worker;
    worker.on('error', (error) => this.onEvent({ type: 'error', error }));
    worker.on('failed', (job, error) => {
      if (job) this.onEvent({ type: 'failed', jobId: job.id!, reason: error.message, willRetry: job.finishedOn === undefined });
    });
    void worker.run().catch((error: Error) => this.onEvent({ type: 'error', error }));
    await worker.waitUntilReady();
  }

  private async process(job: Job, token: string | undefined): Promise<ResultMeta> {
    const jobId = job.id!;
    const started = performance.now();
    const run: Running = { job, controller: new AbortController(), handBack: false, step: 0 };
    this.running.set(jobId, run);
    this.onEvent({ type: 'active', jobId });
    try {
      if (this.closing) {
        // Taken as close() began: back to the queue untouched.
        run.handBack = true;
        throw new AbortError('the worker is closing');
      }
      if (await isCancelled(this.redis, this.opts.location, jobId)) throw new AbortError('cancelled before it started');
      const { options, resultTtl, progress } = decodeJob(job.data);
      const result = await this.model.generate({
        ...options,
        signal: run.controller.signal,
        onStep: (step: StepProgress) => {
          run.step = step.step;
          if (progress) void job.updateProgress({ ...step }).catch(() => undefined);
        },
      });
      const key = resultKey(this.opts.location, jobId);
      const meta = await storeResult(this.redis, key, result, resultTtl, this.name, options.output ?? 'raw');
      this.onEvent({ type: 'completed', jobId, ms: performance.now() - started, seed: result.seed });
      return meta;
    } catch (error) {
      if (run.handBack) {
        // Back to waiting without spending an attempt; another worker takes it.
        await job.moveToWait(token);
        this.onEvent({ type: 'handed-back', jobId });
        throw new WaitingError();
      }
      if (run.cancelledAt !== undefined) this.onEvent({ type: 'cancelled', jobId, atStep: run.cancelledAt, lastStep: run.step });
      throw jobFailure(error);
    } finally {
      this.running.delete(jobId);
    }
  }

  private cancelled(jobId: string): void {
    const run = this.running.get(jobId);
    if (!run || run.controller.signal.aborted) return;
    run.cancelledAt = run.step;
    run.controller.abort(new Error('cancelled by its caller'));
  }

  /** Cancel messages sent while the subscription was down are lost; the key is not. */
  private async recheckCancel(): Promise<void> {
    for (const jobId of [...this.running.keys()])
      if (await isCancelled(this.redis, this.opts.location, jobId).catch(() => false)) this.cancelled(jobId);
  }

  /**
   * Stops taking jobs; the running ones may finish for `grace` ms (default: the worker's grace
   * option), then they are stopped and handed back to the queue. Frees the model if it loaded it.
   */
  close(options: { grace?: number } = {}): Promise<void> {
    this.closing ??= (async () => {
      const grace = options.grace ?? this.opts.grace;
      const timer = setTimeout(() => this.handBackNow(), grace);
      // BullMQ's close waits for the job and for Redis. With Redis gone, neither storing the
      // result nor handing the job back can finish: past the bound the job stays active in
      // Redis and its expired lock gives it to another worker (the stalled-job check).
      const running = [...this.running.keys()];
      const closed = this.worker?.close() ?? Promise.resolve();
      const inTime = await settlesWithin(closed, (running.length > 0 ? grace : 0) + CLOSE_BOUND_MS);
      clearTimeout(timer);
      if (!inTime) {
        const left =
          running.length > 0
            ? `; job${running.length > 1 ? 's' : ''} ${running.join(', ')} stay${running.length > 1 ? '' : 's'} active and go${running.length > 1 ? '' : 'es'} to another worker when ${running.length > 1 ? 'their locks expire' : 'its lock expires'}`
            : '';
        this.onEvent({ type: 'error', error: new Error(`Redis did not answer while closing${left}`) });
        void this.worker?.close(true).catch(() => undefined);
        void this.worker?.disconnect().catch(() => undefined);
      }
      this.cancels?.close();
      this.redis.disconnect();
      if (this.ownsModel) await this.model.dispose();
    })();
    return this.closing;
  }

  /** Hands the running jobs back now, without waiting for the grace time (a second SIGTERM). */
  handBackNow(): void {
    for (const run of this.running.values()) {
      run.handBack = true;
      run.controller.abort(new Error('the worker is closing'));
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
