import { describe, expect, it } from 'vitest';
import { DEFAULTS, randomSeed, validateGenerateOptions, validateLoadOptions, type GenerateContext } from '../lib/options.js';
import { expectError } from './helpers/errors.js';

const png = Buffer.from([0x89, 0x50, 0x4e, 0x47]); // contents are not decoded here
const one: GenerateContext = { subjectCount: 1 };
const base = { prompt: 'a man <|image|> in a park', subjects: [png] };

const gen = (extra: Record<string, unknown>, ctx: GenerateContext = one) => validateGenerateOptions({ ...base, ...extra }, ctx);
const invalid = (extra: Record<string, unknown>, ...fragments: string[]) =>
  expectError(() => gen(extra), 'ERR_INVALID_ARGUMENT', ...fragments);

describe('validateGenerateOptions defaults', () => {
  it('fills every default', () => {
    const o = gen({ seed: 7 });
    expect(o).toMatchObject({
      prompt: base.prompt,
      subjects: [{ image: png }],
      negativePrompt: '',
      steps: 50,
      guidanceScale: 5,
      alpha: 0.7,
      startMergeStep: null,
      seed: 7,
      seedWasRandom: false,
      width: 512,
      height: 512,
      scheduler: 'pndm',
      numImages: 1,
      latents: undefined,
      onStep: undefined,
      signal: undefined,
      attentionMaps: false,
      regionStrength: 1,
      allowManySubjects: false,
      output: 'raw',
    });
    expect(DEFAULTS.steps).toBe(50);
  });

  it('switches to the subject prompt on the same step as the original', () => {
    // Python: (1 - 0.7) * 50 == 15.000000000000002, so step 15 is still text-only.
    expect(gen({}).textOnlyUntil).toBe((1 - 0.7) * 50);
    expect(gen({}).textOnlyUntil).toBeGreaterThan(15);
    expect(gen({ alpha: 1 }).textOnlyUntil).toBe(0);
    expect(gen({ startMergeStep: 10 })).toMatchObject({ alpha: null, startMergeStep: 10, textOnlyUntil: 10 });
  });

  it('draws a seed when none is given and says so', () => {
    const o = gen({});
    expect(o.seedWasRandom).toBe(true);
    expect(Number.isSafeInteger(o.seed) && o.seed >= 0).toBe(true);
    for (let i = 0; i < 100; i++) {
      const s = randomSeed();
      expect(Number.isSafeInteger(s) && s >= 0).toBe(true);
    }
  });

  it('normalises every subject form', () => {
    const raw = { data: Buffer.alloc(2 * 3 * 3), width: 2, height: 3, channels: 3 };
    const o = validateGenerateOptions(
      {
        prompt: 'a <|image|> b <|image|> c <|image|> d <|image|>',
        subjects: ['s.png', png, raw, { image: 's.png', region: { x: 0, y: 0, width: 512, height: 512 }, subjectMask: png }],
      },
      { subjectCount: 4 },
    );
    expect(o.subjects).toEqual([
      { image: 's.png' },
      { image: png },
      { image: raw },
      { image: 's.png', region: { x: 0, y: 0, width: 512, height: 512 }, subjectMask: png },
    ]);
    expect(gen({ subjects: [{ image: png, mask: raw }] }).subjects).toEqual([{ image: png, mask: raw }]);
  });

  it('accepts the documented extremes', () => {
    expect(gen({ steps: 1, guidanceScale: 0, alpha: 0, seed: 0, width: 64, height: 2048, numImages: 16, regionStrength: 0 })).toMatchObject(
      {
        steps: 1,
        guidanceScale: 0,
        alpha: 0,
        seed: 0,
        width: 64,
        height: 2048,
        numImages: 16,
        regionStrength: 0,
      },
    );
    expect(gen({ steps: 1000, guidanceScale: 100, seed: Number.MAX_SAFE_INTEGER }).seed).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe('validateGenerateOptions rejects', () => {
  it('a non-object', () => {
    expectError(() => validateGenerateOptions('a man', one), 'ERR_INVALID_ARGUMENT', 'options', '"a man" of type string');
    expectError(() => validateGenerateOptions(null, one), 'ERR_INVALID_ARGUMENT', 'options', 'null');
  });

  it('unknown keys, naming them', () => {
    invalid({ stpes: 20 }, '"stpes"');
    invalid({ foo: 1, bar: 2 }, '"foo"', '"bar"');
  });

  it('a missing or non-string prompt / negativePrompt', () => {
    expectError(() => validateGenerateOptions({ subjects: [] }, { subjectCount: 0 }), 'ERR_INVALID_ARGUMENT', 'for prompt', 'undefined');
    invalid({ prompt: 42 }, 'for prompt', '42 of type number');
    invalid({ negativePrompt: ['x'] }, 'for negativePrompt', 'array of length 1');
  });

  it('steps out of 1..1000 or not an integer', () => {
    invalid({ steps: 0 }, 'Expected integer between 1 and 1000 for steps but received 0 of type number');
    invalid({ steps: 1001 }, 'for steps', '1001 of type number');
    invalid({ steps: 2.5 }, 'for steps', '2.5 of type number');
    invalid({ steps: '50' }, 'for steps', '"50" of type string');
  });

  it('guidanceScale NaN, infinite or out of range', () => {
    invalid({ guidanceScale: Number.NaN }, 'for guidanceScale', 'NaN of type number');
    invalid({ guidanceScale: Number.POSITIVE_INFINITY }, 'for guidanceScale', 'Infinity of type number');
    invalid({ guidanceScale: -1 }, 'for guidanceScale', '-1 of type number');
    invalid({ guidanceScale: 101 }, 'for guidanceScale', '101 of type number');
  });

  it('alpha outside 0..1', () => {
    invalid({ alpha: 1.5 }, 'for alpha', '1.5 of type number');
    invalid({ alpha: Number.NaN }, 'for alpha', 'NaN');
  });

  it('startMergeStep negative or fractional, and both alpha and startMergeStep', () => {
    invalid({ startMergeStep: -1 }, 'for startMergeStep', '-1 of type number');
    invalid({ startMergeStep: 1.5 }, 'for startMergeStep', '1.5');
    invalid({ alpha: 0.5, startMergeStep: 10 }, 'alpha', 'startMergeStep', '0.5', '10');
  });

  it('seed not an integer in 0..2^53-1', () => {
    invalid({ seed: -1 }, 'for seed', '-1 of type number');
    invalid({ seed: 1.5 }, 'for seed', '1.5');
    invalid({ seed: 2 ** 53 }, 'for seed', String(2 ** 53));
    invalid({ seed: Number.NaN }, 'for seed', 'NaN');
    invalid({ seed: 10n }, 'for seed', '10 of type bigint');
  });

  it('width / height not multiples of 8 in 64..2048', () => {
    invalid({ width: 500 }, 'Expected multiple of 8 between 64 and 2048 for width but received 500 of type number');
    invalid({ height: 56 }, 'for height', '56 of type number');
    invalid({ width: 2056 }, 'for width', '2056');
    invalid({ height: Number.POSITIVE_INFINITY }, 'for height', 'Infinity');
  });

  it('an unknown scheduler', () => {
    invalid({ scheduler: 'lms' }, 'for scheduler', '"lms" of type string', 'pndm');
    invalid({ scheduler: 'PNDM' }, 'for scheduler', '"PNDM"');
  });

  it('numImages out of 1..16', () => {
    invalid({ numImages: 0 }, 'for numImages', '0 of type number');
    invalid({ numImages: 17 }, 'for numImages', '17 of type number');
  });

  it('non-boolean flags', () => {
    invalid({ attentionMaps: 1 }, 'for attentionMaps', '1 of type number');
    invalid({ allowManySubjects: 'yes' }, 'for allowManySubjects', '"yes" of type string');
  });

  it('regionStrength outside 0..1', () => {
    invalid({ regionStrength: 2 }, 'for regionStrength', '2 of type number');
    invalid({ regionStrength: Number.NaN }, 'for regionStrength', 'NaN');
  });

  it('an unknown output format', () => {
    invalid({ output: 'gif' }, 'for output', '"gif" of type string');
  });

  it('onStep that is not a function', () => {
    invalid({ onStep: 'log' }, 'for onStep', '"log" of type string');
  });

  it('signal that is not an AbortSignal, and accepts look-alikes', () => {
    invalid({ signal: {} }, 'for signal', 'object');
    invalid({ signal: true }, 'for signal', 'true of type boolean');
    const real = new AbortController().signal;
    expect(gen({ signal: real }).signal).toBe(real);
    const lookalike = { aborted: false, addEventListener() {}, removeEventListener() {} };
    expect(gen({ signal: lookalike }).signal).toBe(lookalike);
  });
});

describe('subjects', () => {
  it('must match the <|image|> count (ERR_SUBJECT_COUNT)', () => {
    expectError(() => gen({ subjects: [] }), 'ERR_SUBJECT_COUNT', 'Expected 1 subject', 'for subjects', 'array of length 0');
    expectError(() => gen({ subjects: [png, png] }), 'ERR_SUBJECT_COUNT', 'for subjects', 'array of length 2');
    expectError(() => gen({ subjects: undefined }), 'ERR_SUBJECT_COUNT', 'for subjects', 'array of length 0');
    expect(validateGenerateOptions({ prompt: 'a park' }, { subjectCount: 0 }).subjects).toEqual([]);
  });

  it('more than 4 only with allowManySubjects', () => {
    const five = { prompt: 'x', subjects: [png, png, png, png, png] };
    expectError(
      () => validateGenerateOptions(five, { subjectCount: 5 }),
      'ERR_SUBJECT_COUNT',
      'at most 4',
      'allowManySubjects',
      'array of length 5',
    );
    expect(validateGenerateOptions({ ...five, allowManySubjects: true }, { subjectCount: 5 }).subjects).toHaveLength(5);
  });

  it('must be an array', () => {
    invalid({ subjects: png }, 'for subjects', 'Buffer of 4 bytes');
  });

  it('rejects bad image inputs', () => {
    invalid({ subjects: [''] }, 'for subjects[0]', '"" of type string');
    invalid({ subjects: [Buffer.alloc(0)] }, 'for subjects[0]', 'Buffer of 0 bytes');
    invalid({ subjects: [42] }, 'for subjects[0]', '42 of type number');
    invalid({ subjects: [{ picture: png }] }, 'for subjects[0]', 'object');
    invalid({ subjects: [{ image: png, extra: 1 }] }, '"extra"', 'subjects[0]');
    invalid({ subjects: [{ image: 7 }] }, 'for subjects[0].image', '7 of type number');
    invalid({ subjects: [{ image: png, mask: '' }] }, 'for subjects[0].mask', '""');
    invalid({ subjects: [{ image: png, subjectMask: null }] }, 'for subjects[0].subjectMask', 'null');
  });

  it('rejects bad raw images', () => {
    const raw = { data: Buffer.alloc(12), width: 2, height: 2, channels: 3 };
    invalid({ subjects: [{ ...raw, channels: 2 }] }, 'for subjects[0].channels', '2 of type number');
    invalid({ subjects: [{ ...raw, width: 0 }] }, 'for subjects[0].width', '0 of type number');
    invalid({ subjects: [{ ...raw, data: Buffer.alloc(11) }] }, '12 bytes', 'for subjects[0].data', 'Buffer of 11 bytes');
    invalid({ subjects: [{ ...raw, data: new Uint8Array(5) }] }, 'for subjects[0].data', 'Buffer of 5 bytes');
    invalid({ subjects: [{ ...raw, data: [1, 2, 3] }] }, 'for subjects[0].data', 'array of length 3');
    invalid({ subjects: [{ ...raw, format: 'rgb' }] }, '"format"', 'subjects[0]');
  });

  it('rejects regions that are empty or outside the output', () => {
    const r = (region: unknown, extra: Record<string, unknown> = {}) => ({ subjects: [{ image: png, region }], ...extra });
    invalid(r({ x: 0, y: 0, width: 0, height: 10 }), 'for subjects[0].region.width', '0 of type number');
    invalid(r({ x: 0, y: 0, width: 10, height: -5 }), 'for subjects[0].region.height', '-5');
    invalid(r({ x: -1, y: 0, width: 10, height: 10 }), 'for subjects[0].region.x', '-1');
    invalid(r({ x: 0, y: 0.5, width: 10, height: 10 }), 'for subjects[0].region.y', '0.5');
    invalid(r({ x: 400, y: 0, width: 200, height: 10 }), 'x + width <= 512', 'subjects[0].region', 'x 400', 'width 200');
    invalid(r({ x: 0, y: 200, width: 10, height: 100 }, { height: 256 }), 'y + height <= 256', 'subjects[0].region', 'y 200', 'height 100');
    invalid(r({ x: 0, y: 0, width: 10 }), 'for subjects[0].region.height', 'undefined');
    invalid(r('left half'), 'for subjects[0].region', '"left half"');
    invalid({ subjects: [{ image: png, region: { x: 0, y: 0, width: 8, height: 8 }, mask: png }] }, 'region', 'mask', 'subjects[0]');
  });
});

describe('latents', () => {
  const lat = (shape: number[], bytes = shape.reduce((a, b) => a * b, 4), dtype = 'float32') => ({
    data: Buffer.alloc(bytes),
    shape,
    dtype,
  });

  it('accepts float32 [numImages, 4, h/8, w/8]', () => {
    const l = lat([2, 4, 32, 48]);
    const out = gen({ numImages: 2, width: 384, height: 256, latents: l }).latents;
    expect(out?.data).toBe(l.data);
    expect(out?.shape).toEqual([2, 4, 32, 48]);
    expect(out?.dtype).toBe('float32');
  });

  it('rejects a wrong dtype, shape or byte length', () => {
    invalid({ latents: lat([1, 4, 64, 64], 64 * 64 * 4 * 2, 'float16') }, 'for latents.dtype', '"float16"');
    invalid({ latents: lat([1, 4, 32, 32]) }, 'shape [1, 4, 64, 64]', 'latents.shape', '[1, 4, 32, 32]');
    invalid({ latents: lat([2, 4, 64, 64]) }, 'latents.shape', '[2, 4, 64, 64]');
    invalid({ latents: lat([1, 4, 64, 64], 100) }, 'for latents.data', 'Buffer of 100 bytes', '65536');
    invalid({ latents: Buffer.alloc(65536) }, 'for latents', 'Buffer of 65536 bytes');
    invalid({ latents: { ...lat([1, 4, 64, 64]), strides: [1] } }, '"strides"', 'latents');
  });

  it('follows the model latent channels', () => {
    expect(
      validateGenerateOptions({ ...base, latents: lat([1, 16, 64, 64]) }, { subjectCount: 1, latentChannels: 16 }).latents?.shape,
    ).toEqual([1, 16, 64, 64]);
  });
});

describe('validateLoadOptions', () => {
  it('fills defaults', () => {
    const defaults = { device: 'auto', dtype: 'float32', threads: 0, verifyHashes: false, maxBatchSize: 1 };
    expect(validateLoadOptions(undefined)).toEqual(defaults);
    expect(validateLoadOptions({})).toEqual(defaults);
    expect(validateLoadOptions({ device: 'cuda:1', dtype: 'bfloat16', threads: 4, verifyHashes: true, maxBatchSize: 8 })).toEqual({
      device: 'cuda:1',
      dtype: 'bfloat16',
      threads: 4,
      verifyHashes: true,
      maxBatchSize: 8,
    });
    for (const device of ['cpu', 'cuda', 'cuda:0', 'auto']) expect(validateLoadOptions({ device }).device).toBe(device);
  });

  it('rejects unknown devices, dtypes and keys', () => {
    expectError(() => validateLoadOptions({ device: 'gpu' }), 'ERR_INVALID_ARGUMENT', 'for device', '"gpu" of type string');
    expectError(() => validateLoadOptions({ device: 'cuda:-1' }), 'ERR_INVALID_ARGUMENT', 'for device', '"cuda:-1"');
    expectError(() => validateLoadOptions({ device: 'cuda:01' }), 'ERR_INVALID_ARGUMENT', 'for device', '"cuda:01"');
    expectError(() => validateLoadOptions({ device: 0 }), 'ERR_INVALID_ARGUMENT', 'for device', '0 of type number');
    expectError(() => validateLoadOptions({ dtype: 'fp16' }), 'ERR_INVALID_ARGUMENT', 'for dtype', '"fp16" of type string');
    expectError(() => validateLoadOptions({ precision: 'fp16' }), 'ERR_INVALID_ARGUMENT', '"precision"');
    expectError(() => validateLoadOptions('cpu'), 'ERR_INVALID_ARGUMENT', 'options', '"cpu" of type string');
    expectError(() => validateLoadOptions({ threads: 0 }), 'ERR_INVALID_ARGUMENT', 'for threads', '0 of type number');
    expectError(() => validateLoadOptions({ maxBatchSize: 65 }), 'ERR_INVALID_ARGUMENT', 'for maxBatchSize', '65 of type number');
    expectError(() => validateLoadOptions({ maxBatchSize: '2' }), 'ERR_INVALID_ARGUMENT', 'for maxBatchSize', '"2" of type string');
    expectError(() => validateLoadOptions({ threads: 1.5 }), 'ERR_INVALID_ARGUMENT', 'for threads', '1.5 of type number');
    expectError(() => validateLoadOptions({ verifyHashes: 1 }), 'ERR_INVALID_ARGUMENT', 'for verifyHashes', '1 of type number');
  });
});
