/**
 * What one server accepts and keeps: upload sizes, queue length, how long finished jobs and their
 * PNGs stay. Every limit has a default; each given one is checked like the library's options.
 */
import { FastComposerError, invalidArgument } from '../errors.js';
import { LIMITS } from '../options.js';

export interface ServerLimits {
  /** Largest subject file, in bytes. */
  maxFileBytes: number;
  /** Largest request body (all subject files and fields together), in bytes. */
  maxRequestBytes: number;
  /** Largest text field (the prompt, the negative prompt, a region), in bytes. */
  maxFieldBytes: number;
  /** Subject files per request. */
  maxSubjects: number;
  /** Largest subject picture, in pixels (a small file can hold a huge picture). */
  maxSubjectPixels: number;
  /** Jobs waiting to run; one more is refused with 429. */
  maxQueued: number;
  /** Finished jobs (and their PNGs) are dropped this long after they finish. */
  jobTtlMs: number;
  /** At most this many finished jobs are kept; the oldest go first. */
  maxFinishedJobs: number;
  /** At most this many bytes of PNGs are kept over all finished jobs (the newest job is always kept). */
  maxStoredBytes: number;
}

export const DEFAULT_LIMITS: Readonly<ServerLimits> = {
  maxFileBytes: 10 * 1024 * 1024,
  maxRequestBytes: 25 * 1024 * 1024,
  maxFieldBytes: 64 * 1024,
  maxSubjects: LIMITS.maxSubjects,
  maxSubjectPixels: 4096 * 4096,
  maxQueued: 32,
  jobTtlMs: 15 * 60 * 1000,
  maxFinishedJobs: 100,
  maxStoredBytes: 512 * 1024 * 1024,
};

/** The defaults with the given limits applied; each must be a positive integer. */
export function resolveLimits(given: Partial<ServerLimits> = {}): ServerLimits {
  if (given === null || typeof given !== 'object') throw invalidArgument('object', 'limits', given);
  const limits: ServerLimits = { ...DEFAULT_LIMITS };
  for (const [key, value] of Object.entries(given)) {
    if (!(key in DEFAULT_LIMITS)) {
      throw new FastComposerError(
        'ERR_INVALID_ARGUMENT',
        `Unknown limit ${JSON.stringify(key)}; expected only ${Object.keys(DEFAULT_LIMITS).join(', ')}`,
      );
    }
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1)
      throw invalidArgument('positive integer', `limits.${key}`, value);
    limits[key as keyof ServerLimits] = value;
  }
  if (limits.maxSubjects > LIMITS.maxSubjects) {
    throw invalidArgument(`integer between 1 and ${LIMITS.maxSubjects}`, 'limits.maxSubjects', limits.maxSubjects);
  }
  return limits;
}
