/**
 * fastcomposer/queue: FastComposer on a BullMQ queue in Redis. FastComposerQueue (the producer)
 * gives the same generate() as FastComposer, run by any FastComposerWorker (`npx fastcomposer
 * worker`) on any host; the error classes are the main entry's own.
 */
export { FastComposerQueue } from './producer.js';
export type { QueueGenerateResult } from './producer.js';
export { FastComposerWorker } from './worker.js';
export type { WorkerEvent } from './worker.js';
export type { FastComposerQueueOptions, FastComposerWorkerOptions, KeepJobs } from './queue-options.js';
export type { RedisConnection } from './connection.js';
export { DEFAULT_QUEUE_NAME } from './connection.js';
export { AbortError, DisposedError, FastComposerError } from '../errors.js';
export type { FastComposerErrorCode } from '../errors.js';
export { GeneratedImage } from '../fastcomposer.js';
export type { GenerateOptions, StepProgress } from '../options.js';
