/**
 * Every error this library throws or rejects with is a FastComposerError with a stable `code`.
 * The table of codes lives in README.md ("Errors"); keep the two in step.
 */
export const ERROR_CODES = [
  'ERR_INVALID_ARGUMENT', // an option has the wrong type, range or shape
  'ERR_SUBJECT_COUNT', // subjects do not match the <|image|> tokens of the prompt
  'ERR_PROMPT', // the prompt cannot be used (e.g. <|image|> with no noun before it)
  'ERR_IMAGE', // a subject picture or mask is empty, corrupt, truncated or too large
  'ERR_MODEL', // the model directory is missing files, has another version, a file differs from model.json, or a module is corrupt or refused
  'ERR_TORCH_NOT_FOUND', // libtorch could not be found at load time
  'ERR_TORCH_VERSION', // the libtorch found is not the one the binary was built against
  'ERR_NATIVE_LOAD', // the native addon could not be loaded
  'ERR_DEVICE', // the device is unknown or unavailable (e.g. cuda without a CUDA torch)
  'ERR_OUT_OF_MEMORY', // the device ran out of memory
  'ERR_ABORTED', // the call was aborted through its AbortSignal
  'ERR_DISPOSED', // the model (or queue) was disposed before or during the call
  'ERR_NATIVE', // any other error raised inside libtorch / the C++ pipeline
  'ERR_EXPORT', // the Python exporter failed
  'ERR_HUB_AUTH', // the hub refused the token, or the repo is private or gated and needs one (401/403)
  'ERR_HUB_NOT_FOUND', // the hub has no such repo, revision or file (404)
  'ERR_NETWORK', // the server could not be reached, or the connection kept failing
  'ERR_DISK_FULL', // no space left for a download
  'ERR_DOWNLOAD_INTEGRITY', // a downloaded file's size or hash differs from what the server announced
  'ERR_QUEUE', // the job queue failed: Redis unreachable, a job or result lost, a wait timed out
] as const;
export type FastComposerErrorCode = (typeof ERROR_CODES)[number];

export class FastComposerError extends Error {
  readonly code: FastComposerErrorCode;
  override name = 'FastComposerError';

  constructor(code: FastComposerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Thrown by calls on a model after dispose(), and by calls that dispose() cut short. */
export class DisposedError extends FastComposerError {
  override name = 'DisposedError';
  constructor(message = 'This FastComposer model has been disposed') {
    super('ERR_DISPOSED', message);
  }
}

/** Rejects a call whose AbortSignal fired; `cause` carries the signal's reason. */
export class AbortError extends FastComposerError {
  override name = 'AbortError';
  constructor(reason?: unknown) {
    super('ERR_ABORTED', 'The operation was aborted', { cause: reason });
  }
}

/** Describes a received value the way sharp does: `-1 of type number`. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Buffer.isBuffer(value)) return `Buffer of ${value.length} bytes`;
  if (Array.isArray(value)) return `array of length ${value.length}`;
  if (typeof value === 'string') {
    const s = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    return `${JSON.stringify(s)} of type string`;
  }
  if (typeof value === 'object') return `object ${Object.prototype.toString.call(value)}`;
  // What is left: a number, bigint, boolean, symbol or function.
  const rest = value as number | bigint | boolean | symbol | (() => unknown);
  return `${String(rest)} of type ${typeof value}`;
}

/** `Expected positive integer for width but received -1 of type number`. */
export function invalidArgument(expected: string, name: string, value: unknown): FastComposerError {
  return new FastComposerError('ERR_INVALID_ARGUMENT', `Expected ${expected} for ${name} but received ${describe(value)}`);
}

/**
 * Any error from native code or a callback as a FastComposerError: native errors carry a `code`
 * (native/errors.h) and get the class that goes with it (ERR_ABORTED: AbortError, with the
 * signal's reason as its cause); anything else is ERR_NATIVE.
 */
export function asFastComposerError(error: unknown, signal?: AbortSignal): FastComposerError {
  if (error instanceof FastComposerError) return error;
  const e = error as { code?: unknown; message?: unknown } | null | undefined;
  if (e && typeof e.code === 'string' && e.code.startsWith('ERR_')) {
    if (e.code === 'ERR_ABORTED') return new AbortError(signal?.reason);
    return new FastComposerError(e.code as FastComposerErrorCode, String(e.message), { cause: error });
  }
  return new FastComposerError('ERR_NATIVE', error instanceof Error ? error.message : String(error), { cause: error });
}

/** ERR_MODEL: a model directory that cannot be used (its message names the file). */
export function modelError(message: string, cause?: unknown): FastComposerError {
  return new FastComposerError('ERR_MODEL', message, cause === undefined ? undefined : { cause });
}
