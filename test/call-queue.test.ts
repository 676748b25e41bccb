// JobQueue: one job at a time, in order, also when a waiting job is aborted.
import { describe, expect, it } from 'vitest';

import { JobQueue } from '../lib/call-queue.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('JobQueue', () => {
  it('never runs two jobs at once, even after a waiting job is aborted', async () => {
    const queue = new JobQueue();
    let running = 0;
    let maxRunning = 0;
    const job = (ms: number) => async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await sleep(ms);
      running--;
    };
    const a = queue.run(job(100));
    const controller = new AbortController();
    const b = queue.run(job(10), controller.signal);
    controller.abort();
    await expect(b).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    const c = queue.run(job(10));
    let idle = false;
    const idlePromise = queue.idle().then(() => (idle = true));
    await sleep(20);
    expect(idle).toBe(false); // a is still running
    await Promise.all([a, c, idlePromise]);
    expect(maxRunning).toBe(1);
  });
});
