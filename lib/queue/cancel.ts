/**
 * Cancelling a job on whichever worker runs it (BullMQ's worker.cancelJob() reaches only its own
 * process). The caller sets a key and publishes the job's id: a worker checks the key before it
 * starts a job (a job taken just as it was cancelled, or recovered after a crash) and again when
 * its subscription reconnects (a message sent meanwhile is lost); the message stops a running
 * job within one step.
 */
import type { Redis } from 'ioredis';

import { cancelChannel, cancelKey, type QueueLocation, redisClient } from './connection.js';

export async function requestCancel(redis: Redis, location: QueueLocation, jobId: string, ttlMs: number): Promise<void> {
  const replies = await redis.multi().set(cancelKey(location, jobId), '1', 'PX', ttlMs).publish(cancelChannel(location), jobId).exec();
  const failed = replies?.find(([error]) => error);
  if (failed) throw failed[0]!;
}

export async function isCancelled(redis: Redis, location: QueueLocation, jobId: string): Promise<boolean> {
  return (await redis.exists(cancelKey(location, jobId))) === 1;
}

/** A worker's subscription to the queue's cancel channel. */
export class CancelListener {
  private readonly sub: Redis;

  constructor(
    private readonly location: QueueLocation,
    onCancel: (jobId: string) => void,
    onReconnect: () => void,
    onError: (error: Error) => void,
  ) {
    // Commands wait for a reconnect instead of failing: the subscription must outlive Redis restarts.
    this.sub = redisClient(location, { maxRetriesPerRequest: null });
    this.sub.on('message', (_channel: string, jobId: string) => onCancel(jobId));
    this.sub.on('error', onError);
    let connectedBefore = false;
    this.sub.on('ready', () => {
      if (connectedBefore) onReconnect();
      connectedBefore = true;
    });
  }

  async start(): Promise<void> {
    await this.sub.subscribe(cancelChannel(this.location));
  }

  close(): void {
    this.sub.disconnect();
  }
}
