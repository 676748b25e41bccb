// Model folders for the security tests: the golden model with one file replaced, and model.json
// rewritten the way a tampered folder would have it (the replacement's size and SHA-256 recorded).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { findPython } from '../../lib/python.js';

export interface CraftedCase {
  file: string;
  operator: string;
  /** A file the module writes when it runs (proved by running it in Python first: provedLive). */
  marker?: string;
  provedLive?: boolean;
}
export interface Crafted {
  cases: Record<string, CraftedCase>;
  /** The model's text encoder with one weight changed: valid, the same size, another SHA-256. */
  swapped: string;
}

const craftScript = join(import.meta.dirname, '..', 'fixtures', 'security', 'craft_modules.py');

/** Runs test/fixtures/security/craft_modules.py on `modelDir`'s text encoder, into `outDir`. */
export function craftModules(modelDir: string, outDir: string): Crafted {
  const r = spawnSync(findPython(), [craftScript, modelDir, outDir], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`crafting the test modules failed (${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as Crafted;
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A copy of `modelDir` in `dir` with `replace` applied (file name -> new content). With
 * `record`, model.json records the new files' sizes and digests, as a tampered folder would.
 */
export function modelCopy(modelDir: string, dir: string, replace: Record<string, Buffer>, record: boolean): string {
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(modelDir)) if (!(f in replace)) copyFileSync(join(modelDir, f), join(dir, f));
  for (const [f, data] of Object.entries(replace)) writeFileSync(join(dir, f), data);
  if (record) {
    const manifest = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as { files: Record<string, unknown> };
    for (const [f, data] of Object.entries(replace)) manifest.files[f] = { size: data.length, sha256: sha256(data) };
    writeFileSync(join(dir, 'model.json'), JSON.stringify(manifest, null, 2));
  }
  return dir;
}
