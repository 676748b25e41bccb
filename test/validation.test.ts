// The shared predicates (lib/is.ts), the argument checks built on them (lib/checks.ts), the stage
// API's own input checks (lib/stage-inputs.ts, validateDenoiseOptions, validateSubjectList) and
// asFastComposerError. No model needed.
import { describe, expect, it } from 'vitest';

import { float32Tensor, integer, knownKeys } from '../lib/checks.js';
import { AbortError, FastComposerError, asFastComposerError } from '../lib/errors.js';
import { isAbortSignal, isBytes, isFiniteNumber, isInteger, isOneOf, isPositive, isRawImageLike, isRecord } from '../lib/is.js';
import type { ModelManifest } from '../lib/model-dir.js';
import { validateDenoiseOptions, validateSubjectList } from '../lib/options.js';
import { latentsToDecode, promptArgs, promptEmbeddings, subjectEmbeds } from '../lib/stage-inputs.js';
import { expectError } from './helpers/errors.js';

const tensor = (shape: number[], bytes = shape.reduce((a, b) => a * b, 4)) => ({
  data: Buffer.alloc(bytes),
  shape,
  dtype: 'float32' as const,
});
const manifest = { maxLength: 77, textHiddenSize: 32, objectEmbedSize: 32, latentChannels: 4 } as ModelManifest;
const png = Buffer.from([0x89, 0x50, 0x4e, 0x47]); // not decoded here

describe('predicates', () => {
  it('isRecord: objects and class instances, not arrays, byte buffers or null', () => {
    expect(isRecord({})).toBe(true);
    expect(isRecord(new (class {})())).toBe(true);
    for (const v of [null, undefined, [], Buffer.alloc(1), new Uint8Array(1), 'x', 1]) expect(isRecord(v)).toBe(false);
  });

  it('numbers: integers and finite numbers in a range', () => {
    expect(isInteger(3, 1, 3)).toBe(true);
    for (const v of [0, 4, 2.5, NaN, '2', Infinity]) expect(isInteger(v, 1, 3)).toBe(false);
    expect(isFiniteNumber(0.5, 0, 1)).toBe(true);
    for (const v of [NaN, Infinity, -0.1, 1.1, '0.5']) expect(isFiniteNumber(v, 0, 1)).toBe(false);
    expect(isPositive(1e-9)).toBe(true);
    for (const v of [0, -1, NaN, Infinity, '1']) expect(isPositive(v)).toBe(false);
  });

  it('bytes, choices, raw images and signals', () => {
    expect(isBytes(Buffer.alloc(0))).toBe(true);
    expect(isBytes(new Uint8Array(2))).toBe(true);
    expect(isBytes(new Uint16Array(2))).toBe(false);
    expect(isOneOf('ddim', ['pndm', 'ddim'])).toBe(true);
    expect(isOneOf('DDIM', ['pndm', 'ddim'])).toBe(false);
    expect(isRawImageLike({ data: 1 })).toBe(true);
    expect(isRawImageLike(Buffer.from('data'))).toBe(false);
    expect(isAbortSignal(new AbortController().signal)).toBe(true);
    expect(isAbortSignal({ aborted: false, addEventListener() {}, removeEventListener() {} })).toBe(true);
    expect(isAbortSignal({ aborted: false })).toBe(false);
  });
});

describe('argument checks', () => {
  it('name the argument and the value', () => {
    expectError(() => integer(0, 'steps', 1, 1000), 'ERR_INVALID_ARGUMENT', 'integer between 1 and 1000 for steps', '0 of type number');
    expectError(() => knownKeys({ stpes: 1 }, ['steps'], 'generate() options'), 'ERR_INVALID_ARGUMENT', '"stpes"', 'expected only steps');
  });

  it('float32Tensor checks the kind, dtype, shape and byte length in that order', () => {
    expect(float32Tensor(tensor([2, 3]), 't', ['N', 3])).toEqual([2, 3]);
    expectError(
      () => float32Tensor(Buffer.alloc(24), 't', ['N', 3]),
      'ERR_INVALID_ARGUMENT',
      'float32 tensor [N, 3] for t',
      'Buffer of 24 bytes',
    );
    expectError(
      () => float32Tensor({ ...tensor([2, 3]), dtype: 'float16' }, 't', ['N', 3]),
      'ERR_INVALID_ARGUMENT',
      't.dtype',
      '"float16"',
    );
    expectError(() => float32Tensor(tensor([2, 4]), 't', ['N', 3]), 'ERR_INVALID_ARGUMENT', 'shape [N, 3] for t.shape', '[2, 4]');
    expectError(() => float32Tensor(tensor([0, 3]), 't', ['N', 3]), 'ERR_INVALID_ARGUMENT', 't.shape', '[0, 3]');
    expectError(
      () => float32Tensor(tensor([2, 3], 5), 't', ['N', 3]),
      'ERR_INVALID_ARGUMENT',
      'Buffer of 24 bytes for t.data',
      'Buffer of 5 bytes',
    );
  });
});

describe('stage API inputs', () => {
  it('encodePrompt() arguments', () => {
    expect(promptArgs({ prompt: 'a dog' })).toEqual({
      prompt: 'a dog',
      negativePrompt: '',
      subjectEmbeds: undefined,
      signal: undefined,
      imageToken: '<|image|>',
    });
    expect(promptArgs({ prompt: 'a dog img', imageToken: 'img' }).imageToken).toBe('img');
    expectError(() => promptArgs({ prompt: 'a', imageToken: '[img]' }), 'ERR_INVALID_ARGUMENT', 'imageToken');
    expectError(() => promptArgs(null), 'ERR_INVALID_ARGUMENT', 'for arguments', 'null');
    expectError(() => promptArgs({ prompt: 5 }), 'ERR_INVALID_ARGUMENT', 'string for prompt', '5 of type number');
    expectError(() => promptArgs({ prompt: 'a', negativePrompt: [] }), 'ERR_INVALID_ARGUMENT', 'negativePrompt');
  });

  it('subject embeddings follow the prompt and the model', () => {
    const e = tensor([2, 32]);
    expect(subjectEmbeds(e, 2, manifest)).toBe(e);
    expectError(
      () => subjectEmbeds(undefined, 2, manifest),
      'ERR_INVALID_ARGUMENT',
      'float32 tensor [2, 32] from encodeSubjects() for subjectEmbeds',
    );
    expectError(() => subjectEmbeds(tensor([1, 32]), 2, manifest), 'ERR_INVALID_ARGUMENT', 'subjectEmbeds.shape', '[1, 32]');
  });

  it('prompt embeddings: three [1, 77, D] tensors of one width and positions inside the prompt', () => {
    const t = tensor([1, 77, 32]);
    const ok = promptEmbeddings({ fused: t, textOnly: t, negative: t, subjectPositions: [3], warnings: [] }, manifest);
    expect(ok).toEqual({ fused: t, textOnly: t, negative: t, subjectPositions: [3] });
    expect(promptEmbeddings({ fused: t, textOnly: t, negative: t }, manifest).subjectPositions).toEqual([]);
    expectError(() => promptEmbeddings(null, manifest), 'ERR_INVALID_ARGUMENT', 'for embeds');
    expectError(
      () => promptEmbeddings({ fused: t, textOnly: tensor([1, 77, 16]), negative: t }, manifest),
      'ERR_INVALID_ARGUMENT',
      'embeds.textOnly.shape',
    );
    expectError(
      () => promptEmbeddings({ fused: t, textOnly: t, negative: t, subjectPositions: [77] }, manifest),
      'ERR_INVALID_ARGUMENT',
      'embeds.subjectPositions',
      'between 0 and 76',
    );
  });

  it('latents to decode: [N, latentChannels, h, w]', () => {
    expect(latentsToDecode(tensor([2, 4, 8, 8]), manifest).shape).toEqual([2, 4, 8, 8]);
    expectError(() => latentsToDecode(tensor([1, 3, 8, 8]), manifest), 'ERR_INVALID_ARGUMENT', 'latents.shape', '[1, 3, 8, 8]');
  });
});

describe('denoise() options are checked for themselves', () => {
  it('no prompt, no subjects needed; the defaults of generate()', () => {
    const o = validateDenoiseOptions({ steps: 3, seed: 1 }, { subjectCount: 2 });
    expect(o).toMatchObject({ steps: 3, seed: 1, subjects: [], width: 512, height: 512, scheduler: 'pndm' });
    expect(validateDenoiseOptions(undefined, { subjectCount: 0 }).subjects).toEqual([]);
    expect(validateDenoiseOptions(null, { subjectCount: 0 }).steps).toBe(50);
  });

  it('subjects, when given, carry the regions: one per subject position, any number', () => {
    const region = { x: 0, y: 0, width: 32, height: 64 };
    const five = Array.from({ length: 5 }, () => ({ image: png, region }));
    expect(validateDenoiseOptions({ width: 64, height: 64, subjects: five }, { subjectCount: 5 }).subjects[4]?.region).toEqual(region);
    expectError(
      () => validateDenoiseOptions({ subjects: [png] }, { subjectCount: 2 }),
      'ERR_SUBJECT_COUNT',
      'one per subject position of the embeddings',
    );
    expectError(
      () =>
        validateDenoiseOptions({ width: 64, height: 64, subjects: [{ image: png, region: { ...region, x: 40 } }] }, { subjectCount: 1 }),
      'ERR_INVALID_ARGUMENT',
      'x + width <= 64',
    );
  });

  it('the options that belong to encodePrompt() or decode() are refused, by name', () => {
    expectError(
      () => validateDenoiseOptions({ prompt: 'a dog' }, { subjectCount: 0 }),
      'ERR_INVALID_ARGUMENT',
      '"prompt"',
      'denoise() options',
    );
    expectError(() => validateDenoiseOptions({ output: 'png' }, { subjectCount: 0 }), 'ERR_INVALID_ARGUMENT', '"output"');
    expectError(() => validateDenoiseOptions({ steps: 0 }, { subjectCount: 0 }), 'ERR_INVALID_ARGUMENT', 'for steps');
    expectError(() => validateDenoiseOptions('fast', { subjectCount: 0 }), 'ERR_INVALID_ARGUMENT', 'for options');
  });
});

describe('encodeSubjects() subjects', () => {
  it('any number from one; regions are not bounded by an output size there', () => {
    const list = validateSubjectList([png, { image: png, subjectMask: png, region: { x: 600, y: 0, width: 300, height: 8 } }]);
    expect(list).toHaveLength(2);
    expect(list[1]?.subjectMask).toBe(png);
    expectError(() => validateSubjectList([]), 'ERR_INVALID_ARGUMENT', 'non-empty array for subjects');
    expectError(() => validateSubjectList([png, 17]), 'ERR_INVALID_ARGUMENT', 'subjects[1]', '17 of type number');
    expectError(
      () => validateSubjectList([{ image: png, region: { x: -1, y: 0, width: 8, height: 8 } }]),
      'ERR_INVALID_ARGUMENT',
      'subjects[0].region.x',
    );
  });
});

describe('asFastComposerError', () => {
  it('keeps ours, gives coded native errors their class, and wraps the rest as ERR_NATIVE', () => {
    const ours = new FastComposerError('ERR_MODEL', 'x');
    expect(asFastComposerError(ours)).toBe(ours);
    const native = Object.assign(new Error('CUDA out of memory'), { code: 'ERR_OUT_OF_MEMORY' });
    const oom = asFastComposerError(native);
    expect(oom).toBeInstanceOf(FastComposerError);
    expect([oom.code, oom.message, oom.cause]).toEqual(['ERR_OUT_OF_MEMORY', 'CUDA out of memory', native]);
    const controller = new AbortController();
    controller.abort('stop');
    const aborted = asFastComposerError({ code: 'ERR_ABORTED', message: 'aborted' }, controller.signal);
    expect(aborted).toBeInstanceOf(AbortError);
    expect(aborted.cause).toBe('stop');
    const other = asFastComposerError(new TypeError('boom'));
    expect([other.code, other.message]).toEqual(['ERR_NATIVE', 'boom']);
    expect(asFastComposerError({ code: 'ENOENT', message: 'x' }).code).toBe('ERR_NATIVE');
  });
});
