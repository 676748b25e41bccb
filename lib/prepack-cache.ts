/**
 * Where CPU loads keep the weights they reorder for oneDNN, so that the next load of the same
 * model maps them instead of reordering them again (native/prepack_cache.h; docs/PERFORMANCE.md).
 */
import { join } from 'node:path';

import { invalidArgument } from './errors.js';
import { fastcomposerCacheDir } from './hub/settings.js';

type Env = NodeJS.ProcessEnv;

/** Modules whose packed weights are smaller load fast anyway: a tiny model leaves no files. */
const DEFAULT_MIN_MB = 64;

export interface PrepackCacheSettings {
  /** '' keeps nothing. */
  prepackCacheDir: string;
  prepackCacheMinBytes: number;
}

/**
 * `FASTCOMPOSER_PREPACK_CACHE`: a folder, or `0` for none; unset: `<fastcomposer cache>/prepacked`.
 * `FASTCOMPOSER_PREPACK_CACHE_MIN_MB`: the smallest module kept, in MB (default 64).
 */
export function prepackCacheSettings(env: Env = process.env): PrepackCacheSettings {
  const dir = env.FASTCOMPOSER_PREPACK_CACHE?.trim();
  const minText = env.FASTCOMPOSER_PREPACK_CACHE_MIN_MB?.trim();
  const minMb = minText ? Number(minText) : DEFAULT_MIN_MB;
  if (!Number.isFinite(minMb) || minMb < 0) {
    throw invalidArgument('a number of megabytes >= 0', 'FASTCOMPOSER_PREPACK_CACHE_MIN_MB', env.FASTCOMPOSER_PREPACK_CACHE_MIN_MB);
  }
  return {
    prepackCacheDir: dir === '0' ? '' : dir || join(fastcomposerCacheDir(env), 'prepacked'),
    prepackCacheMinBytes: Math.round(minMb * 1024 * 1024),
  };
}
