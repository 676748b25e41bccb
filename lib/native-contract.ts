/**
 * The native binding's exact shape: every function the .node exports (native/addon.cc,
 * native/model_wrap.cc), with its arguments and results. This file and those two change
 * together. Only lib/ calls the binding; users see the FastComposer class.
 */
import type { Tensor } from './tensor.js';

export interface NativeModelSpec {
  textEncoder: string;
  imageEncoder: string;
  postfuse: string;
  unet: string;
  vaeDecoder: string;
  device: string; // 'cpu' | 'cuda' | 'cuda:N' ('auto' is resolved in TS)
  dtype: 'float32' | 'float16' | 'bfloat16';
  threads: number; // CPU threads for this model's work; 0 = libtorch's default
  latentScale: number;
  vaeScaleFactor: number;
  latentChannels: number;
  maxLength: number; // the text encoder's context length (model.json maxLength): token ids are [1, maxLength]
  prepackCacheDir?: string; // CPU: where prepacked weights are kept between loads (native/prepack_cache.h); '' or absent: nowhere
  prepackCacheMinBytes?: number; // modules with fewer packed bytes are not kept
}

export interface NativePromptJob {
  inputIds: Tensor; // int64 [1,maxLength]
  textOnlyIds: Tensor; // int64 [1,maxLength]
  negativeIds: Tensor; // int64 [1,maxLength]
  subjectPositions: number[];
  objectEmbeds?: Tensor; // float32 [S,D]
}

/** scheduler_config.json as read from the model directory (snake_case keys, as diffusers). */
export type NativeSchedulerConfig = Record<string, unknown>;

export interface NativeDenoiseJob {
  steps: number;
  guidanceScale: number;
  mergeThreshold: number; // steps i <= mergeThreshold use the text-only prompt
  seed: number;
  width: number;
  height: number;
  numImages: number;
  scheduler: string;
  schedulerConfig: NativeSchedulerConfig;
  latents?: Tensor; // float32 [N,4,h,w]
  attentionMaps?: boolean;
  subjectPositions: number[];
  regionInside?: Tensor; // float32 [S,h,w]
  hasRegion?: number[]; // 0/1 per subject
  regionStrength?: number;
  regionExclusive?: boolean;
}

/** subjectImages' Buffers are read in place by the worker: callers must neither change nor
 * transfer (detach) them until the call settles. lib/ passes copies it owns. */
export interface NativeGenerateJob extends NativePromptJob, NativeDenoiseJob {
  /** Decoded subject pictures, uint8 [H,W,3] RGB each, any size: padded to square and resized to
   * subjectSize x subjectSize on the worker (native/subject_pixels.cc). One per subject position. */
  subjectImages?: Tensor[];
  subjectSize?: number; // model.json imageSize (224); needed with subjectImages
}

export interface NativePromptEmbeds {
  fused: Tensor; // float32 [1,maxLength,D]
  textOnly: Tensor;
  negative: Tensor;
}

export interface NativeStepEvent {
  step: number;
  steps: number;
  timestep: number;
  /** generateBatch(): the index of the job whose step this was. */
  member?: number;
}

export type NativeStepCallback = (event: NativeStepEvent) => void;

export interface NativeDenoiseResult {
  latents: Tensor; // float32 [N,4,h,w]
  attentionMaps?: Tensor; // float32 [N,S,h,w]
}

export interface NativeTimings {
  encodeSubjectsMs: number;
  encodePromptMs: number;
  denoiseMs: number;
  decodeMs: number;
  totalMs: number;
  /** The generate() calls that shared this call's UNet batch, this one included (1: it ran alone). */
  batchedCalls: number;
}

/** Where the native part of a load went, in milliseconds (native/model.h LoadTimings). */
export interface NativeLoadTimings {
  readMs: number; // the module files mapped with their pages in memory (0 when not mapped: CUDA)
  deserializeMs: number; // the archives read: code, structure, tensors
  auditMs: number; // the modules' code inspected before any of it runs
  convertMs: number; // dtype and memory-format conversions of the weights
  passesMs: number; // graph passes
  prepackMs: number; // weights reordered for the CPU kernels
  warmupMs: number; // first calls made at load
  totalMs: number;
}

export interface NativeGenerateResult extends NativeDenoiseResult {
  images: Tensor; // uint8 [N,H,W,3]
  timings: NativeTimings;
}

export interface NativeDeviceMemory {
  allocated: number;
  peakAllocated: number;
  reserved: number;
  peakReserved: number;
}

export interface NativeAbortFlag {
  abort(): void;
  readonly aborted: boolean;
}

export interface NativeModel {
  /** Pads, resizes (to size x size) and encodes each uint8 [H,W,3] picture: float32 [S,D]. */
  encodeSubjects(subjectImages: Tensor[], size: number): Promise<Tensor>;
  encodePrompt(job: NativePromptJob): Promise<NativePromptEmbeds>;
  denoise(
    embeds: NativePromptEmbeds,
    job: NativeDenoiseJob,
    onStep?: NativeStepCallback,
    abort?: NativeAbortFlag,
  ): Promise<NativeDenoiseResult>;
  decode(latents: Tensor): Promise<Tensor>;
  generate(job: NativeGenerateJob, onStep?: NativeStepCallback, abort?: NativeAbortFlag): Promise<NativeGenerateResult>;
  /**
   * Jobs with the same size, steps and scheduler, without attention maps or regions, as one UNet
   * batch per step (one abort flag per job). One result per job; `{ aborted: true }` for a job
   * whose flag was set before it finished.
   */
  generateBatch(
    jobs: NativeGenerateJob[],
    onStep: NativeStepCallback | undefined,
    abort: NativeAbortFlag[],
  ): Promise<Array<NativeGenerateResult | { aborted: true }>>;
  /**
   * cudaGraph: the last UNet step (plain or localized) was replayed from a captured CUDA graph.
   * graphPasses: what native/graph_passes.cc rewrote at load in the UNet and VAE graphs.
   */
  info(): {
    device: string;
    dtype: string;
    cudaGraph: boolean;
    graphPasses: { groupNorms: number; fusedSilus: number; droppedContiguous: number; nhwcGroupNormKernel: boolean };
    /** What was reordered at load for oneDNN's CPU kernels (native/prepack.h); zeros elsewhere. */
    prepacked: { convolutions: number; linears: number; weights: number; bytes: number; fromCache: number };
    load: NativeLoadTimings;
  };
  /** Settles once the model's memory is freed (or later, when in-flight calls end). */
  dispose(): Promise<void>;
}

export interface NativeSchedulerReplay {
  timesteps: Tensor;
  initNoiseSigma: number;
  x: Tensor[]; // x_0 (initial latents) .. x_N (after the last step)
  scaled: Tensor[]; // the model input of each step
}

export interface NativeTesting {
  replayScheduler(
    name: string,
    config: NativeSchedulerConfig,
    steps: number,
    x0: Tensor,
    eps: Tensor[],
    seed?: number,
  ): NativeSchedulerReplay;
  /** The subject pad + resize of generate()/encodeSubjects(), synchronously: uint8 [H,W,3] each
   * -> uint8 [S,size,size,3] (PadToSquare, float32 antialiased bilinear, round half to even). */
  prepareSubjectPixels(subjectImages: Tensor[], size: number): Tensor;
  /** Raises a libtorch warning (TORCH_WARN) on the CPU job thread (native/libtorch_log.h collects it). */
  warnOnJobThread(message: string): void;
  /** Maps a file as a CPU load does, points a record's storage at [offset, offset + size) (its zip
   * local header at headerOffset) and frees it: the mapping's resident bytes before and after,
   * and the sum of the record's bytes read afterwards (native/mapped_load.h). */
  mappedRecordResidency(
    path: string,
    headerOffset: number,
    offset: number,
    size: number,
  ): { mapped: number; released: number; sum: number };
  /** Maps a file as a CPU load does, cuts it to cutTo bytes and reads the whole mapping: whether
   * the read met the cut, and the sum of the bytes it read (zeros past the cut; native/mapping_guard.h). */
  readCutMapping(path: string, cutTo: number): { cut: boolean; sum: number };
  /** The same through a mapping no guard covers: the process dies of SIGBUS. */
  readCutUnguarded(path: string, cutTo: number): number;
  /** Maps a module file, cuts it to cutTo bytes (not at all when negative), then reads it as a CPU load does
   * (native/module_loader.h): throws what the load throws. */
  loadCutModule(path: string, cutTo: number): void;
  /** The next model load, once its module files are read and before their weights are used, cuts
   * the file at path to nothing ('cut') or writes it again in place, as `cp` over it would ('rewrite'). */
  changeAfterNextModelRead(path: string, how: 'cut' | 'rewrite'): void;
}

export interface NativeBinding {
  readonly torchVersion: string; // the libtorch version the binary was compiled against
  readonly AbortFlag: new () => NativeAbortFlag;
  loadModel(spec: NativeModelSpec): Promise<NativeModel>;
  /** Reads a module file's code without its weights and without running any of it, and audits it
   * (native/module_audit.h): resolves with the operators it uses, rejects with ERR_MODEL when refused. */
  auditModule(path: string): Promise<string[]>;
  /** libtorch's warnings collected on the job threads since the last call (native/libtorch_log.h). */
  takeWarnings(): string[];
  cudaDeviceCount(): number;
  /** Bytes held by the CUDA caching allocator on one device; resetPeak starts a new peak. */
  cudaMemory(index?: number, resetPeak?: boolean): NativeDeviceMemory;
  getNumThreads(): number;
  /** At process exit: stops and waits for native work (native/addon.cc PrepareExit). */
  prepareExit(): void;
  readonly testing: NativeTesting;
}
