/**
 * What a value is: the predicates every check in this library is built from (options, subjects,
 * images, the stage API, the model manifest), so that "an integer", "a byte buffer" or "an
 * AbortSignal" mean the same everywhere. They only answer; the callers name the argument in the
 * error they throw (errors.ts invalidArgument).
 */

/** Any object that is not an array or a byte buffer: class instances count, their own keys are checked. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** A Buffer or any other Uint8Array. */
export function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

export function isNonEmptyString(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0;
}

/** An integer in [min, max]. */
export function isInteger(v: unknown, min = -Infinity, max = Infinity): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

/** A finite number in [min, max]. */
export function isFiniteNumber(v: unknown, min = -Infinity, max = Infinity): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max;
}

/** A finite number above 0. */
export function isPositive(v: unknown): v is number {
  return isFiniteNumber(v) && v > 0;
}

export function isOneOf<T extends string>(v: unknown, allowed: readonly T[]): v is T {
  return typeof v === 'string' && (allowed as readonly string[]).includes(v);
}

export function isFunction(v: unknown): v is (...args: never[]) => unknown {
  return typeof v === 'function';
}

/** Duck-typed: signals from other realms or polyfills fail instanceof. */
export function isAbortSignal(v: unknown): v is AbortSignal {
  const s = v as { aborted?: unknown; addEventListener?: unknown; removeEventListener?: unknown } | null;
  return (
    typeof s === 'object' &&
    s !== null &&
    typeof s.aborted === 'boolean' &&
    typeof s.addEventListener === 'function' &&
    typeof s.removeEventListener === 'function'
  );
}

/** Raw pixels rather than an encoded picture or a path: an object with `data` (its fields are checked by the caller). */
export function isRawImageLike(v: unknown): v is Record<string, unknown> & { data: unknown } {
  return isRecord(v) && 'data' in v;
}
