// The published entry points: ESM and CommonJS export the same API, and the .d.ts types
// compile for both kinds of consumer (with @ts-expect-error lines proving they reject misuse);
// the CLI is executable.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const API = ['AbortError', 'DisposedError', 'FastComposer', 'FastComposerError', 'GeneratedImage', 'SCHEDULERS', 'defaultModelDir', 'runtimeInfo'];
const QUEUE_API = ['AbortError', 'DEFAULT_QUEUE_NAME', 'DisposedError', 'FastComposerError', 'FastComposerQueue', 'FastComposerWorker', 'GeneratedImage'];

describe('package entry points', () => {
  it('ESM exports the public API', async () => {
    const esm = await import(join(root, 'dist', 'esm', 'index.js'));
    expect(Object.keys(esm).sort()).toEqual(API);
  });

  it('CommonJS exports the same API', () => {
    const cjs = createRequire(import.meta.url)(join(root, 'dist', 'cjs', 'index.cjs'));
    expect(Object.keys(cjs).sort()).toEqual(API);
    expect(new cjs.FastComposerError('ERR_MODEL', 'x')).toBeInstanceOf(Error);
  });

  it('the self-reference resolves both conditions', () => {
    const require = createRequire(join(root, 'package.json'));
    expect(require.resolve('fastcomposer')).toBe(join(root, 'dist', 'cjs', 'index.cjs'));
    expect(require.resolve('fastcomposer/queue')).toBe(join(root, 'dist', 'cjs', 'queue', 'index.cjs'));
  });

  it('fastcomposer/queue: import and require give the same API, sharing the main entry\'s classes', async () => {
    const esm = await import('fastcomposer/queue');
    const main = await import('fastcomposer');
    expect(Object.keys(esm).sort()).toEqual(QUEUE_API);
    expect(esm.FastComposerError).toBe(main.FastComposerError);
    expect(esm.GeneratedImage).toBe(main.GeneratedImage);
    const require = createRequire(join(root, 'package.json'));
    const cjs = require('fastcomposer/queue');
    expect(Object.keys(cjs).sort()).toEqual(QUEUE_API);
    // One CommonJS module per source module: an error thrown by the queue is the main entry's class.
    expect(cjs.FastComposerError).toBe(require('fastcomposer').FastComposerError);
    expect(() => new cjs.FastComposerQueue({ connection: 'http://x' })).toThrow(require('fastcomposer').FastComposerError);
  });

  it('types compile for ESM and CommonJS consumers', () => {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'test', 'types', 'tsconfig.json')], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  }, 60_000);

  it('the CLI named in package.json bin is an executable file (npx runs it by path)', () => {
    const { bin } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    for (const file of Object.values(bin)) expect(statSync(join(root, file)).mode & 0o111).toBe(0o111);
  });
});
