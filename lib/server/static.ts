/** The demo page (lib/server/public, copied next to the compiled server by the build) at `/`, and the values it starts with. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';

import { invalidArgument } from '../errors.js';
import { LIMITS } from '../options.js';
import { packageRoot } from '../paths.js';

/**
 * What the page's fields start at, where not the seed demo's (512 x 512, 50 steps, 4 images): e.g.
 * smaller for a test model whose pictures are noise anyway. Reported by /api/health.
 */
export interface PageDefaults {
  width?: number;
  height?: number;
  /** 1..300, the page's range. */
  steps?: number;
  /** 1..8, the page's range. */
  numImages?: number;
}

export function checkPageDefaults(given: PageDefaults = {}): PageDefaults {
  if (given === null || typeof given !== 'object') throw invalidArgument('object', 'pageDefaults', given);
  const ranges: Record<keyof PageDefaults, [number, number, number]> = {
    width: [LIMITS.minSize, LIMITS.maxSize, LIMITS.sizeMultiple],
    height: [LIMITS.minSize, LIMITS.maxSize, LIMITS.sizeMultiple],
    steps: [1, 300, 1],
    numImages: [1, 8, 1],
  };
  const out: PageDefaults = {};
  for (const [key, value] of Object.entries(given)) {
    const range = ranges[key as keyof PageDefaults];
    if (!range) throw invalidArgument(`one of ${Object.keys(ranges).join(', ')}`, 'pageDefaults key', key);
    if (value === undefined) continue;
    const [min, max, multiple] = range;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max || value % multiple !== 0) {
      throw invalidArgument(
        multiple > 1 ? `multiple of ${multiple} between ${min} and ${max}` : `integer between ${min} and ${max}`,
        `pageDefaults.${key}`,
        value,
      );
    }
    out[key as keyof PageDefaults] = value;
  }
  return out;
}

/** Next to this file (lib/server/ in tests, dist/esm/server/ when built); the bundled CommonJS build uses dist/esm's copy. */
export function publicDir(): string {
  const here = join(dirname(fileURLToPath(import.meta.url)), 'public');
  return existsSync(here) ? here : join(packageRoot, 'dist', 'esm', 'server', 'public');
}

export async function pageRoutes(app: FastifyInstance): Promise<void> {
  // Any other path is looked up in the folder; a miss goes to the not-found handler (JSON 404).
  await app.register(fastifyStatic, { root: publicDir(), prefix: '/', index: 'index.html', cacheControl: false });
}
