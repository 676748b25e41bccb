/**
 * Options of FastComposer.generate() and FastComposer.load(): the public types, their defaults,
 * and validation that checks every option before any work starts (sharp style: each failure is
 * a FastComposerError naming the option and the value received).
 */
import { getRandomValues } from 'node:crypto';

import { abortSignal, boolean, finite, float32Tensor, integer, knownKeys, oneOf, string } from './checks.js';
import { FastComposerError, describe, invalidArgument } from './errors.js';
import { isBytes, isFunction, isInteger, isNonEmptyString, isRawImageLike, isRecord } from './is.js';
import type { Tensor } from './tensor.js';

export const SCHEDULERS = ['pndm', 'ddim', 'euler', 'euler-ancestral', 'dpmpp-2m'] as const;
export type SchedulerName = (typeof SCHEDULERS)[number];
export const OUTPUT_FORMATS = ['raw', 'png', 'jpeg', 'webp'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
export const MODEL_DTYPES = ['float32', 'float16', 'bfloat16'] as const;
export type ModelDType = (typeof MODEL_DTYPES)[number];
export type DeviceSpec = 'cpu' | 'cuda' | `cuda:${number}` | 'auto';
/**
 * The subject marker written after a subject's noun: `<|image|>` (the released pipeline's), or
 * `img` (MMagic's port: "a man img and a woman img"), tokenized as MMagic does (lib/prompt.ts).
 */
export const IMAGE_TOKENS = ['<|image|>', 'img'] as const;
export type ImageToken = (typeof IMAGE_TOKENS)[number];

export const DEFAULTS = {
  steps: 50,
  guidanceScale: 5,
  alpha: 0.7,
  width: 512,
  height: 512,
  scheduler: 'pndm' as SchedulerName,
  numImages: 1,
  regionStrength: 1,
  output: 'raw' as OutputFormat,
  device: 'auto' as DeviceSpec,
  dtype: 'float32' as ModelDType,
};

export const LIMITS = {
  maxSteps: 1000,
  maxGuidanceScale: 100,
  minSize: 64,
  maxSize: 2048,
  sizeMultiple: 8,
  maxImages: 16,
  /** More subjects than this need allowManySubjects (the model was trained with at most 4). */
  maxSubjects: 4,
  maxSeed: Number.MAX_SAFE_INTEGER,
};

/** Decoded pixels, row-major, interleaved channels. */
export interface RawImage {
  data: Buffer | Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
}
/** A file path, an encoded image (PNG, JPEG, WebP, ...) in a Buffer or Uint8Array, or raw pixels. */
export type ImageInput = string | Uint8Array | RawImage;
/** A box in output pixels. */
export interface Region {
  x: number;
  y: number;
  width: number;
  height: number;
}
export interface SubjectSpec {
  image: ImageInput;
  /** Where the subject should appear (output pixels); mutually exclusive with mask. */
  region?: Region;
  /** Where the subject should appear, as a mask in output space: white = inside. */
  mask?: ImageInput;
  /** Segmentation of the subject picture: white = subject; the rest is blanked to black before encoding. */
  subjectMask?: ImageInput;
}
export type SubjectInput = ImageInput | SubjectSpec;

export interface StepProgress {
  step: number;
  steps: number;
  timestep: number;
}

export interface GenerateOptions {
  prompt: string;
  subjects?: SubjectInput[];
  negativePrompt?: string;
  steps?: number;
  guidanceScale?: number;
  /** Share of the steps conditioned on the subjects: step i uses the text-only prompt while i <= (1 - alpha) * steps. */
  alpha?: number;
  /** Alternative to alpha: step i uses the text-only prompt while i <= startMergeStep. */
  startMergeStep?: number;
  seed?: number;
  width?: number;
  height?: number;
  scheduler?: SchedulerName;
  numImages?: number;
  /** float32 [numImages, 4, height / 8, width / 8]. */
  latents?: Tensor;
  onStep?: (progress: StepProgress) => void;
  signal?: AbortSignal;
  /** Return `attentionMaps` in the result: float32 [numImages, subjects, height / 8, width / 8], each map summing to 1. */
  attentionMaps?: boolean;
  /** How hard subject regions confine their subject's attention: 0 = off ... 1 = no attention outside the region (default). */
  regionStrength?: number;
  /** Also keep every subject's attention out of the other subjects' regions (default false). */
  regionExclusive?: boolean;
  allowManySubjects?: boolean;
  output?: OutputFormat;
  /** The subject marker of the prompt: '<|image|>' (default) or 'img' (MMagic's prompts). */
  imageToken?: ImageToken;
}

/** What the denoising loop takes (generate() and the stage API's denoise()), checked and with the defaults filled. */
export interface NormalizedDenoiseOptions {
  /** Used for their regions (denoise() may have none). */
  subjects: SubjectSpec[];
  steps: number;
  guidanceScale: number;
  /** null when startMergeStep was given. */
  alpha: number | null;
  startMergeStep: number | null;
  /** Step i (0-based) uses the text-only prompt while i <= textOnlyUntil, else the subject prompt. */
  textOnlyUntil: number;
  /** The seed used: the one given, or one drawn here. */
  seed: number;
  seedWasRandom: boolean;
  width: number;
  height: number;
  scheduler: SchedulerName;
  numImages: number;
  latents: Tensor | undefined;
  onStep: ((progress: StepProgress) => void) | undefined;
  signal: AbortSignal | undefined;
  attentionMaps: boolean;
  regionStrength: number;
  regionExclusive: boolean;
  allowManySubjects: boolean;
}

export interface NormalizedGenerateOptions extends NormalizedDenoiseOptions {
  prompt: string;
  negativePrompt: string;
  output: OutputFormat;
  imageToken: ImageToken;
}

export interface LoadOptions {
  device?: DeviceSpec;
  dtype?: ModelDType;
  /** CPU threads for this model's work (1..1024). Default: libtorch's (the machine's cores). */
  threads?: number;
  /** Check every file's SHA-256 against model.json before libtorch reads it (reads every byte). Default false: sizes only. */
  verifyHashes?: boolean;
  /**
   * Up to this many images (numImages summed over the calls) from generate() calls that wait for
   * the model run as one UNet batch (1..64; default 1: each call alone). Calls batch when they
   * have the same width, height, steps and scheduler and ask for neither attention maps nor
   * regions; each keeps its own prompt, subjects, seed, guidance and alpha. A call never waits
   * for others: batches form only from calls queued behind a running one.
   */
  maxBatchSize?: number;
}
export interface NormalizedLoadOptions {
  device: DeviceSpec;
  dtype: ModelDType;
  /** 0 = libtorch's default. */
  threads: number;
  verifyHashes: boolean;
  maxBatchSize: number;
}

export interface GenerateContext {
  /** Number of subject markers in the prompt (PromptTokenizer.tokenize().subjectCount); for
   * denoise(), the number of subject positions in the embeddings. */
  subjectCount: number;
  /** The model's latent channels (model.json latentChannels); 4 unless told. */
  latentChannels?: number;
  /** The prompt's subject marker, for messages. */
  imageToken?: ImageToken;
}

const GENERATE_KEYS = [
  'prompt',
  'subjects',
  'negativePrompt',
  'steps',
  'guidanceScale',
  'alpha',
  'startMergeStep',
  'seed',
  'width',
  'height',
  'scheduler',
  'numImages',
  'latents',
  'onStep',
  'signal',
  'attentionMaps',
  'regionStrength',
  'regionExclusive',
  'allowManySubjects',
  'output',
  'imageToken',
] as const;
/** generate()'s options without those that denoise() takes from its embeddings (the prompts) or leaves to decode() (output). */
const DENOISE_KEYS = GENERATE_KEYS.filter((k) => k !== 'prompt' && k !== 'negativePrompt' && k !== 'output' && k !== 'imageToken');
const LOAD_KEYS = ['device', 'dtype', 'threads', 'verifyHashes', 'maxBatchSize'] as const;
const SUBJECT_KEYS = ['image', 'region', 'mask', 'subjectMask'] as const;
const RAW_IMAGE_KEYS = ['data', 'width', 'height', 'channels'] as const;
const REGION_KEYS = ['x', 'y', 'width', 'height'] as const;
const TENSOR_KEYS = ['data', 'shape', 'dtype'] as const;

type Dict = Record<string, unknown>;

function size(v: unknown, name: string): number {
  const { minSize, maxSize, sizeMultiple } = LIMITS;
  if (!isInteger(v, minSize, maxSize) || v % sizeMultiple !== 0) {
    throw invalidArgument(`multiple of ${sizeMultiple} between ${minSize} and ${maxSize}`, name, v);
  }
  return v;
}

/** A uniform integer in [0, 2^53 - 1]. */
export function randomSeed(): number {
  const words = getRandomValues(new Uint32Array(2));
  return (words[0]! & 0x1fffff) * 2 ** 32 + words[1]!;
}

const IMAGE_EXPECTED = 'file path, encoded image Buffer or raw image {data, width, height, channels}';

function imageInput(v: unknown, name: string): ImageInput {
  if (typeof v === 'string') {
    if (!isNonEmptyString(v)) throw invalidArgument('non-empty file path', name, v);
    return v;
  }
  if (Buffer.isBuffer(v)) {
    if (v.length === 0) throw invalidArgument('non-empty encoded image Buffer', name, v);
    return v;
  }
  if (isRawImageLike(v)) return rawImage(v, name);
  throw invalidArgument(IMAGE_EXPECTED, name, v);
}

function rawImage(v: Dict, name: string): RawImage {
  knownKeys(v, RAW_IMAGE_KEYS, name);
  const { data } = v;
  if (!isBytes(data)) throw invalidArgument('Buffer or Uint8Array', `${name}.data`, data);
  const width = integer(v.width, `${name}.width`, 1, 65535);
  const height = integer(v.height, `${name}.height`, 1, 65535);
  if (v.channels !== 1 && v.channels !== 3 && v.channels !== 4) throw invalidArgument('1, 3 or 4', `${name}.channels`, v.channels);
  const channels = v.channels;
  const expected = width * height * channels;
  if (data.byteLength !== expected) {
    throw invalidArgument(`${expected} bytes (${width} x ${height} x ${channels})`, `${name}.data`, describeBytes(data));
  }
  return { data, width, height, channels };
}

// describe() names a Uint8Array only as an object; say its size instead.
function describeBytes(data: Uint8Array): unknown {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** The output size a region must fit in; unknown for encodeSubjects(), which does not use regions. */
interface OutputSize {
  width: number;
  height: number;
}

function region(v: unknown, name: string, out: OutputSize | undefined): Region {
  if (!isRecord(v)) throw invalidArgument('object {x, y, width, height}', name, v);
  knownKeys(v, REGION_KEYS, name);
  const max = LIMITS.maxSize;
  const x = integer(v.x, `${name}.x`, 0, (out?.width ?? max) - 1);
  const y = integer(v.y, `${name}.y`, 0, (out?.height ?? max) - 1);
  const width = integer(v.width, `${name}.width`, 1, out?.width ?? max);
  const height = integer(v.height, `${name}.height`, 1, out?.height ?? max);
  if (!out) return { x, y, width, height };
  if (x + width > out.width) {
    throw new FastComposerError(
      'ERR_INVALID_ARGUMENT',
      `Expected x + width <= ${out.width} (the output width) for ${name} but received x ${x} and width ${width}`,
    );
  }
  if (y + height > out.height) {
    throw new FastComposerError(
      'ERR_INVALID_ARGUMENT',
      `Expected y + height <= ${out.height} (the output height) for ${name} but received y ${y} and height ${height}`,
    );
  }
  return { x, y, width, height };
}

function subject(v: unknown, name: string, out: OutputSize | undefined): SubjectSpec {
  if (!isRecord(v) || 'data' in v) return { image: imageInput(v, name) };
  if (!('image' in v)) throw invalidArgument(`${IMAGE_EXPECTED} or {image, region?, mask?, subjectMask?}`, name, v);
  knownKeys(v, SUBJECT_KEYS, name);
  const spec: SubjectSpec = { image: imageInput(v.image, `${name}.image`) };
  if (v.region !== undefined && v.mask !== undefined) {
    throw new FastComposerError('ERR_INVALID_ARGUMENT', `Expected either region or mask for ${name} but received both`);
  }
  if (v.region !== undefined) spec.region = region(v.region, `${name}.region`, out);
  if (v.mask !== undefined) spec.mask = imageInput(v.mask, `${name}.mask`);
  if (v.subjectMask !== undefined) spec.subjectMask = imageInput(v.subjectMask, `${name}.subjectMask`);
  return spec;
}

function subjectCountError(message: string): FastComposerError {
  return new FastComposerError('ERR_SUBJECT_COUNT', message);
}

/** `per` says what the count follows, for the message. */
function subjects(
  v: unknown,
  ctx: GenerateContext,
  allowMany: boolean,
  out: OutputSize,
  per = `${ctx.imageToken ?? '<|image|>'} in the prompt`,
): SubjectSpec[] {
  const list = v === undefined ? [] : v;
  if (!Array.isArray(list)) throw invalidArgument('array of subjects', 'subjects', v);
  if (list.length !== ctx.subjectCount) {
    throw subjectCountError(
      `Expected ${ctx.subjectCount} subject${ctx.subjectCount === 1 ? '' : 's'} (one per ${per}) for subjects but received ${describe(list)}`,
    );
  }
  if (list.length > LIMITS.maxSubjects && !allowMany) {
    throw subjectCountError(
      `Expected at most ${LIMITS.maxSubjects} subjects (set allowManySubjects: true for more) for subjects but received ${describe(list)}`,
    );
  }
  return list.map((s, i) => subject(s, `subjects[${i}]`, out));
}

/** The subjects of encodeSubjects(): any number from 1 (only their pictures and subject masks are used there). */
export function validateSubjectList(v: unknown): SubjectSpec[] {
  if (!Array.isArray(v) || v.length === 0) throw invalidArgument('non-empty array', 'subjects', v);
  return v.map((s, i) => subject(s, `subjects[${i}]`, undefined));
}

function latents(v: unknown, numImages: number, channels: number, width: number, height: number): Tensor {
  if (isRecord(v)) knownKeys(v, TENSOR_KEYS, 'latents');
  const want = [numImages, channels, height / 8, width / 8];
  float32Tensor(v, 'latents', want);
  return { data: (v as Tensor).data, shape: want, dtype: 'float32' };
}

type DenoiseFields = Omit<NormalizedDenoiseOptions, 'subjects'>;

/** The options of the denoising loop, in the order their errors are reported. */
function denoiseFields(o: Partial<Record<(typeof GENERATE_KEYS)[number], unknown>>, ctx: GenerateContext): DenoiseFields {
  const steps = o.steps === undefined ? DEFAULTS.steps : integer(o.steps, 'steps', 1, LIMITS.maxSteps);
  const guidanceScale =
    o.guidanceScale === undefined ? DEFAULTS.guidanceScale : finite(o.guidanceScale, 'guidanceScale', 0, LIMITS.maxGuidanceScale);
  if (o.alpha !== undefined && o.startMergeStep !== undefined) {
    throw new FastComposerError(
      'ERR_INVALID_ARGUMENT',
      `Expected either alpha or startMergeStep but received both (alpha ${describe(o.alpha)}, startMergeStep ${describe(o.startMergeStep)})`,
    );
  }
  const startMergeStep = o.startMergeStep === undefined ? null : integer(o.startMergeStep, 'startMergeStep', 0, Number.MAX_SAFE_INTEGER);
  const alpha = startMergeStep !== null ? null : o.alpha === undefined ? DEFAULTS.alpha : finite(o.alpha, 'alpha', 0, 1);
  // The original computes `(1 - alpha_) * num_inference_steps` in float64 and compares `i <=` it;
  // the same arithmetic here keeps the switch on the same step (e.g. 15.000000000000002 for 0.7 x 50).
  const textOnlyUntil = startMergeStep ?? (1 - alpha!) * steps;

  const seedWasRandom = o.seed === undefined;
  const seed = seedWasRandom ? randomSeed() : integer(o.seed, 'seed', 0, LIMITS.maxSeed);
  const width = o.width === undefined ? DEFAULTS.width : size(o.width, 'width');
  const height = o.height === undefined ? DEFAULTS.height : size(o.height, 'height');
  const scheduler = o.scheduler === undefined ? DEFAULTS.scheduler : oneOf(o.scheduler, 'scheduler', SCHEDULERS);
  const numImages = o.numImages === undefined ? DEFAULTS.numImages : integer(o.numImages, 'numImages', 1, LIMITS.maxImages);

  const latentChannels = ctx.latentChannels ?? 4;
  const lat = o.latents === undefined ? undefined : latents(o.latents, numImages, latentChannels, width, height);
  if (o.onStep !== undefined && !isFunction(o.onStep)) throw invalidArgument('function', 'onStep', o.onStep);
  const signal = o.signal === undefined ? undefined : abortSignal(o.signal);
  const attentionMaps = o.attentionMaps === undefined ? false : boolean(o.attentionMaps, 'attentionMaps');
  const regionStrength = o.regionStrength === undefined ? DEFAULTS.regionStrength : finite(o.regionStrength, 'regionStrength', 0, 1);
  const regionExclusive = o.regionExclusive === undefined ? false : boolean(o.regionExclusive, 'regionExclusive');
  const allowManySubjects = o.allowManySubjects === undefined ? false : boolean(o.allowManySubjects, 'allowManySubjects');
  return {
    steps,
    guidanceScale,
    alpha,
    startMergeStep,
    textOnlyUntil,
    seed,
    seedWasRandom,
    width,
    height,
    scheduler,
    numImages,
    latents: lat,
    onStep: o.onStep as NormalizedDenoiseOptions['onStep'],
    signal,
    attentionMaps,
    regionStrength,
    regionExclusive,
    allowManySubjects,
  };
}

/** Checks generate() options and fills the defaults. */
export function validateGenerateOptions(opts: unknown, ctx: GenerateContext): NormalizedGenerateOptions {
  if (!isRecord(opts)) throw invalidArgument('object', 'options', opts);
  knownKeys(opts, GENERATE_KEYS, 'generate() options');
  const o = opts as Partial<Record<(typeof GENERATE_KEYS)[number], unknown>>;

  const prompt = string(o.prompt, 'prompt');
  const negativePrompt = string(o.negativePrompt ?? '', 'negativePrompt');
  const fields = denoiseFields(o, ctx);
  const output = o.output === undefined ? DEFAULTS.output : oneOf(o.output, 'output', OUTPUT_FORMATS);
  const imageToken = imageTokenOption(o.imageToken);
  return {
    prompt,
    subjects: subjects(o.subjects, ctx, fields.allowManySubjects, fields),
    negativePrompt,
    ...fields,
    output,
    imageToken,
  };
}

/**
 * Checks the options of the stage API's denoise() and fills the defaults. `subjects` is optional
 * there (it only carries regions); when given, there is one per subject position of the embeddings.
 */
export function validateDenoiseOptions(opts: unknown, ctx: GenerateContext): NormalizedDenoiseOptions {
  const o = opts ?? {};
  if (!isRecord(o)) throw invalidArgument('object', 'options', opts);
  knownKeys(o, DENOISE_KEYS, 'denoise() options (the prompts come from encodePrompt(), images from decode())');
  const fields = denoiseFields(o, ctx);
  const list = o.subjects === undefined ? [] : subjects(o.subjects, ctx, true, fields, 'subject position of the embeddings');
  return { subjects: list, ...fields };
}

/** Checks an imageToken option; undefined is the default '<|image|>'. */
export function imageTokenOption(v: unknown): ImageToken {
  return v === undefined ? IMAGE_TOKENS[0] : oneOf(v, 'imageToken', IMAGE_TOKENS);
}

const DEVICE_PATTERN = /^(cpu|cuda|auto|cuda:(0|[1-9][0-9]{0,2}))$/;

/** Checks load() options and fills the defaults (device 'auto', dtype 'float32'). */
export function validateLoadOptions(opts: unknown): NormalizedLoadOptions {
  const o = opts === undefined ? {} : opts;
  if (!isRecord(o)) throw invalidArgument('object', 'options', opts);
  knownKeys(o, LOAD_KEYS, 'load() options');
  let device = DEFAULTS.device;
  if (o.device !== undefined) {
    if (typeof o.device !== 'string' || !DEVICE_PATTERN.test(o.device))
      throw invalidArgument("'cpu', 'cuda', 'cuda:N' or 'auto'", 'device', o.device);
    device = o.device as DeviceSpec;
  }
  const dtype = o.dtype === undefined ? DEFAULTS.dtype : oneOf(o.dtype, 'dtype', MODEL_DTYPES);
  const threads = o.threads === undefined ? 0 : integer(o.threads, 'threads', 1, 1024);
  const verifyHashes = o.verifyHashes === undefined ? false : boolean(o.verifyHashes, 'verifyHashes');
  const maxBatchSize = o.maxBatchSize === undefined ? 1 : integer(o.maxBatchSize, 'maxBatchSize', 1, 64);
  return { device, dtype, threads, verifyHashes, maxBatchSize };
}
