/**
 * The public class: load a model directory, generate, the stage API, dispose. Everything is
 * checked here before native code runs; native calls run off the event loop, one at a time
 * per model (per device on CUDA).
 */
import { abortSignal, string } from './checks.js';
import { AbortError, DisposedError, FastComposerError, asFastComposerError, invalidArgument } from './errors.js';
import { encodeImage, type PixelImage, renderHeatmap } from './images.js';
import { readModelDir, type ModelDir } from './model-dir.js';
import { loadNative } from './native.js';
import type {
  NativeAbortFlag,
  NativeDenoiseJob,
  NativeGenerateJob,
  NativeGenerateResult,
  NativeLoadTimings,
  NativeModel,
  NativeTimings,
} from './native-contract.js';
import { isInteger, isRecord } from './is.js';
import { verifyModelDir, type ModelVerification } from './verify.js';
import { emitLibtorchWarnings, emitWarning } from './warnings.js';
import {
  type GenerateOptions,
  type ImageToken,
  imageTokenOption,
  type LoadOptions,
  type NormalizedDenoiseOptions,
  type NormalizedGenerateOptions,
  type SubjectInput,
  type SubjectSpec,
  validateDenoiseOptions,
  validateGenerateOptions,
  validateLoadOptions,
  validateSubjectList,
} from './options.js';
import { defaultModelDir } from './paths.js';
import { prepackCacheSettings } from './prepack-cache.js';
import { PromptTokenizer, type TokenizedPrompt, truncationWarnings } from './prompt.js';
import { JobQueue, queueFor } from './call-queue.js';
import { type BatchMember, CallBatcher } from './call-batcher.js';
import { batchable, batchKey } from './batchable.js';
import { regionGrid } from './regions.js';
import { latentsToDecode, promptArgs, promptEmbeddings, subjectEmbeds as checkSubjectEmbeds } from './stage-inputs.js';
import { decodeSubjects, rgbTensor } from './subjects.js';
import { float32View, type Tensor } from './tensor.js';
import { GeneratedImage, splitImages } from './generated-image.js';
import { type CallbackFailure, callbackChecked, stepCallback } from './step-callback.js';

export { GeneratedImage } from './generated-image.js';
export { callbackError } from './step-callback.js';

export interface GenerateResult {
  images: GeneratedImage[];
  /** float32 [numImages, 4, height / 8, width / 8]: the final latents, before the VAE. */
  latents: Tensor;
  /** float32 [numImages, subjects, height / 8, width / 8], each map summing to 1 (with attentionMaps: true). */
  attentionMaps?: Tensor;
  seed: number;
  /** Things the caller should know, e.g. a prompt cut at 77 tokens. */
  warnings: string[];
  /** Milliseconds spent in each native stage (device-synchronised), and in the whole call. */
  timings: NativeTimings & { generateMs: number };
}

/** Where FastComposer.load()'s time went, in milliseconds. */
export interface LoadTimings extends NativeLoadTimings {
  /** model.json and scheduler_config.json read and checked. */
  manifestMs: number;
  /** tokenizer.json parsed. */
  tokenizerMs: number;
  /** The whole load() call, as the caller waited for it. */
  loadMs: number;
}

export interface PromptEmbeddings {
  /** float32 [1, L, D] (L: the model's maxLength, 77): the prompt with the subject embeddings fused in. */
  fused: Tensor;
  /** float32 [1, L, D]: the prompt without the subjects (early steps). */
  textOnly: Tensor;
  /** float32 [1, L, D]: the negative prompt. */
  negative: Tensor;
  subjectPositions: number[];
  warnings: string[];
}

export interface TokenizeResult {
  inputIds: number[];
  subjectTokenMask: boolean[];
  textOnlyIds: number[];
}

export type DenoiseOptions = Omit<GenerateOptions, 'prompt' | 'subjects' | 'negativePrompt' | 'output' | 'imageToken'> & {
  /** Needed for attention maps and regions: the subjects' regions, in subject order. */
  subjects?: SubjectInput[];
};

function idsTensor(ids: readonly number[]): Tensor {
  return { data: Buffer.from(BigInt64Array.from(ids, (v) => BigInt(v)).buffer), shape: [1, ids.length], dtype: 'int64' };
}

/** A generate() call waiting in a batch (load option maxBatchSize). */
interface BatchedCall {
  job: NativeGenerateJob;
  opts: NormalizedGenerateOptions;
  failure: CallbackFailure;
  /** Moves the call from waiting to running in counters(). */
  started: () => void;
}

export class FastComposer {
  private native: NativeModel | undefined;
  private readonly queue: JobQueue;
  private readonly batcher: CallBatcher<BatchedCall, NativeGenerateResult> | undefined;
  private readonly running = new Set<NativeAbortFlag>();
  private readonly calls = { waiting: 0, running: 0 };
  private disposing: Promise<void> | undefined;

  private constructor(
    native: NativeModel,
    readonly model: ModelDir,
    readonly tokenizer: PromptTokenizer,
    readonly device: string,
    readonly dtype: string,
    /** Where load()'s time went (native phases, manifest and tokenizer), in milliseconds. */
    readonly loadTimings: LoadTimings,
    /** Load option maxBatchSize: images of waiting generate() calls run as one UNet batch (1: no batching). */
    readonly maxBatchSize: number,
  ) {
    this.native = native;
    this.queue = queueFor(device);
    if (maxBatchSize > 1) this.batcher = new CallBatcher(this.queue, maxBatchSize, (members) => this.runBatch(members));
  }

  /**
   * Loads a model directory, or a pulled model by name (default: the embedded tiny model), onto a
   * device. Each file's size is checked against model.json (with `verifyHashes`, its SHA-256 too)
   * before libtorch reads it, and each module's code is audited before any of it runs (README "Security").
   */
  static async load(modelDir: string = defaultModelDir, options: LoadOptions = {}): Promise<FastComposer> {
    const started = performance.now();
    const opts = validateLoadOptions(options);
    const { binding } = loadNative();
    const model = await readModelDir(modelDir, { verifyHashes: opts.verifyHashes });
    for (const warning of model.warnings) emitWarning(warning, 'FASTCOMPOSER_MODEL');
    const manifestMs = performance.now() - started;
    const tokenizer = await PromptTokenizer.load(model.tokenizerPath, model.manifest.maxLength);
    const tokenizerMs = performance.now() - started - manifestMs;
    let device: string = opts.device;
    if (device === 'auto') device = binding.cudaDeviceCount() > 0 ? 'cuda:0' : 'cpu';
    if (device === 'cuda') device = 'cuda:0';
    const p = model.modulePaths;
    let native: NativeModel;
    try {
      native = await binding.loadModel({
        textEncoder: p.text_encoder,
        imageEncoder: p.image_encoder,
        postfuse: p.postfuse,
        unet: p.unet,
        vaeDecoder: p.vae_decoder,
        device,
        dtype: opts.dtype,
        threads: opts.threads,
        latentScale: model.manifest.latentScale,
        vaeScaleFactor: model.manifest.vaeScaleFactor,
        latentChannels: model.manifest.latentChannels,
        maxLength: model.manifest.maxLength,
        ...(device === 'cpu' ? prepackCacheSettings() : {}),
      });
    } catch (error) {
      throw asFastComposerError(error);
    } finally {
      emitLibtorchWarnings(binding);
    }
    const loadTimings = { ...native.info().load, manifestMs, tokenizerMs, loadMs: performance.now() - started };
    return new FastComposer(native, model, tokenizer, device, opts.dtype, loadTimings, opts.maxBatchSize);
  }

  /**
   * Checks a model directory without loading it or running any of it: every file's size and
   * SHA-256 against model.json, and every module's code against the operators a load allows.
   * `fastcomposer info --verify` prints this.
   */
  static verify(modelDir: string = defaultModelDir): Promise<ModelVerification> {
    return verifyModelDir(modelDir);
  }

  /** The ids the model sees for a prompt, and where its subject tokens are. */
  tokenize(prompt: string, options: { imageToken?: ImageToken } = {}): TokenizeResult {
    const t = this.tokenizer.tokenize(string(prompt, 'prompt'), imageTokenOption(options?.imageToken));
    return { inputIds: t.inputIds, subjectTokenMask: t.subjectTokenMask, textOnlyIds: t.textOnlyIds };
  }

  /**
   * This model's calls (generate() and the stage calls) that wait for it, and those it runs now
   * (more than one when a batch runs, load option maxBatchSize). For load balancing and health
   * checks; cf. sharp.counters().
   */
  counters(): { waiting: number; running: number } {
    return { ...this.calls };
  }

  async generate(options: GenerateOptions): Promise<GenerateResult> {
    const started = performance.now();
    const native = this.alive();
    const { opts, tokens, negativeIds, warnings } = this.prepare(options);
    const subjectImages = await this.subjectImages(opts.subjects);
    const job = {
      ...(await this.denoiseJob(opts, tokens.subjectPositions)),
      inputIds: idsTensor(tokens.inputIds),
      textOnlyIds: idsTensor(tokens.textOnlyIds),
      negativeIds: idsTensor(negativeIds),
      ...(subjectImages ? { subjectImages, subjectSize: this.model.manifest.imageSize } : {}),
    };
    const failure: CallbackFailure = {};
    const out = await callbackChecked(
      failure,
      this.batcher && batchable(job)
        ? this.counted((started) => this.batcher!.submit(batchKey(job), job.numImages, { job, opts, failure, started }, opts.signal))
        : this.run(opts.signal, (flag) => native.generate(job, stepCallback(opts.onStep, flag, failure), flag)),
    );
    const images = splitImages(out.images);
    if (opts.output !== 'raw') {
      const format = opts.output;
      await Promise.all(images.map(async (img) => (img.encoded = await encodeImage(img, format))));
    }
    return {
      images,
      latents: out.latents,
      ...(out.attentionMaps ? { attentionMaps: out.attentionMaps } : {}),
      seed: opts.seed,
      warnings,
      timings: { ...out.timings, generateMs: performance.now() - started },
    };
  }

  /** Stage API: the projected CLIP image embedding of each subject, float32 [S, D]; cacheable. */
  async encodeSubjects(subjects: SubjectInput[], options: { signal?: AbortSignal } = {}): Promise<Tensor> {
    const native = this.alive();
    const subjectImages = (await this.subjectImages(validateSubjectList(subjects)))!;
    return this.run(options?.signal, () => native.encodeSubjects(subjectImages, this.model.manifest.imageSize));
  }

  /** Stage API: the three prompt embeddings; `subjectEmbeds` from encodeSubjects(). */
  async encodePrompt(args: {
    prompt: string;
    negativePrompt?: string;
    subjectEmbeds?: Tensor;
    signal?: AbortSignal;
    /** The prompt's subject marker: '<|image|>' (default) or 'img' (MMagic's prompts). */
    imageToken?: ImageToken;
  }): Promise<PromptEmbeddings> {
    const native = this.alive();
    const a = promptArgs(args);
    const tokens = this.tokenizer.tokenize(a.prompt, a.imageToken);
    const negative = this.tokenizer.encodePlain(a.negativePrompt);
    const embeds = tokens.subjectCount > 0 ? checkSubjectEmbeds(a.subjectEmbeds, tokens.subjectCount, this.model.manifest) : undefined;
    const warnings = truncationWarnings(tokens, negative.truncated, this.tokenizer.maxLength);
    const out = await this.run(a.signal, () =>
      native.encodePrompt({
        inputIds: idsTensor(tokens.inputIds),
        textOnlyIds: idsTensor(tokens.textOnlyIds),
        negativeIds: idsTensor(negative.ids),
        subjectPositions: tokens.subjectPositions,
        ...(embeds ? { objectEmbeds: embeds } : {}),
      }),
    );
    return { ...out, subjectPositions: tokens.subjectPositions, warnings };
  }

  /** Stage API: the denoising loop on embeddings from encodePrompt(). */
  async denoise(
    embeds: PromptEmbeddings,
    options: DenoiseOptions = {},
  ): Promise<{ latents: Tensor; attentionMaps?: Tensor; seed: number }> {
    const native = this.alive();
    const { subjectPositions: positions, ...nativeEmbeds } = promptEmbeddings(embeds, this.model.manifest);
    const opts = validateDenoiseOptions(options, {
      subjectCount: positions.length,
      latentChannels: this.model.manifest.latentChannels,
    });
    const job = await this.denoiseJob(opts, positions);
    const failure: CallbackFailure = {};
    const out = await callbackChecked(
      failure,
      this.run(opts.signal, (flag) => native.denoise(nativeEmbeds, job, stepCallback(opts.onStep, flag, failure), flag)),
    );
    return { ...out, seed: opts.seed };
  }

  /** Stage API: latents (float32 [N, 4, h, w]) to images. */
  async decode(latents: Tensor, options: { signal?: AbortSignal } = {}): Promise<GeneratedImage[]> {
    const native = this.alive();
    const checked = latentsToDecode(latents, this.model.manifest);
    const images = await this.run(options?.signal, () => native.decode(checked));
    return splitImages(images);
  }

  /** A heat-map PNG of one subject's attention over one generated image; `result` is generate()'s, or any with its images and maps. */
  static attentionHeatmap(result: { images: readonly PixelImage[]; attentionMaps?: Tensor }, subject: number, image = 0): Promise<Buffer> {
    const maps = result.attentionMaps;
    if (!maps) throw new FastComposerError('ERR_INVALID_ARGUMENT', 'The result has no attentionMaps (pass attentionMaps: true)');
    const [n, s, h, w] = maps.shape as [number, number, number, number];
    if (!isInteger(subject, 0, s - 1)) throw invalidArgument(`integer in 0..${s - 1}`, 'subject', subject);
    if (!isInteger(image, 0, n - 1)) throw invalidArgument(`integer in 0..${n - 1}`, 'image', image);
    const all = float32View(maps);
    const map = all.subarray((image * s + subject) * h * w, (image * s + subject + 1) * h * w);
    return renderHeatmap(map, w, h, result.images[image]!);
  }

  /** Rejects queued and running calls with an abort-type error, then frees the model. */
  dispose(): Promise<void> {
    if (!this.disposing) {
      for (const flag of this.running) flag.abort();
      const native = this.native;
      this.native = undefined;
      this.disposing = this.queue.idle().then(() => native?.dispose());
    }
    return this.disposing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  private alive(): NativeModel {
    if (!this.native) throw new DisposedError();
    return this.native;
  }

  private prepare(options: GenerateOptions): {
    opts: NormalizedGenerateOptions;
    tokens: TokenizedPrompt;
    negativeIds: number[];
    warnings: string[];
  } {
    if (!isRecord(options)) throw invalidArgument('object', 'options', options);
    const imageToken = imageTokenOption(options.imageToken);
    const tokens = this.tokenizer.tokenize(string(options.prompt, 'prompt'), imageToken);
    const opts = validateGenerateOptions(options, {
      subjectCount: tokens.subjectCount,
      latentChannels: this.model.manifest.latentChannels,
      imageToken,
    });
    const negative = this.tokenizer.encodePlain(opts.negativePrompt);
    return { opts, tokens, negativeIds: negative.ids, warnings: truncationWarnings(tokens, negative.truncated, this.tokenizer.maxLength) };
  }

  /** The subject pictures decoded (and masked) at their own sizes; the native worker pads and
   * resizes them to the image encoder's input (native/subject_pixels.cc). */
  private async subjectImages(subjects: SubjectSpec[]): Promise<Tensor[] | undefined> {
    if (subjects.length === 0) return undefined;
    const images = await decodeSubjects(subjects.map((s) => (s.subjectMask ? { image: s.image, subjectMask: s.subjectMask } : s.image)));
    return images.map(rgbTensor);
  }

  private async denoiseJob(opts: NormalizedDenoiseOptions, subjectPositions: number[]): Promise<NativeDenoiseJob> {
    const factor = this.model.manifest.vaeScaleFactor;
    const regions = await regionGrid(opts.subjects, opts.width, opts.height, factor);
    return {
      steps: opts.steps,
      guidanceScale: opts.guidanceScale,
      mergeThreshold: opts.textOnlyUntil,
      seed: opts.seed,
      width: opts.width,
      height: opts.height,
      numImages: opts.numImages,
      scheduler: opts.scheduler,
      schedulerConfig: this.model.schedulerConfig,
      ...(opts.latents ? { latents: opts.latents } : {}),
      attentionMaps: opts.attentionMaps,
      subjectPositions,
      ...(regions
        ? {
            regionInside: regions.inside,
            hasRegion: regions.hasRegion,
            regionStrength: opts.regionStrength,
            regionExclusive: opts.regionExclusive,
          }
        : {}),
    };
  }

  /** Queues a native call with an abort flag tied to the signal and to dispose(). */
  private run<T>(given: unknown, call: (flag: NativeAbortFlag) => Promise<T>): Promise<T> {
    let signal: AbortSignal | undefined;
    try {
      signal = given === undefined ? undefined : abortSignal(given);
    } catch (error) {
      return Promise.reject(error);
    }
    if (signal?.aborted) return Promise.reject(new AbortError(signal.reason));
    return this.counted((started) =>
      this.queue.run(async () => {
        started();
        if (!this.native) throw new DisposedError('This FastComposer model was disposed before the call ran');
        const { flags, release } = this.flagsFor([signal]);
        const flag = flags[0]!;
        try {
          return await call(flag);
        } catch (error) {
          throw this.callError(error, signal, flag);
        } finally {
          release();
        }
      }, signal),
    );
  }

  /** Counts a call as waiting until it calls started(), then as running until it settles. */
  private counted<T>(call: (started: () => void) => Promise<T>): Promise<T> {
    let state: 'waiting' | 'running' = 'waiting';
    this.calls.waiting++;
    const started = (): void => {
      if (state !== 'waiting') return;
      state = 'running';
      this.calls.waiting--;
      this.calls.running++;
    };
    const settled = (): void => {
      if (state === 'waiting') this.calls.waiting--;
      else this.calls.running--;
    };
    const promise = call(started);
    promise.then(settled, settled);
    return promise;
  }

  /** A batch the model's queue reached (load option maxBatchSize): one native call for all its members. */
  private async runBatch(members: BatchMember<BatchedCall, NativeGenerateResult>[]): Promise<void> {
    const native = this.native;
    if (!native) throw new DisposedError('This FastComposer model was disposed before the call ran');
    for (const member of members) member.job.started();
    const { flags, release } = this.flagsFor(members.map((m) => m.signal));
    const callbacks = members.map((m, k) => stepCallback(m.job.opts.onStep, flags[k]!, m.job.failure));
    try {
      const results =
        members.length === 1
          ? [await native.generate(members[0]!.job.job, callbacks[0], flags[0])]
          : await native.generateBatch(
              members.map((m) => m.job.job),
              // The member index routes the event; the caller's onStep gets what a lone call reports.
              callbacks.some(Boolean) ? ({ member, step, steps, timestep }) => callbacks[member!]?.({ step, steps, timestep }) : undefined,
              flags,
            );
      results.forEach((result, k) => {
        const member = members[k]!;
        if ('aborted' in result) member.reject(this.callError(new AbortError(member.signal?.reason), member.signal, flags[k]!));
        else member.resolve(result);
      });
    } catch (error) {
      // Not one call's fault as far as anyone can tell (the device out of memory for the batch,
      // say): each call runs again alone and gets its own result or error. Its onStep starts over.
      const rerun = members.length > 1 && !this.disposing && !(asFastComposerError(error) instanceof AbortError);
      for (const [k, member] of members.entries()) {
        try {
          if (!rerun) throw error;
          if (flags[k]!.aborted) throw new AbortError(member.signal?.reason);
          member.resolve(await native.generate(member.job.job, callbacks[k], flags[k]));
        } catch (alone) {
          member.reject(this.callError(alone, member.signal, flags[k]!));
        }
      }
    } finally {
      release();
    }
  }

  /** One abort flag per call, set by its signal and by dispose(); release() unlinks them once the calls have settled. */
  private flagsFor(signals: (AbortSignal | undefined)[]): { flags: NativeAbortFlag[]; release: () => void } {
    const { binding } = loadNative();
    const unlinks: (() => void)[] = [];
    const flags = signals.map((signal) => {
      const flag = new binding.AbortFlag();
      const onAbort = (): void => flag.abort();
      signal?.addEventListener('abort', onAbort, { once: true });
      unlinks.push(() => signal?.removeEventListener('abort', onAbort));
      this.running.add(flag);
      return flag;
    });
    const release = (): void => {
      for (const flag of flags) this.running.delete(flag);
      for (const unlink of unlinks) unlink();
      emitLibtorchWarnings(binding);
    };
    return { flags, release };
  }

  /** A call's error: a dispose() during the call says so; the rest are coded. */
  private callError(error: unknown, signal: AbortSignal | undefined, flag: NativeAbortFlag): FastComposerError {
    if (this.disposing && flag.aborted && !signal?.aborted) return new DisposedError('The model was disposed during the call');
    return asFastComposerError(error, signal);
  }
}
