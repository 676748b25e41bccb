/**
 * Serialises calls: one model runs one job at a time (TorchScript modules are not re-entrant,
 * and a GPU gains nothing from interleaving). A waiting job whose signal aborts leaves the
 * queue at once.
 */
import { AbortError } from './errors.js';

export class JobQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const previous = this.tail;
    const job = new Promise<T>((resolve, reject) => {
      let started = false;
      const onAbort = (): void => {
        if (!started) reject(new AbortError(signal?.reason));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      previous.then(
        () => {
          signal?.removeEventListener('abort', onAbort);
          if (signal?.aborted) return reject(new AbortError(signal.reason));
          started = true;
          task().then(resolve, reject);
        },
        () => undefined,
      );
    });
    // The next job waits for this one to settle, whatever its outcome
    // (also the one before it: a job aborted while waiting settles at once, before its predecessor).
    this.tail = Promise.allSettled([previous, job]).then(() => undefined);
    return job;
  }

  /** Resolves once every job queued so far has settled. */
  idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }
}

const deviceQueues = new Map<string, JobQueue>();

/** CUDA devices are shared by every model on them; CPU models each get their own queue. */
export function queueFor(device: string): JobQueue {
  if (device === 'cpu') return new JobQueue();
  let queue = deviceQueues.get(device);
  if (!queue) {
    queue = new JobQueue();
    deviceQueues.set(device, queue);
  }
  return queue;
}
