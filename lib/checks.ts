/**
 * Argument checks shared by the options, the stage API and the image helpers: each applies a
 * predicate from is.ts and, when it fails, throws ERR_INVALID_ARGUMENT naming the argument and
 * the value received (sharp style: `Expected integer between 1 and 1000 for steps but received 0 of type number`).
 */
import { FastComposerError, describe, invalidArgument } from './errors.js';
import { isAbortSignal, isFiniteNumber, isInteger, isOneOf, isRecord } from './is.js';
import type { Tensor } from './tensor.js';

export function integer(v: unknown, name: string, min: number, max: number): number {
  if (!isInteger(v, min, max)) throw invalidArgument(`integer between ${min} and ${max}`, name, v);
  return v;
}

export function finite(v: unknown, name: string, min: number, max: number): number {
  if (!isFiniteNumber(v, min, max)) throw invalidArgument(`number between ${min} and ${max}`, name, v);
  return v;
}

export function boolean(v: unknown, name: string): boolean {
  if (typeof v !== 'boolean') throw invalidArgument('boolean', name, v);
  return v;
}

export function string(v: unknown, name: string): string {
  if (typeof v !== 'string') throw invalidArgument('string', name, v);
  return v;
}

export function oneOf<T extends string>(v: unknown, name: string, allowed: readonly T[]): T {
  if (!isOneOf(v, allowed)) throw invalidArgument(`one of ${allowed.join(', ')}`, name, v);
  return v;
}

export function abortSignal(v: unknown, name = 'signal'): AbortSignal {
  if (!isAbortSignal(v)) throw invalidArgument('AbortSignal', name, v);
  return v;
}

/** Rejects keys outside `allowed` (a typo would otherwise be ignored silently). */
export function knownKeys(obj: Record<string, unknown>, allowed: readonly string[], name: string): void {
  const unknown = Object.keys(obj).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    throw new FastComposerError(
      'ERR_INVALID_ARGUMENT',
      `Unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} in ${name}; expected only ${allowed.join(', ')}`,
    );
  }
}

/**
 * A float32 tensor argument, checked before native code sees it: `want` gives each dimension (a
 * number to match exactly, a name such as 'N' for any positive size). Returns the shape.
 */
export function float32Tensor(value: unknown, name: string, want: readonly (number | string)[]): number[] {
  const pattern = `[${want.join(', ')}]`;
  if (!isRecord(value)) throw invalidArgument(`float32 tensor ${pattern}`, name, value);
  const t = value as Partial<Tensor>;
  if (t.dtype !== 'float32') throw invalidArgument('"float32"', `${name}.dtype`, t.dtype);
  const shape: unknown = t.shape;
  if (
    !Array.isArray(shape) ||
    shape.length !== want.length ||
    shape.some((d, i) => !isInteger(d, 1, Number.MAX_SAFE_INTEGER) || (typeof want[i] === 'number' && d !== want[i]))
  ) {
    const got = Array.isArray(shape) ? `[${shape.map((d) => String(d)).join(', ')}]` : describe(shape);
    throw new FastComposerError('ERR_INVALID_ARGUMENT', `Expected shape ${pattern} for ${name}.shape but received ${got}`);
  }
  const dims = shape as number[];
  const bytes = dims.reduce((a, b) => a * b, 4);
  if (!Buffer.isBuffer(t.data) || t.data.length !== bytes) {
    throw invalidArgument(`Buffer of ${bytes} bytes`, `${name}.data`, t.data);
  }
  return dims;
}
