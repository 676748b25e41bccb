/** Options of FastComposerQueue (the producer) and FastComposerWorker, their defaults and checks. */
import { hostname } from 'node:os';

import { invalidArgument } from '../errors.js';
import { FastComposer } from '../fastcomposer.js';
import { integer, knownKeys } from '../checks.js';
import type { DeviceSpec, ModelDType } from '../options.js';
import { queueLocation, type QueueLocation, type RedisConnection } from './connection.js';

/** How many finished jobs BullMQ keeps, by age (seconds) and count (its KeepJobs). */
export interface KeepJobs {
  age?: number;
  count?: number;
}

export interface FastComposerQueueOptions {
  /** `redis://host:port` or ioredis options. */
  connection: RedisConnection;
  /** The BullMQ queue's name (default 'fastcomposer'); workers take jobs from the queue of this name. */
  name?: string;
  /** BullMQ's key prefix (default 'bull'). */
  prefix?: string;
  /** Runs of a job whose failure may pass on another try (out of memory, a native error); default 3. */
  attempts?: number;
  /** Milliseconds a generate() call waits in all (queue and run) before it fails with ERR_QUEUE
   * and its job is cancelled; default 600000 (10 minutes), 0 = no limit. */
  timeout?: number;
  /** Milliseconds a finished job's result is kept in Redis for its caller; default 600000. */
  resultTtl?: number;
  /** Completed jobs kept, with their data (pictures included; results are kept apart); default { age: 3600, count: 100 }. */
  removeOnComplete?: KeepJobs;
  /** Failed jobs kept, with their data and reason; default { age: 86400, count: 100 }. */
  removeOnFail?: KeepJobs;
  /** Milliseconds between checks that a waited-for job still exists; default 5000. */
  checkInterval?: number;
  /** Milliseconds without Redis after which waiting calls fail with ERR_QUEUE; default 30000. */
  connectionTimeout?: number;
}

export interface NormalizedQueueOptions {
  location: QueueLocation;
  attempts: number;
  timeout: number;
  resultTtl: number;
  removeOnComplete: KeepJobs;
  removeOnFail: KeepJobs;
  checkInterval: number;
  connectionTimeout: number;
}

const QUEUE_KEYS = [
  'connection',
  'name',
  'prefix',
  'attempts',
  'timeout',
  'resultTtl',
  'removeOnComplete',
  'removeOnFail',
  'checkInterval',
  'connectionTimeout',
];

function optional(v: unknown, name: string, min: number, max: number, fallback: number): number {
  return v === undefined ? fallback : integer(v, name, min, max);
}

function keep(v: unknown, name: string, fallback: KeepJobs): KeepJobs {
  if (v === undefined) return fallback;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalidArgument('object {age?, count?}', name, v);
  const o = v as Record<string, unknown>;
  knownKeys(o, ['age', 'count'], name);
  const out: KeepJobs = {};
  if (o.age !== undefined) out.age = integer(o.age, `${name}.age`, 1, 10 * 365 * 86400);
  if (o.count !== undefined) out.count = integer(o.count, `${name}.count`, 0, 1e9);
  return out;
}

const DAY_MS = 86_400_000;

export function normalizeQueueOptions(options: FastComposerQueueOptions): NormalizedQueueOptions {
  if (typeof options !== 'object' || options === null) throw invalidArgument('object {connection, ...}', 'options', options);
  knownKeys(options as unknown as Record<string, unknown>, QUEUE_KEYS, 'FastComposerQueue options');
  return {
    location: queueLocation(options),
    attempts: optional(options.attempts, 'attempts', 1, 100, 3),
    timeout: optional(options.timeout, 'timeout', 0, 7 * DAY_MS, 600_000),
    resultTtl: optional(options.resultTtl, 'resultTtl', 1000, 7 * DAY_MS, 600_000),
    removeOnComplete: keep(options.removeOnComplete, 'removeOnComplete', { age: 3600, count: 100 }),
    removeOnFail: keep(options.removeOnFail, 'removeOnFail', { age: 86400, count: 100 }),
    checkInterval: optional(options.checkInterval, 'checkInterval', 10, DAY_MS, 5000),
    connectionTimeout: optional(options.connectionTimeout, 'connectionTimeout', 100, DAY_MS, 30_000),
  };
}

export interface FastComposerWorkerOptions {
  connection: RedisConnection;
  name?: string;
  prefix?: string;
  /** A model directory (default: the embedded tiny model), loaded by the worker and disposed by
   * its close(); or a loaded model, which close() leaves to its owner. */
  model?: string | FastComposer;
  device?: DeviceSpec;
  dtype?: ModelDType;
  threads?: number;
  /** Load option maxBatchSize: the worker takes up to this many jobs at once and they share the
   * model's UNet batches (default 1: one job at a time). With a loaded model, the model's own. */
  maxBatchSize?: number;
  /** This worker's name in BullMQ (a job's processedBy); default host:pid. */
  workerName?: string;
  /** Milliseconds a job's lock lasts unless renewed (BullMQ's lockDuration); default 30000. A
   * worker that dies loses its job to another worker after about this long. */
  lockDuration?: number;
  /** Milliseconds between checks for jobs whose worker died (BullMQ's stalledInterval); default 30000. */
  stalledInterval?: number;
  /** Times a job may be recovered from dead workers before it fails (BullMQ's maxStalledCount); default 1. */
  maxStalledCount?: number;
  /** Milliseconds close() lets a running job go on before it hands the job back to the queue; default 20000. */
  grace?: number;
}

export interface NormalizedWorkerOptions {
  location: QueueLocation;
  model: string | FastComposer | undefined;
  load: { device?: DeviceSpec; dtype?: ModelDType; threads?: number; maxBatchSize?: number };
  workerName: string;
  lockDuration: number;
  stalledInterval: number;
  maxStalledCount: number;
  grace: number;
}

const WORKER_KEYS = [
  'connection',
  'name',
  'prefix',
  'model',
  'device',
  'dtype',
  'threads',
  'maxBatchSize',
  'workerName',
  'lockDuration',
  'stalledInterval',
  'maxStalledCount',
  'grace',
];

export function normalizeWorkerOptions(options: FastComposerWorkerOptions): NormalizedWorkerOptions {
  if (typeof options !== 'object' || options === null) throw invalidArgument('object {connection, ...}', 'options', options);
  knownKeys(options as unknown as Record<string, unknown>, WORKER_KEYS, 'FastComposerWorker options');
  const { model, workerName } = options;
  if (model !== undefined && typeof model !== 'string' && !(model instanceof FastComposer)) {
    throw invalidArgument('model directory or FastComposer', 'model', model);
  }
  if (workerName !== undefined && (typeof workerName !== 'string' || workerName.length === 0)) {
    throw invalidArgument('non-empty string', 'workerName', workerName);
  }
  if (model instanceof FastComposer && (options.device ?? options.dtype ?? options.threads ?? options.maxBatchSize) !== undefined) {
    throw invalidArgument('no device, dtype, threads or maxBatchSize with a loaded model', 'options', options);
  }
  const load: NormalizedWorkerOptions['load'] = {};
  if (options.device !== undefined) load.device = options.device;
  if (options.dtype !== undefined) load.dtype = options.dtype;
  if (options.threads !== undefined) load.threads = options.threads;
  if (options.maxBatchSize !== undefined) load.maxBatchSize = options.maxBatchSize;
  return {
    location: queueLocation(options),
    model,
    load,
    workerName: workerName ?? `${hostname()}:${process.pid}`,
    lockDuration: optional(options.lockDuration, 'lockDuration', 100, DAY_MS, 30_000),
    stalledInterval: optional(options.stalledInterval, 'stalledInterval', 100, DAY_MS, 30_000),
    maxStalledCount: optional(options.maxStalledCount, 'maxStalledCount', 0, 1000, 1),
    grace: optional(options.grace, 'grace', 0, DAY_MS, 20_000),
  };
}
