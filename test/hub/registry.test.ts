// Named models (a folder in the models cache found by its name) and where the caches and the
// hub settings come from.
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';

import { FastComposerError } from '../../lib/errors.js';
import { listModels, resolveModel } from '../../lib/hub/index.js';
import { fastcomposerCacheDir, hubCacheDir, hubEndpoint, hubOffline, hubToken, modelsDir } from '../../lib/hub/settings.js';
import { readModelDir } from '../../lib/model-dir.js';

let tmp: string;
let env: NodeJS.ProcessEnv;
let cwd: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'fastcomposer-registry-'));
  env = { FASTCOMPOSER_CACHE: join(tmp, 'cache') };
  cwd = process.cwd();
  process.chdir(tmp);
});
afterEach(() => {
  process.chdir(cwd);
  rmSync(tmp, { recursive: true, force: true });
});

function fakeModel(dir: string, manifest: Record<string, unknown> = {}): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ format: 'fastcomposer-model', version: 1, ...manifest }));
  writeFileSync(join(dir, 'unet.pt'), Buffer.alloc(1000));
}

describe('resolveModel', () => {
  it('finds a pulled model by name', () => {
    fakeModel(join(tmp, 'cache', 'models', 'fastcomposer'));
    expect(resolveModel('fastcomposer', env)).toBe(join(tmp, 'cache', 'models', 'fastcomposer'));
  });

  it('a folder with a model.json wins over a name; paths stay paths', () => {
    fakeModel(join(tmp, 'cache', 'models', 'fastcomposer'));
    fakeModel(join(tmp, 'fastcomposer'));
    expect(resolveModel('fastcomposer', env)).toBe('fastcomposer');
    expect(resolveModel('./elsewhere/model', env)).toBe('./elsewhere/model');
    expect(resolveModel('/abs/model', env)).toBe('/abs/model');
  });

  it('a folder without a model.json does not hide a pulled model of that name', () => {
    fakeModel(join(tmp, 'cache', 'models', 'fastcomposer'));
    mkdirSync(join(tmp, 'fastcomposer')); // e.g. a checkout of this project
    expect(resolveModel('fastcomposer', env)).toBe(join(tmp, 'cache', 'models', 'fastcomposer'));
  });

  it('an unknown name says how to pull it', () => {
    let error: unknown;
    try {
      resolveModel('fastcomposer', env);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FastComposerError);
    expect((error as FastComposerError).code).toBe('ERR_MODEL');
    expect((error as FastComposerError).message).toContain('npx fastcomposer pull');
    expect(() => resolveModel('mine', env)).toThrow('npx fastcomposer pull --name mine');
  });

  it('readModelDir() and so load() and --model take names', async () => {
    const modelDir = inject('goldenModelDir');
    cpSync(modelDir, join(tmp, 'models-home', 'models', 'golden'), { recursive: true });
    const saved = process.env.FASTCOMPOSER_CACHE;
    process.env.FASTCOMPOSER_CACHE = join(tmp, 'models-home');
    try {
      const dir = await readModelDir('golden');
      expect(dir.dir).toBe(join(tmp, 'models-home', 'models', 'golden'));
      await expect(readModelDir('nothing-here')).rejects.toMatchObject({ code: 'ERR_MODEL', message: expect.stringContaining('pull') });
    } finally {
      if (saved === undefined) delete process.env.FASTCOMPOSER_CACHE;
      else process.env.FASTCOMPOSER_CACHE = saved;
    }
  });
});

describe('listModels', () => {
  it('lists exports with their sizes and sources, and skips what is not one', async () => {
    fakeModel(join(tmp, 'cache', 'models', 'b-model'), {
      source: { checkpoint: 'hf://a/b@' + '1'.repeat(40) + '/pytorch_model.bin' },
      weightsDtype: 'float16',
    });
    fakeModel(join(tmp, 'cache', 'models', 'a-model'), { source: { preset: 'tiny' } });
    mkdirSync(join(tmp, 'cache', 'models', '.b-model.partial-123')); // an export under way
    mkdirSync(join(tmp, 'cache', 'models', 'empty'));
    const models = await listModels(env);
    expect(models.map((m) => m.name)).toEqual(['a-model', 'b-model']);
    expect(models[1]).toMatchObject({ weightsDtype: 'float16', dir: join(tmp, 'cache', 'models', 'b-model') });
    expect(models[1]!.size).toBeGreaterThan(1000);
    expect(models[1]!.source.checkpoint).toContain('hf://a/b@');
  });

  it('is empty without a models cache', async () => {
    expect(await listModels(env)).toEqual([]);
  });
});

describe('settings read the environment as huggingface_hub does', () => {
  it('hub cache: HF_HUB_CACHE, then HUGGINGFACE_HUB_CACHE, then HF_HOME/hub, then XDG_CACHE_HOME/huggingface/hub', () => {
    expect(hubCacheDir({ HF_HUB_CACHE: '/a', HUGGINGFACE_HUB_CACHE: '/b', HF_HOME: '/c' })).toBe('/a');
    expect(hubCacheDir({ HUGGINGFACE_HUB_CACHE: '/b', HF_HOME: '/c' })).toBe('/b');
    expect(hubCacheDir({ HF_HOME: '/c', XDG_CACHE_HOME: '/x' })).toBe('/c/hub');
    expect(hubCacheDir({ XDG_CACHE_HOME: '/x' })).toBe('/x/huggingface/hub');
    expect(hubCacheDir({})).toBe(join(homedir(), '.cache', 'huggingface', 'hub'));
    expect(hubCacheDir({ HF_HUB_CACHE: '' })).toBe(join(homedir(), '.cache', 'huggingface', 'hub'));
    expect(hubCacheDir({ HF_HOME: '~/hf' })).toBe(join(homedir(), 'hf', 'hub'));
  });

  it('models cache: FASTCOMPOSER_CACHE, then XDG_CACHE_HOME/fastcomposer, then ~/.cache/fastcomposer', () => {
    expect(modelsDir({ FASTCOMPOSER_CACHE: '/f', XDG_CACHE_HOME: '/x' })).toBe('/f/models');
    expect(fastcomposerCacheDir({ XDG_CACHE_HOME: '/x' })).toBe('/x/fastcomposer');
    expect(fastcomposerCacheDir({})).toBe(join(homedir(), '.cache', 'fastcomposer'));
  });

  it('endpoint, token and offline switch', () => {
    expect(hubEndpoint({})).toBe('https://huggingface.co');
    expect(hubEndpoint({ HF_ENDPOINT: 'http://127.0.0.1:8080/' })).toBe('http://127.0.0.1:8080');
    expect(hubToken({ HF_TOKEN: ' hf_a ', HUGGING_FACE_HUB_TOKEN: 'hf_b' })).toBe('hf_a');
    expect(hubToken({ HUGGING_FACE_HUB_TOKEN: 'hf_b', HF_HOME: tmp })).toBe('hf_b');
    writeFileSync(join(tmp, 'token'), 'hf_saved\n');
    expect(hubToken({ HF_HOME: tmp })).toBe('hf_saved');
    expect(hubToken({ HF_HOME: tmp, HF_TOKEN_PATH: join(tmp, 'none') })).toBeUndefined();
    expect(hubOffline({ HF_HUB_OFFLINE: '1' })).toBe(true);
    expect(hubOffline({ HF_HUB_OFFLINE: '0' })).toBe(false);
  });
});
