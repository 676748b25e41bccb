// Faults with real processes: two `fastcomposer worker` children on one redis-server, and what
// happens when a worker is killed or stopped mid-job, when Redis restarts, when a caller aborts.
// The checks read BullMQ's own events and job records, not what our code says about itself.
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { FastComposerQueue, type QueueGenerateResult } from '../../lib/queue/index.js';
import { bundleCli } from '../helpers/child-lib.js';
import { startRedis } from '../helpers/redis-server.mjs';
import { EventLog, startWorker, subjectA, waitFor, type WorkerProcess } from './helpers.js';
import { rejection } from '../helpers/errors.js';

const name = 'faults';
// A dead worker's job is taken over after about lockDuration + stalledInterval.
const TUNING = ['--lock-duration', '3000', '--stalled-interval', '1000'];
const job = { prompt: 'a man <|image|> in a park', subjects: [subjectA], width: 64, height: 64, seed: 1234 };

describe('faults, with worker processes', () => {
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let cli: string;
  let queue: FastComposerQueue;
  let bull: Queue;
  let log: EventLog;
  const workers = new Map<string, WorkerProcess>();
  let started = 0;
  let reference: QueueGenerateResult;

  async function addWorker(args: string[] = []): Promise<WorkerProcess> {
    const w = await startWorker(cli, redis.url, name, `w${++started}`, [...TUNING, ...args]);
    workers.set(w.name, w);
    return w;
  }

  /** The worker process running the job now (BullMQ's processedBy). */
  async function runner(): Promise<WorkerProcess> {
    const [active] = await bull.getActive();
    return workers.get(active!.processedBy!)!;
  }

  /** Starts a call; `atStep` runs once, when the call's onStep first sees that step. */
  function call(steps: number, atStep: number, act: () => Promise<void> | void, extra: object = {}) {
    let fired = false;
    let done = Promise.resolve();
    const result = queue.generate({
      ...job,
      steps,
      ...extra,
      onStep: ({ step }) => {
        if (step >= atStep && !fired) {
          fired = true;
          done = Promise.resolve(act());
        }
      },
    });
    return { result, acted: () => done };
  }

  beforeAll(async () => {
    cli = bundleCli();
    redis = await startRedis();
    log = new EventLog(redis.url, name);
    await log.ready();
    await Promise.all([addWorker(), addWorker()]);
    queue = new FastComposerQueue({ connection: redis.url, name, checkInterval: 250, connectionTimeout: 10_000 });
    bull = new Queue(name, { connection: { url: redis.url } });
    bull.on('error', () => undefined); // Redis restarts are part of the tests
    // The answer every later run of this job must give, whoever runs it and however often.
    reference = await queue.generate({ ...job, steps: 24 });
  });

  afterAll(async () => {
    await queue?.close();
    await bull?.close();
    await log?.close();
    for (const w of workers.values()) w.child.kill('SIGKILL');
    await Promise.all([...workers.values()].map((w) => w.exit));
    await redis?.stop();
  });

  it('a worker killed mid-job: another completes it with the requested seed, once', async () => {
    let victim: WorkerProcess | undefined;
    const run = call(24, 3, async () => {
      victim = await runner();
      victim.child.kill('SIGKILL');
    });
    const r = await run.result;
    await run.acted();
    expect((await victim!.exit).signal).toBe('SIGKILL');
    expect(r.seed).toBe(1234);
    expect(r.worker).not.toBe(victim!.name);
    expect(r.images[0]!.data.equals(reference.images[0]!.data)).toBe(true);
    expect(r.latents.data.equals(reference.latents.data)).toBe(true);
    await waitFor('events to settle', () => (log.of(r.jobId, 'completed').length ? true : undefined));
    expect(log.of(r.jobId, 'completed')).toHaveLength(1);
    expect(log.of(r.jobId, 'failed')).toHaveLength(0);
    expect(log.of(r.jobId, 'stalled')).toHaveLength(1);
    const record = await bull.getJob(r.jobId);
    expect(record!.attemptsStarted).toBe(2);
    expect(await bull.getJobCounts('waiting', 'active', 'delayed', 'failed')).toEqual({ waiting: 0, active: 0, delayed: 0, failed: 0 });
    workers.delete(victim!.name);
    await addWorker();
  });

  it('SIGTERM: the worker finishes its job and exits 0; a second SIGTERM hands the job back', async () => {
    let stopped: WorkerProcess | undefined;
    const finish = call(24, 3, async () => {
      stopped = await runner();
      stopped.child.kill('SIGTERM');
    });
    const r = await finish.result;
    await finish.acted();
    expect(r.worker).toBe(stopped!.name);
    expect(await stopped!.exit).toEqual({ code: 0, signal: null });
    expect(stopped!.output()).toMatch(/SIGTERM: finishing the running job/);
    workers.delete(stopped!.name);
    await addWorker();

    // Long enough that the job cannot finish between the two signals, even on a busy machine.
    const longJob = await queue.generate({ ...job, steps: 150 });
    let handed: WorkerProcess | undefined;
    const back = call(150, 3, async () => {
      handed = await runner();
      handed.child.kill('SIGTERM');
      await new Promise((res) => setTimeout(res, 100));
      handed.child.kill('SIGTERM');
    });
    const r2 = await back.result;
    await back.acted();
    expect(r2.worker).not.toBe(handed!.name);
    expect(r2.images[0]!.data.equals(longJob.images[0]!.data)).toBe(true);
    expect(await handed!.exit).toEqual({ code: 0, signal: null });
    expect(handed!.output()).toMatch(new RegExp(`job ${r2.jobId} handed back to the queue`));
    // Handing back spends no attempt and fails nothing.
    expect(log.of(r2.jobId, 'failed')).toHaveLength(0);
    expect((await bull.getJob(r2.jobId))!.attemptsMade).toBe(1);
    workers.delete(handed!.name);
    await addWorker();
  });

  it('a caller that aborts stops the job within one step on the worker that runs it', async () => {
    const controller = new AbortController();
    let abortedAt = 0;
    const run = call(
      200,
      3,
      () => {
        abortedAt = 3;
        controller.abort(new Error('gone'));
      },
      { signal: controller.signal },
    );
    const e = await rejection(run.result);
    expect(e.code).toBe('ERR_ABORTED');
    const jobId = log.events.filter((x) => x.event === 'active').at(-1)!.jobId!;
    const failed = await waitFor('the job to stop', () => log.of(jobId, 'failed')[0], 30_000);
    expect(failed.failedReason).toMatch(/^ERR_ABORTED: /);
    // The worker's own account: at most the step under way when the cancel reached it.
    const line = await waitFor(
      'the worker to log it',
      () =>
        new RegExp(`job ${jobId} cancelled by its caller at step (\\d+), stopped after step (\\d+)`).exec(
          [...workers.values()].map((w) => w.output()).join(''),
        ) ?? undefined,
      10_000,
    );
    expect(Number(line[1])).toBeGreaterThanOrEqual(abortedAt);
    expect(Number(line[2]) - Number(line[1])).toBeLessThanOrEqual(1);
    expect((await bull.getJob(jobId))!.attemptsStarted).toBe(1);
  });

  it('a corrupt subject fails at once on the worker, the coded error unchanged, never retried', async () => {
    const e = await rejection(queue.generate({ ...job, subjects: [Buffer.from('GIF89a, then nothing')], steps: 4 }));
    expect(e.code).toBe('ERR_IMAGE');
    expect(e.message).toMatch(/^subjects\[0\]: cannot decode the image: /);
    const jobId = log.events.filter((x) => x.event === 'failed').at(-1)!.jobId!;
    expect(log.of(jobId, 'active')).toHaveLength(1);
    expect((await bull.getJob(jobId))!.attemptsStarted).toBe(1);
  });

  it('Redis restarted while workers idle: they reconnect and take the next job', async () => {
    await redis.restart({ keepData: false, downMs: 500 });
    const r = await queue.generate({ ...job, steps: 24 });
    expect(r.images[0]!.data.equals(reference.images[0]!.data)).toBe(true);
  });

  it('Redis restarted (keeping its data) while a job runs: the caller gets the result', async () => {
    const run = call(24, 3, () => redis.restart({ keepData: true, downMs: 1000 }));
    const r = await run.result;
    await run.acted();
    expect(r.seed).toBe(1234);
    expect(r.images[0]!.data.equals(reference.images[0]!.data)).toBe(true);
    await waitFor('the completion', () => (log.of(r.jobId, 'completed').length ? true : undefined));
    expect(log.of(r.jobId, 'completed')).toHaveLength(1);
  });

  it('Redis restarted losing its data while a job runs: a clear ERR_QUEUE, then work goes on', async () => {
    const run = call(24, 3, () => redis.restart({ keepData: false, downMs: 1000 }));
    const started = Date.now();
    const e = await rejection(run.result);
    await run.acted();
    expect(e.code).toBe('ERR_QUEUE');
    expect(e.message).toMatch(/is gone from the queue \(Redis restarted without its data, or the job was removed\)/);
    expect(Date.now() - started).toBeLessThan(30_000);
    const r = await queue.generate({ ...job, steps: 24 });
    expect(r.images[0]!.data.equals(reference.images[0]!.data)).toBe(true);
    for (const w of workers.values()) expect(w.child.exitCode).toBe(null);
  });

  it('Redis gone for good: the caller fails with ERR_QUEUE in bounded time; close() and SIGTERM still end', async () => {
    // One worker that hands its job back after 1 s, so that the bound on its exit is short.
    for (const w of workers.values()) w.child.kill('SIGKILL');
    await Promise.all([...workers.values()].map((w) => w.exit));
    workers.clear();
    const last = await addWorker(['--grace', '1']);
    const impatient = new FastComposerQueue({ connection: redis.url, name, checkInterval: 250, connectionTimeout: 3000 });
    let gone: Promise<void> | undefined;
    let started = 0;
    const call = impatient.generate({
      ...job,
      steps: 24,
      onStep: ({ step }) => {
        if (step === 3 && !gone) {
          started = Date.now();
          gone = redis.stop();
        }
      },
    });
    const e = await rejection(call);
    expect(e.code).toBe('ERR_QUEUE');
    expect(e.message).toMatch(/^Lost Redis for more than 3000 ms while waiting for job /);
    expect(Date.now() - started).toBeLessThan(15_000);
    await gone;
    let t = Date.now();
    await impatient.close();
    expect(Date.now() - t).toBeLessThan(10_000);
    t = Date.now();
    last.child.kill('SIGTERM');
    expect(await last.exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - t).toBeLessThan(20_000);
    expect(last.output()).toMatch(/Redis did not answer while closing/);
  });
});
