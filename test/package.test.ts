// The published entry points: ESM and CommonJS export the same API, and the .d.ts types
// compile for both kinds of consumer (with @ts-expect-error lines proving they reject misuse);
// the CLI is executable.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const API = [
  'AbortError',
  'DisposedError',
  'DownloadError',
  'FastComposer',
  'FastComposerError',
  'GeneratedImage',
  'IMAGE_TOKENS',
  'SCHEDULERS',
  'defaultModelDir',
  'listModels',
  'modelsDir',
  'pull',
  'resolveModel',
  'runtimeInfo',
];
const QUEUE_API = [
  'AbortError',
  'DEFAULT_QUEUE_NAME',
  'DisposedError',
  'FastComposerError',
  'FastComposerQueue',
  'FastComposerWorker',
  'GeneratedImage',
];

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

  it('fastcomposer/server: ESM and CommonJS export the same server API, with the page next to it', async () => {
    const SERVER_API = ['DEFAULT_LIMITS', 'FastComposerServer', 'createServer', 'startServer'];
    const esm = await import(join(root, 'dist', 'esm', 'server', 'index.js'));
    expect(Object.keys(esm).sort()).toEqual(SERVER_API);
    const cjs = createRequire(import.meta.url)(join(root, 'dist', 'cjs', 'server', 'index.cjs'));
    expect(Object.keys(cjs).sort()).toEqual(SERVER_API);
    const require = createRequire(join(root, 'package.json'));
    expect(require.resolve('fastcomposer/server')).toBe(join(root, 'dist', 'cjs', 'server', 'index.cjs'));
    for (const file of ['index.html', 'app.js', 'style.css'])
      expect(statSync(join(root, 'dist', 'esm', 'server', 'public', file)).isFile()).toBe(true);
    // The bundled CommonJS server finds the page too.
    const server = await cjs.createServer({
      backend: { generate: () => Promise.reject(new Error('unused')) },
      info: { model: 'm', device: 'cpu', dtype: 'float32' },
    });
    const page = await server.app.inject({ method: 'GET', url: '/app.js' });
    expect(page.statusCode).toBe(200);
    expect(page.body).toBe(readFileSync(join(root, 'lib', 'server', 'public', 'app.js'), 'utf8'));
    await server.close();
  });

  it('CommonJS pull() loads the hub library it imports on first use', async () => {
    const cjs = createRequire(import.meta.url)(join(root, 'dist', 'cjs', 'index.cjs'));
    const tmp = mkdtempSync(join(tmpdir(), 'fastcomposer-cjs-'));
    try {
      // A port just freed: the hub library's first request fails, as a coded error.
      const server = createServer();
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as AddressInfo;
      await new Promise((resolve) => server.close(resolve));
      const env = { HF_ENDPOINT: `http://127.0.0.1:${port}`, HF_HUB_CACHE: tmp, FASTCOMPOSER_CACHE: tmp };
      await expect(cjs.pull({ env, downloadOnly: true })).rejects.toMatchObject({
        code: 'ERR_NETWORK',
        repo: 'stable-diffusion-v1-5/stable-diffusion-v1-5',
      });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('the self-reference resolves both conditions', () => {
    const require = createRequire(join(root, 'package.json'));
    expect(require.resolve('fastcomposer')).toBe(join(root, 'dist', 'cjs', 'index.cjs'));
    expect(require.resolve('fastcomposer/queue')).toBe(join(root, 'dist', 'cjs', 'queue', 'index.cjs'));
  });

  it("fastcomposer/queue: import and require give the same API, sharing the main entry's classes", async () => {
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
