/**
 * Errors across the queue. BullMQ keeps only a failed job's message (`failedReason`), so the
 * worker writes `ERR_CODE: message` there and the producer rebuilds the same FastComposerError
 * (code and message unchanged). Errors of the job's own input fail at once (UnrecoverableError:
 * no retry, another worker would fail the same way); others (out of memory, a native error, a
 * worker's model disposed) are retried on any worker, up to the job's attempts.
 */
import { UnrecoverableError } from 'bullmq';

import { ERROR_CODES, FastComposerError, type FastComposerErrorCode } from '../errors.js';

const INPUT_ERRORS: ReadonlySet<FastComposerErrorCode> = new Set([
  'ERR_INVALID_ARGUMENT',
  'ERR_SUBJECT_COUNT',
  'ERR_PROMPT',
  'ERR_IMAGE',
  'ERR_ABORTED',
]);

export function queueError(message: string, cause?: unknown): FastComposerError {
  return new FastComposerError('ERR_QUEUE', message, cause === undefined ? undefined : { cause });
}

/** Any error thrown while a worker runs a job, as the Error BullMQ records for it. */
export function jobFailure(error: unknown): Error {
  const e =
    error instanceof FastComposerError
      ? error
      : new FastComposerError('ERR_NATIVE', error instanceof Error ? error.message : String(error), { cause: error });
  const reason = `${e.code}: ${e.message}`;
  return INPUT_ERRORS.has(e.code) ? new UnrecoverableError(reason) : new Error(reason);
}

/** A failed job's reason back to the error the worker met; BullMQ's own reasons (a job that
 * stalled too often, a job removed while it ran) become ERR_QUEUE naming the job. */
export function failureError(reason: unknown, jobId: string): FastComposerError {
  const text = typeof reason === 'string' ? reason : String(reason);
  const match = /^(ERR_[A-Z_]+): ([\s\S]*)$/.exec(text);
  if (match && (ERROR_CODES as readonly string[]).includes(match[1]!)) {
    return new FastComposerError(match[1] as FastComposerErrorCode, match[2]!);
  }
  return queueError(`Job ${jobId} failed in the queue: ${text}`);
}
