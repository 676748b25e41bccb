// The native model's methods check their arguments the same way (ERR_INVALID_ARGUMENT naming the
// argument), and the text length they accept is the manifest's maxLength, not a constant.
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readModelDir } from '../lib/model-dir.js';
import type { NativeModel, NativeModelSpec } from '../lib/native-contract.js';
import { loadNative } from '../lib/native.js';
import { PromptTokenizer } from '../lib/prompt.js';
import type { Tensor } from '../lib/tensor.js';

const tinyDir = join(import.meta.dirname, '..', 'models', 'tiny');

function ids(length: number): Tensor {
  const data = Buffer.alloc(length * 8);
  for (let i = 0; i < length; i++) data.writeBigInt64LE(49407n, i * 8);
  return { data, shape: [1, length], dtype: 'int64' };
}

function embeds(length: number, width: number): Tensor {
  return { data: Buffer.alloc(length * width * 4), shape: [1, length, width], dtype: 'float32' };
}

const denoiseJob = {
  steps: 1,
  guidanceScale: 1,
  mergeThreshold: 0,
  seed: 1,
  width: 64,
  height: 64,
  numImages: 1,
  scheduler: 'ddim',
  schedulerConfig: {},
  subjectPositions: [],
};

async function loadTiny(maxLength: number): Promise<{ native: NativeModel; width: number }> {
  const model = await readModelDir(tinyDir);
  const p = model.modulePaths;
  const spec: NativeModelSpec = {
    textEncoder: p.text_encoder,
    imageEncoder: p.image_encoder,
    postfuse: p.postfuse,
    unet: p.unet,
    vaeDecoder: p.vae_decoder,
    device: 'cpu',
    dtype: 'float32',
    threads: 0,
    latentScale: model.manifest.latentScale,
    vaeScaleFactor: model.manifest.vaeScaleFactor,
    latentChannels: model.manifest.latentChannels,
    maxLength,
  };
  return { native: await loadNative().binding.loadModel(spec), width: model.manifest.textHiddenSize };
}

function expectArgumentError(call: () => unknown, ...mentions: string[]): void {
  let error: unknown;
  try {
    const r = call();
    if (r instanceof Promise) r.catch(() => {});
  } catch (e) {
    error = e;
  }
  expect(error, 'the call should throw synchronously').toBeInstanceOf(Error);
  expect((error as { code?: unknown }).code).toBe('ERR_INVALID_ARGUMENT');
  for (const m of mentions) expect((error as Error).message).toContain(m);
}

describe('native argument checks', () => {
  let native: NativeModel;
  let width: number;
  beforeAll(async () => {
    ({ native, width } = await loadTiny(77));
  });
  afterAll(() => native?.dispose());

  it('a job that is not an object is refused by every method, naming the argument', () => {
    const n = native as unknown as Record<string, (...args: unknown[]) => unknown>;
    expectArgumentError(() => n.generate!(42), 'job');
    expectArgumentError(() => n.encodePrompt!('x'), 'job');
    expectArgumentError(() => n.denoise!(null, denoiseJob), 'embeds');
    expectArgumentError(() => n.denoise!({ fused: embeds(77, width), textOnly: embeds(77, width), negative: embeds(77, width) }, 7), 'job');
  });

  it('generateBatch: jobs that cannot share a batch, and missing abort flags, are refused', () => {
    const n = native as unknown as Record<string, (...args: unknown[]) => unknown>;
    const { AbortFlag } = loadNative().binding;
    const job = { ...denoiseJob, inputIds: ids(77), textOnlyIds: ids(77), negativeIds: ids(77) };
    const flags = [new AbortFlag(), new AbortFlag()];
    expectArgumentError(() => n.generateBatch!([], undefined, []), 'jobs');
    expectArgumentError(() => n.generateBatch!([job, 7], undefined, flags), 'jobs[1]');
    expectArgumentError(() => n.generateBatch!([job, job], undefined, [flags[0]]), 'abortFlags');
    expectArgumentError(() => n.generateBatch!([job, job], undefined, [flags[0], {}]), 'abortFlags[1]');
    const picture: Tensor = { data: Buffer.alloc(12), shape: [2, 2, 3], dtype: 'uint8' };
    const withSubject = { ...job, subjectPositions: [1], subjectImages: [picture], subjectSize: 224 };
    expectArgumentError(
      () => n.generateBatch!([withSubject, { ...withSubject, subjectSize: 112 }], undefined, flags),
      'jobs[1] has another subjectSize',
    );
    for (const other of [
      { width: 128 },
      { steps: 2 },
      { scheduler: 'pndm' },
      { attentionMaps: true, subjectPositions: [1], objectEmbeds: { data: Buffer.alloc(width * 4), shape: [1, width], dtype: 'float32' } },
    ]) {
      expectArgumentError(() => n.generateBatch!([job, { ...job, ...other }], undefined, flags), 'jobs[1] cannot share a batch');
    }
  });

  it('sizes are checked as integers in range', () => {
    const n = native as unknown as Record<string, (...args: unknown[]) => unknown>;
    const picture: Tensor = { data: Buffer.alloc(12), shape: [2, 2, 3], dtype: 'uint8' };
    expectArgumentError(() => n.encodeSubjects!([picture], 'big'), 'size');
    expectArgumentError(() => n.encodeSubjects!([picture], 0.5), 'size');
  });

  it("latents must have the model's latent channels", () => {
    const latents: Tensor = { data: Buffer.alloc(3 * 8 * 8 * 4), shape: [1, 3, 8, 8], dtype: 'float32' };
    expectArgumentError(() => native.decode(latents), 'latents', '[N,4,h,w]');
  });

  it("token ids and embeddings have the manifest's length (77 here)", async () => {
    const job = { inputIds: ids(76), textOnlyIds: ids(77), negativeIds: ids(77), subjectPositions: [] };
    expectArgumentError(() => native.encodePrompt(job), 'inputIds', '[1,77]');
    expectArgumentError(() => native.encodePrompt({ ...job, inputIds: ids(77), subjectPositions: [77] }), 'subjectPositions');
    const bad = { fused: embeds(76, width), textOnly: embeds(77, width), negative: embeds(77, width) };
    expectArgumentError(() => native.denoise(bad, denoiseJob), 'fused', '[1,77,D]');
    const out = await native.encodePrompt({ ...job, inputIds: ids(77) });
    expect(out.fused.shape).toEqual([1, 77, width]);
  });

  it('another maxLength in the spec changes what is accepted', async () => {
    const { native: other } = await loadTiny(16);
    try {
      const job = { inputIds: ids(77), textOnlyIds: ids(77), negativeIds: ids(77), subjectPositions: [] };
      expectArgumentError(() => other.encodePrompt(job), 'inputIds', '[1,16]');
      expectArgumentError(
        () => other.encodePrompt({ ...job, inputIds: ids(16), textOnlyIds: ids(16), negativeIds: ids(16), subjectPositions: [16] }),
        'subjectPositions',
      );
    } finally {
      await other.dispose();
    }
  });
});

describe('the tokenizer takes its length from the model', () => {
  it('pads and cuts to the given maxLength', async () => {
    const tok = await PromptTokenizer.load(join(tinyDir, 'tokenizer.json'), 16);
    expect(tok.maxLength).toBe(16);
    const short = tok.tokenize('a man <|image|> in a park');
    expect(short.inputIds).toHaveLength(16);
    expect(short.textOnlyIds).toHaveLength(16);
    expect(short.truncated).toBe(false);
    const long = tok.tokenize(`a man <|image|> ${'and a tree '.repeat(10)}`);
    expect(long.inputIds).toHaveLength(16);
    expect(long.truncated).toBe(true);
    expect(tok.encodePlain('word '.repeat(30)).ids).toHaveLength(16);
  });
});
