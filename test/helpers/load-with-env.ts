// FastComposer.load() on the CPU with some FASTCOMPOSER_* switches set for that load only (the
// native side reads them as the model loads), then the environment as it was.
import { inject } from 'vitest';

import { FastComposer } from '../../lib/index.js';

export async function loadWithEnv(
  env: Record<string, string>,
  options: { dtype?: 'float32' | 'float16' | 'bfloat16'; threads?: number } = {},
  dir: string = inject('goldenModelDir'),
): Promise<FastComposer> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return await FastComposer.load(dir, { device: 'cpu', ...options });
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

type Info = { prepacked: { convolutions: number; linears: number; weights: number; bytes: number; fromCache: number } };

/** What the model's load prepacked (native/prepack.h), from its native info. */
export const prepackedOf = (fc: FastComposer): Info['prepacked'] => (fc as unknown as { native: { info(): Info } }).native.info().prepacked;
