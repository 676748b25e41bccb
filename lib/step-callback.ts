// An onStep callback that throws stops its call: how that reaches the caller.
import { FastComposerError } from './errors.js';
import type { NativeAbortFlag } from './native-contract.js';

export interface CallbackFailure {
  threw?: boolean;
  error?: unknown;
}

/** Once onStep threw, the call rejects with ERR_ABORTED whose cause is the callback's error
 * (even when the job got to its end before it saw the abort flag). */
export async function callbackChecked<T>(failure: CallbackFailure, job: Promise<T>): Promise<T> {
  let value: T;
  try {
    value = await job;
  } catch (error) {
    if (!failure.threw) throw error;
    throw callbackError(failure.error);
  }
  if (failure.threw) throw callbackError(failure.error);
  return value;
}

/** The error of a call that a throwing onStep stopped (also the queue's, lib/queue/producer.ts). */
export function callbackError(cause: unknown): FastComposerError {
  const what = cause instanceof Error ? cause.message : String(cause);
  return new FastComposerError('ERR_ABORTED', `The onStep callback threw, which stopped the call: ${what}`, { cause });
}

/** The native step callback for a caller's onStep (none without one): a throw stops the job
 * through its abort flag, and the call rejects with that error as the cause (callbackChecked). */
export function stepCallback(
  onStep: ((event: { step: number; steps: number; timestep: number }) => void) | undefined,
  flag: NativeAbortFlag,
  failure: CallbackFailure,
): ((event: { step: number; steps: number; timestep: number }) => void) | undefined {
  if (!onStep) return undefined;
  return (event) => {
    if (failure.threw) return; // one throw stops the job; later queued events are not reported
    try {
      onStep(event);
    } catch (error) {
      failure.threw = true;
      failure.error = error;
      flag.abort();
    }
  };
}
