// Assertions on the library's coded errors, shared by the tests.
import { expect } from 'vitest';

import { FastComposerError, type FastComposerErrorCode } from '../../lib/errors.js';

/** What `p` rejects with, which must be a FastComposerError (a resolve fails the test). */
export async function rejection(p: Promise<unknown>): Promise<FastComposerError> {
  const e = await p.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(e).toBeInstanceOf(FastComposerError);
  return e as FastComposerError;
}

/** What `fn` throws, which must be a FastComposerError. */
export function errorOf(fn: () => unknown): FastComposerError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FastComposerError);
    return e as FastComposerError;
  }
  throw new Error('expected a FastComposerError, nothing was thrown');
}

/** `fn` throws `code` with a message containing every fragment (the argument and the bad value). */
export function expectError(fn: () => unknown, code: FastComposerErrorCode, ...fragments: string[]): void {
  const e = errorOf(fn);
  expect(e.code).toBe(code);
  for (const f of fragments) expect(e.message).toContain(f);
}
