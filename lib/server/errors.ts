/**
 * HTTP errors of the server: every error answer is `{ "error": { "code": "ERR_...", "message": "..." } }`.
 * The caller's mistakes reuse the library's codes (ERR_INVALID_ARGUMENT, ERR_SUBJECT_COUNT, ...) with
 * a 4xx status; the codes below cover what only a server can get wrong. Never a stack trace.
 */
import type { FastComposerErrorCode } from '../errors.js';

export type ServerErrorCode =
  | 'ERR_UPLOAD_TOO_LARGE' // a file, a field or the whole request is over its limit (413)
  | 'ERR_QUEUE_FULL' // too many jobs are waiting (429)
  | 'ERR_JOB_NOT_FOUND' // no such job, or it finished long enough ago to be dropped (404)
  | 'ERR_JOB_NOT_DONE' // the job's images were asked for before it finished (409)
  | 'ERR_JOB_FINISHED' // a finished job was asked to cancel (409)
  | 'ERR_NOT_FOUND' // no such route, image or heat map (404)
  | 'ERR_SHUTTING_DOWN' // the server is stopping and takes no new jobs (503)
  | 'ERR_INTERNAL'; // anything else (500); the details go to the server's log only

export type ApiErrorCode = FastComposerErrorCode | ServerErrorCode;

export interface ApiErrorBody {
  error: { code: ApiErrorCode; message: string };
}

/** An error with its HTTP status, answered as the JSON error body. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: ApiErrorCode,
    message: string,
  ) {
    super(message);
  }

  body(): ApiErrorBody {
    return { error: { code: this.code, message: this.message } };
  }
}

// The library's codes for what a request got wrong; every other library code is the server's fault.
const CALLER_CODES = new Set<string>(['ERR_INVALID_ARGUMENT', 'ERR_SUBJECT_COUNT', 'ERR_PROMPT', 'ERR_IMAGE']);

/** A library-style error (duck-typed: a queue backend's errors come back deserialised) as it goes into a job's JSON. */
export function jobError(error: unknown): { code: ApiErrorCode; message: string } {
  const e = error as { code?: unknown; message?: unknown } | null;
  if (e && typeof e.code === 'string' && /^ERR_[A-Z_]+$/.test(e.code) && typeof e.message === 'string') {
    return { code: e.code as ApiErrorCode, message: e.message };
  }
  return { code: 'ERR_INTERNAL', message: 'The job failed with an internal error' };
}

/** Whether a library error code names the caller's mistake (4xx) rather than the server's (5xx). */
export function isCallerCode(code: string): boolean {
  return CALLER_CODES.has(code);
}
