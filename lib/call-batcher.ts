/**
 * Gathers calls that wait for the model into batches (load option `maxBatchSize`). A call joins
 * the waiting batch of its kind (same key) while that batch has room, else it opens a new one
 * at the end of the model's queue. A batch starts when the model reaches it, with whoever has
 * joined by then: a call never waits for company, so an idle model runs a lone call at once,
 * and batches form only from calls that would have waited anyway. A call whose signal aborts
 * while it waits leaves its batch at once.
 */
import type { JobQueue } from './call-queue.js';
import { AbortError } from './errors.js';

export interface BatchMember<J, R> {
  job: J;
  /** What the member counts against the batch's size (generate(): its numImages). */
  size: number;
  signal: AbortSignal | undefined;
  resolve(value: R): void;
  reject(error: unknown): void;
}

interface Batch<J, R> {
  key: string;
  members: BatchMember<J, R>[];
  size: number;
  started: boolean;
}

export class CallBatcher<J, R> {
  private readonly waiting = new Map<string, Batch<J, R>>();

  constructor(
    private readonly queue: JobQueue,
    private readonly maxSize: number,
    /** Runs a started batch; it settles every member it is given. */
    private readonly runBatch: (members: BatchMember<J, R>[]) => Promise<void>,
  ) {}

  submit(key: string, size: number, job: J, signal: AbortSignal | undefined): Promise<R> {
    if (signal?.aborted) return Promise.reject(new AbortError(signal.reason));
    return new Promise<R>((resolve, reject) => {
      let batch = this.waiting.get(key);
      if (!batch || batch.size + size > this.maxSize) batch = this.open(key);
      const member: BatchMember<J, R> = { job, size, signal, resolve, reject };
      batch.members.push(member);
      batch.size += size;
      const joined = batch;
      const onAbort = (): void => {
        if (joined.started) return;
        joined.members.splice(joined.members.indexOf(member), 1);
        joined.size -= size;
        reject(new AbortError(signal?.reason));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const settled = (): void => signal?.removeEventListener('abort', onAbort);
      member.resolve = (value) => (settled(), resolve(value));
      member.reject = (error) => (settled(), reject(error));
    });
  }

  private open(key: string): Batch<J, R> {
    const batch: Batch<J, R> = { key, members: [], size: 0, started: false };
    this.waiting.set(key, batch);
    void this.queue.run(async () => {
      batch.started = true;
      if (this.waiting.get(key) === batch) this.waiting.delete(key);
      if (batch.members.length === 0) return; // every member aborted while waiting
      try {
        await this.runBatch(batch.members);
      } catch (error) {
        for (const member of batch.members) member.reject(error);
      }
    });
    return batch;
  }
}
