/**
 * Warnings that are not a call's own (a call's go into its result's `warnings`): notes about a
 * model directory found at load, and libtorch's warnings (TORCH_WARN), which the addon collects
 * on its job threads instead of printing them (native/libtorch_log.h). Both are emitted as Node
 * process warnings of type 'FastComposerWarning', which the user controls: `process.on('warning')`
 * sees them, `node --no-warnings` hides them. Each distinct message is emitted once per process.
 */
import type { NativeBinding } from './native-contract.js';

export const WARNING_TYPE = 'FastComposerWarning';
export type WarningCode = 'FASTCOMPOSER_MODEL' | 'FASTCOMPOSER_LIBTORCH';

const MAX_REMEMBERED = 1000;
const emitted = new Set<string>();

export function emitWarning(message: string, code: WarningCode): void {
  if (emitted.has(message)) return;
  if (emitted.size < MAX_REMEMBERED) emitted.add(message);
  process.emitWarning(message, { type: WARNING_TYPE, code });
}

/** Emits what libtorch warned about on the job threads since the last time. */
export function emitLibtorchWarnings(binding: Pick<NativeBinding, 'takeWarnings'>): void {
  for (const message of binding.takeWarnings()) emitWarning(`libtorch: ${message}`, 'FASTCOMPOSER_LIBTORCH');
}
