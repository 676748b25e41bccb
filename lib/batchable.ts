// Which generate() calls may share a UNet batch (load option maxBatchSize, lib/call-batcher.ts).
import type { NativeGenerateJob } from './native-contract.js';

/** Calls with the same key may share a UNet batch (native/pipeline.h batchable()). */
export function batchKey(job: NativeGenerateJob): string {
  return `${job.width}x${job.height}/${job.steps}/${job.scheduler}`;
}

/** Localized attention (maps or regions) takes per-call subject positions: such calls run alone. */
export function batchable(job: NativeGenerateJob): boolean {
  const localized = job.subjectPositions.length > 0 && (job.attentionMaps || (job.regionInside !== undefined && job.regionStrength! > 0));
  return !localized;
}
