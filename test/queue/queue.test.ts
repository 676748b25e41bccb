// FastComposerQueue against a real redis-server, with a FastComposerWorker in this process: the
// same result as FastComposer.generate(), progress, coded errors without retries, retries with
// the producer's seed, cancellation, timeouts, and what is left in Redis afterwards.
import { readFileSync } from 'node:fs';

import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { FastComposer } from '../../lib/fastcomposer.js';
import { FastComposerQueue, FastComposerWorker, type WorkerEvent } from '../../lib/queue/index.js';
import { float32View } from '../../lib/tensor.js';
import { encodeJob } from '../../lib/queue/payload.js';
import { startRedis } from '../helpers/redis-server.mjs';
import { EventLog, subjectA, waitFor } from './helpers.js';
import { rejection } from '../helpers/errors.js';

const base = { prompt: 'a man <|image|> in a park', subjects: [subjectA], width: 64, height: 64, steps: 4 };

describe('FastComposerQueue with an in-process worker', () => {
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let fc: FastComposer;
  let worker: FastComposerWorker;
  let queue: FastComposerQueue;
  let bull: Queue;
  let log: EventLog;
  let client: Redis;
  const name = 'inproc';
  const workerEvents: WorkerEvent[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    fc = await FastComposer.load(undefined, { device: 'cpu', threads: 1 });
    worker = await FastComposerWorker.start({ connection: redis.url, name, model: fc }, (e) => workerEvents.push(e));
    queue = new FastComposerQueue({ connection: redis.url, name, checkInterval: 200 });
    bull = new Queue(name, { connection: { url: redis.url } });
    log = new EventLog(redis.url, name);
    client = new Redis(redis.url);
    await log.ready();
  });

  afterAll(async () => {
    await queue?.close();
    await worker?.close();
    await bull?.close();
    await log?.close();
    client?.disconnect();
    await fc?.dispose();
    await redis?.stop();
  });

  it('gives what FastComposer.generate() gives: images, encoded output, latents, attention maps, seed, warnings', async () => {
    const long = `a man <|image|> ${'in a very long park '.repeat(20)}`;
    const options = { ...base, prompt: long, seed: 42, attentionMaps: true, output: 'png' as const, numImages: 2 };
    const local = await fc.generate(options);
    const remote = await queue.generate(options);
    expect(remote.seed).toBe(42);
    expect(remote.images.map((i) => [i.width, i.height, i.channels])).toEqual([
      [64, 64, 3],
      [64, 64, 3],
    ]);
    remote.images.forEach((img, i) => {
      expect(img.data.equals(local.images[i]!.data)).toBe(true);
      expect(img.encoded!.equals(local.images[i]!.encoded!)).toBe(true);
    });
    expect(remote.latents.shape).toEqual(local.latents.shape);
    expect(remote.latents.data.equals(local.latents.data)).toBe(true);
    expect(remote.attentionMaps!.shape).toEqual(local.attentionMaps!.shape);
    expect(remote.attentionMaps!.data.equals(local.attentionMaps!.data)).toBe(true);
    expect(remote.warnings).toEqual(local.warnings);
    expect(remote.warnings.length).toBe(1);
    expect(await remote.images[1]!.toPng()).toEqual(await local.images[1]!.toPng());
    expect(await FastComposer.attentionHeatmap(remote, 0, 1)).toEqual(await FastComposer.attentionHeatmap(local, 0, 1));
    expect(remote.worker).toBe(worker.name);
    expect(remote.timings.workerMs).toBeGreaterThan(0);
    expect(remote.timings.generateMs).toBeGreaterThanOrEqual(remote.timings.workerMs);
    // No onStep: the worker sent no step events (every reader of the queue would get them).
    await waitFor('the completion', () => log.of(remote.jobId, 'completed')[0]);
    expect(log.of(remote.jobId, 'progress')).toEqual([]);
    // Read once and deleted: nothing of it stays in Redis.
    expect(await client.keys('*fastcomposer:result:*')).toEqual([]);
  });

  it('reports every step, in order, and draws the seed on the producer', async () => {
    const steps: number[] = [];
    const r = await queue.generate({
      ...base,
      subjects: [readFileSync(subjectA)],
      onStep: ({ step, steps: n }) => (expect(n).toBe(5), steps.push(step)),
    });
    expect(steps).toEqual([1, 2, 3, 4, 5]); // PNDM's 4 steps run 5 UNet steps
    const job = await bull.getJob(r.jobId);
    expect(job!.data.options.seed).toBe(r.seed);
    // Job ids are UUIDs, never reused (BullMQ's counter restarts when Redis loses its data).
    expect(r.jobId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('input errors reach the caller unchanged, without a retry; bad options are refused before queueing', async () => {
    const cases = [
      { ...base, prompt: '<|image|> in a park' }, // ERR_PROMPT: only a tokenizer finds it
      { ...base, subjects: [Buffer.from('not a picture')] }, // ERR_IMAGE
    ];
    for (const options of cases) {
      const local = await rejection(fc.generate(options));
      const remote = await rejection(queue.generate(options));
      expect([remote.code, remote.message]).toEqual([local.code, local.message]);
    }
    const failed = await waitFor('both failures', () => {
      const seen = log.events.filter((e) => e.event === 'failed');
      return seen.length >= 2 ? seen : undefined;
    });
    expect(failed).toHaveLength(2);
    for (const f of failed) {
      const job = await bull.getJob(f.jobId!);
      expect(job!.attemptsStarted).toBe(1);
      expect(log.of(f.jobId!, 'active')).toHaveLength(1);
    }
    expect(await queue.jobCounts()).toMatchObject({ failed: 2, waiting: 0, active: 0 });
    const before = await bull.count();
    const local = await rejection(fc.generate({ ...base, steps: 0 }));
    const remote = await rejection(queue.generate({ ...base, steps: 0 }));
    expect([remote.code, remote.message]).toEqual([local.code, local.message]);
    expect(await bull.count()).toBe(before);
  });

  it('a job written by another client with malformed data fails at once, naming the field', async () => {
    const job = await bull.add(
      'generate',
      { format: 'fastcomposer-job', version: 1, options: { prompt: 'x' }, subjects: 'nope', resultTtl: 1000 },
      { attempts: 3 },
    );
    await waitFor('the failure', () => log.of(job.id!, 'failed')[0]);
    const failed = await bull.getJob(job.id!);
    expect(failed!.failedReason).toBe('ERR_INVALID_ARGUMENT: Expected array for job data subjects but received "nope" of type string');
    expect(failed!.attemptsStarted).toBe(1);
  });

  it('a retried job keeps the seed the producer drew; exhausted retries give the last coded error', async () => {
    await worker.close(); // a flaky worker takes the first attempt
    const seen: number[] = [];
    const flaky = new Worker(
      name,
      (job) => {
        seen.push(job.data.options.seed);
        return Promise.reject(new Error('ERR_NATIVE: the device fell over'));
      },
      { connection: { url: redis.url } },
    );
    const call = queue.generate({ ...base });
    await waitFor('the flaky attempt', () => (seen.length > 0 ? true : undefined));
    await flaky.close();
    worker = await FastComposerWorker.start({ connection: redis.url, name, model: fc }, (e) => workerEvents.push(e));
    const r = await call;
    expect(r.seed).toBe(seen[0]);
    expect((await bull.getJob(r.jobId))!.attemptsMade).toBe(2);

    const once = new FastComposerQueue({ connection: redis.url, name: 'flaky-only', attempts: 2 });
    const failing = new Worker('flaky-only', () => Promise.reject(new Error('ERR_OUT_OF_MEMORY: CUDA out of memory')), {
      connection: { url: redis.url },
    });
    const e = await rejection(once.generate({ ...base }));
    expect([e.code, e.message]).toEqual(['ERR_OUT_OF_MEMORY', 'CUDA out of memory']);
    await failing.close();
    await once.close();
  });

  it('an abort stops the job on the worker within one step; an abort while queued removes the job', async () => {
    const controller = new AbortController();
    const reason = new Error('user left');
    let abortedAt = 0;
    const e = await rejection(
      queue.generate({
        ...base,
        // Steps of tens of ms, so that a step report on its way to the worker's JavaScript is one at most.
        width: 256,
        height: 256,
        steps: 200,
        signal: controller.signal,
        onStep: ({ step }) => {
          if (step === 3) {
            abortedAt = step;
            controller.abort(reason);
          }
        },
      }),
    );
    expect(e.code).toBe('ERR_ABORTED');
    expect(e.cause).toBe(reason);
    const jobId = log.events.filter((x) => x.event === 'active').at(-1)!.jobId!;
    const failed = await waitFor('the cancelled job to fail', () => log.of(jobId, 'failed')[0], 30_000);
    expect(failed.failedReason).toMatch(/^ERR_ABORTED: /);
    // On the worker: the step under way when the cancel arrived, and one more if the native loop
    // was a report ahead of the worker's JavaScript (atStep is what JavaScript had heard of).
    const cancelled = workerEvents.find((x) => x.type === 'cancelled' && x.jobId === jobId) as Extract<WorkerEvent, { type: 'cancelled' }>;
    expect(cancelled.atStep).toBeGreaterThanOrEqual(abortedAt);
    expect(cancelled.lastStep - cancelled.atStep).toBeLessThanOrEqual(2);
    expect(Math.max(...log.of(jobId, 'progress').map((p) => (p.data as { step: number }).step))).toBeLessThanOrEqual(cancelled.lastStep);

    // Queued behind a long job, then aborted: it never runs.
    const blocker = new AbortController();
    const first = queue.generate({ ...base, steps: 200, signal: blocker.signal });
    // The second call only once the first one runs: calls made together reach Redis in either
    // order, and the worker would take the short one first.
    await waitFor('the first job running', async () => ((await bull.getActiveCount()) === 1 ? true : undefined));
    const later = new AbortController();
    const second = queue.generate({ ...base, signal: later.signal });
    await waitFor('the second job waiting', async () => ((await bull.getWaitingCount()) === 1 ? true : undefined));
    const [waiting] = await bull.getWaiting();
    later.abort();
    expect((await rejection(second)).code).toBe('ERR_ABORTED');
    // The call rejects at once; the job leaves Redis a round trip later. (A worker that takes it in
    // between finds its cancel mark and does not run it.)
    await waitFor('the aborted job removed', async () => ((await bull.getJob(waiting!.id!)) === undefined ? true : undefined));
    blocker.abort();
    expect((await rejection(first)).code).toBe('ERR_ABORTED');
    await waitFor('the queue idle', async () => ((await bull.getActiveCount()) === 0 ? true : undefined));
    expect(log.of(waiting!.id!, 'active')).toEqual([]);
    expect(await bull.getJob(waiting!.id!)).toBeUndefined();
  });

  it('a call past its timeout fails with ERR_QUEUE and its job is cancelled; close() rejects waiting calls', async () => {
    const short = new FastComposerQueue({ connection: redis.url, name, timeout: 1500 });
    const started = Date.now();
    const e = await rejection(short.generate({ ...base, steps: 500 }));
    expect(e.code).toBe('ERR_QUEUE');
    expect(e.message).toMatch(/did not finish within 1500 ms/);
    expect(Date.now() - started).toBeLessThan(10_000);
    const jobId = log.events.filter((x) => x.event === 'active').at(-1)!.jobId!;
    expect((await waitFor('the cancelled job to fail', () => log.of(jobId, 'failed')[0])).failedReason).toMatch(/^ERR_ABORTED/);

    const call = short.generate({ ...base, steps: 500 });
    await waitFor('the job to start', async () => ((await bull.getActiveCount()) === 1 ? true : undefined));
    const closed = rejection(call);
    await short.close();
    expect((await closed).code).toBe('ERR_DISPOSED');
    expect((await rejection(short.generate(base))).code).toBe('ERR_DISPOSED');
    await waitFor('the queue idle', async () => ((await bull.getActiveCount()) === 0 ? true : undefined));
  });

  it('finished jobs are removed after their age; results expire when nobody reads them', async () => {
    const aging = new FastComposerQueue({ connection: redis.url, name, removeOnComplete: { age: 1 }, resultTtl: 1000 });
    const a = await aging.generate(base);
    expect(await bull.getJob(a.jobId)).toBeDefined();
    await new Promise((r) => setTimeout(r, 1200));
    const b = await aging.generate(base);
    // BullMQ evicts aged jobs when another job of the same kind finishes.
    expect(await bull.getJob(a.jobId)).toBeUndefined();
    expect(await bull.getJob(b.jobId)).toBeDefined();
    // A result whose caller is gone (a producer that died after queueing) expires by itself.
    const { data } = await encodeJob({ ...base, seed: 9 }, 1000);
    const orphan = await bull.add('generate', data);
    await waitFor('the orphan job', () => log.of(orphan.id!, 'completed')[0], 30_000);
    const key = `bull:${name}:fastcomposer:result:${orphan.id}`;
    const ttl = await client.pttl(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(1000);
    await waitFor('the result to expire', async () => ((await client.exists(key)) === 0 ? true : undefined), 5000);
    await aging.close();
  });

  it('bounded waits: an unreachable Redis fails with ERR_QUEUE; bad queue options are named', async () => {
    const nowhere = new FastComposerQueue({ connection: 'redis://127.0.0.1:1', connectionTimeout: 1000 });
    const started = Date.now();
    const e = await rejection(nowhere.generate(base));
    expect(e.code).toBe('ERR_QUEUE');
    expect(Date.now() - started).toBeLessThan(8000);
    await nowhere.close();
    expect(() => new FastComposerQueue({ connection: 'http://127.0.0.1' })).toThrow(
      'Expected redis:// or rediss:// URL for connection but received "http://127.0.0.1" of type string',
    );
    expect(() => new FastComposerQueue({ connection: redis.url, name: 'a:b' })).toThrow(/for name/);
    expect(() => new FastComposerQueue({ connection: redis.url, timeout: -1 })).toThrow(
      'Expected integer between 0 and 604800000 for timeout but received -1 of type number',
    );
  });
});

describe('a worker with maxBatchSize', () => {
  it('takes several jobs at once and runs the waiting ones as one batch, each with its own result', async () => {
    const redis = await startRedis();
    const name = 'batching';
    const queue = new FastComposerQueue({ connection: redis.url, name, checkInterval: 200 });
    // One thread each: with other processes on the cores, OpenMP's spinning barriers made a
    // two-thread model ten times slower, and the test's time depended on it.
    const fc = await FastComposer.load(undefined, { device: 'cpu', threads: 1 });
    let worker: FastComposerWorker | undefined;
    try {
      const jobs = [1, 2, 3].map((seed) => ({ ...base, width: 128, height: 128, steps: 30, seed }));
      const alone: Float32Array[] = [];
      for (const job of jobs) alone.push(float32View((await fc.generate(job)).latents));
      worker = await FastComposerWorker.start({ connection: redis.url, name, device: 'cpu', threads: 1, maxBatchSize: 4 });
      expect(worker.model.maxBatchSize).toBe(4);
      const model = worker.model;
      // A job that would run for minutes holds the model; the other three, taken meanwhile,
      // wait for it. Cancelling it lets them start, together. Nothing depends on how long a
      // step takes.
      const blocker = new AbortController();
      const first = queue.generate({ ...base, width: 128, height: 128, steps: 900, seed: 9, signal: blocker.signal });
      await waitFor('the long job running', () => (model.counters().running === 1 ? true : undefined));
      const pending = jobs.map((job) => queue.generate(job));
      await waitFor('the other jobs taken, waiting for the model', () => (model.counters().waiting === jobs.length ? true : undefined));
      blocker.abort();
      expect((await rejection(first)).code).toBe('ERR_ABORTED');
      const results = await Promise.all(pending);
      for (const r of results) expect(r.timings.batchedCalls).toBe(3);
      results.forEach((r, k) => {
        expect(r.seed).toBe(jobs[k]!.seed);
        const b = float32View(r.latents);
        expect(Math.max(...alone[k]!.map((v, i) => Math.abs(v - b[i]!)))).toBeLessThan(1e-3);
      });
      // A loaded model brings its own maxBatchSize.
      await expect(FastComposerWorker.start({ connection: redis.url, name, model: fc, maxBatchSize: 2 })).rejects.toThrow('maxBatchSize');
    } finally {
      await worker?.close();
      await queue.close();
      await fc.dispose();
      await redis.stop();
    }
  });
});
