/**
 * Where the queue lives: the Redis connection (a URL or ioredis options), the queue's name and
 * key prefix, and the few keys fastcomposer keeps next to BullMQ's own. Every key shares the
 * queue's prefix, so BullMQ's `obliterate()` clears them too and a hash-tagged prefix (`{bull}`)
 * keeps them on the queue's Redis Cluster slot.
 */
import type { RedisOptions as BullRedisOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';

import { FastComposerError, describe, invalidArgument } from '../errors.js';

/** `redis://[user:password@]host:port[/db]` (`rediss://` for TLS), or ioredis options. */
export type RedisConnection = string | RedisOptions;

export const DEFAULT_QUEUE_NAME = 'fastcomposer';
export const DEFAULT_PREFIX = 'bull';

export interface QueueLocation {
  connection: RedisConnection;
  name: string;
  prefix: string;
}

const NAME = /^[A-Za-z0-9._-]{1,100}$/;

/** Checks the connection, queue name and prefix shared by the producer and the worker. */
export function queueLocation(options: { connection?: unknown; name?: unknown; prefix?: unknown }): QueueLocation {
  const { connection } = options;
  if (typeof connection === 'string') {
    if (!/^rediss?:\/\/./.test(connection)) throw invalidArgument('redis:// or rediss:// URL', 'connection', connection);
  } else if (typeof connection !== 'object' || connection === null || Array.isArray(connection)) {
    throw invalidArgument('redis:// URL or ioredis options', 'connection', connection);
  } else if ('keyPrefix' in connection) {
    // BullMQ refuses ioredis key prefixes; name the option that does the job.
    const got = describe((connection as RedisOptions).keyPrefix);
    throw new FastComposerError('ERR_INVALID_ARGUMENT', `Expected no keyPrefix in connection (use the prefix option) but received ${got}`);
  }
  const name = options.name ?? DEFAULT_QUEUE_NAME;
  if (typeof name !== 'string' || !NAME.test(name)) throw invalidArgument('1 to 100 letters, digits, ".", "_" or "-"', 'name', name);
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (typeof prefix !== 'string' || prefix.length === 0 || prefix.length > 100) {
    throw invalidArgument('non-empty string of at most 100 characters', 'prefix', prefix);
  }
  return { connection, name, prefix };
}

/** The connection as BullMQ takes it (it builds its own ioredis clients from these). */
export function bullConnection(location: QueueLocation, extra: RedisOptions = {}): BullRedisOptions {
  const c = location.connection;
  return (typeof c === 'string' ? { url: c, ...extra } : { ...c, ...extra }) as BullRedisOptions;
}

/** An ioredis client of our own (results, cancellations) on the queue's Redis. */
export function redisClient(location: QueueLocation, extra: RedisOptions = {}): Redis {
  const c = location.connection;
  return typeof c === 'string' ? new Redis(c, extra) : new Redis({ ...c, ...extra });
}

/** Our keys: `<prefix>:<queue>:fastcomposer:...`, beside BullMQ's `<prefix>:<queue>:<jobId>`. */
export function resultKey(location: QueueLocation, jobId: string): string {
  return `${location.prefix}:${location.name}:fastcomposer:result:${jobId}`;
}

export function cancelKey(location: QueueLocation, jobId: string): string {
  return `${location.prefix}:${location.name}:fastcomposer:cancel:${jobId}`;
}

export function cancelChannel(location: QueueLocation): string {
  return `${location.prefix}:${location.name}:fastcomposer:cancel`;
}

/** How long close() waits on Redis before it lets go: BullMQ's close awaits answers that a
 * Redis that is gone never gives (its clients have stopped reconnecting by then). */
export const CLOSE_BOUND_MS = 5000;

/** True when `p` settled within `ms`, false when the time ran out first. */
export function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref();
  });
  const settled = p.then(
    () => true,
    () => true,
  );
  return Promise.race([settled, late]).finally(() => clearTimeout(timer));
}
