/**
 * `fastcomposer setup`, and the same step run on demand by the other commands: installs torch
 * when none is found, takes or builds the native binary, and makes the embedded model. `npm
 * install` runs it as the package's install script, but recent npm versions skip dependencies'
 * install scripts until they are approved, so the CLI must be able to finish the job itself.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import type { Command } from 'commander';

import { FastComposerError } from '../errors.js';
import { defaultModelDir, packageRoot } from '../paths.js';
import { locateTorch } from '../torch-locate.js';

function binaryPresent(): boolean {
  try {
    (createRequire(import.meta.url)('node-gyp-build') as { resolve(dir: string): string }).resolve(packageRoot);
    return true;
  } catch {
    return false;
  }
}

/** What is missing for a first run, or an empty list. */
export function missingPieces(): string[] {
  const missing: string[] = [];
  if (!locateTorch()) missing.push('torch');
  if (!binaryPresent()) missing.push('the native binary');
  if (!existsSync(join(defaultModelDir, 'model.json'))) missing.push('the embedded model');
  return missing;
}

export function runSetup(): void {
  const r = spawnSync(process.execPath, [join(packageRoot, 'scripts', 'install.mjs')], {
    cwd: packageRoot,
    stdio: ['ignore', process.stderr, process.stderr],
  });
  if (r.status !== 0) {
    throw new FastComposerError('ERR_TORCH_NOT_FOUND', `setup failed (exit code ${r.status}); see the messages above`);
  }
}

/** Runs the set-up first when something it makes is missing (npm skipped the install script). */
export function ensureSetup(): void {
  const missing = missingPieces();
  if (missing.length === 0) return;
  process.stderr.write(`fastcomposer: ${missing.join(', ')} not found: running the first-time setup\n`);
  runSetup();
}

export function setupCommand(program: Command): void {
  program
    .command('setup')
    .description('install torch if none is found, take or build the native binary, make the embedded model')
    .action(() => {
      runSetup();
    });
}
