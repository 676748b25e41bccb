/** The demo page (lib/server/public, copied next to the compiled server by the build) at `/`. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';

import { packageRoot } from '../paths.js';

/** Next to this file (lib/server/ in tests, dist/esm/server/ when built); the bundled CommonJS build uses dist/esm's copy. */
export function publicDir(): string {
  const here = join(dirname(fileURLToPath(import.meta.url)), 'public');
  return existsSync(here) ? here : join(packageRoot, 'dist', 'esm', 'server', 'public');
}

export async function pageRoutes(app: FastifyInstance): Promise<void> {
  // Any other path is looked up in the folder; a miss goes to the not-found handler (JSON 404).
  await app.register(fastifyStatic, { root: publicDir(), prefix: '/', index: 'index.html', cacheControl: false });
}
