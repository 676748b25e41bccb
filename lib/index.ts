/** fastcomposer: FastComposer (multi-subject personalized text-to-image) for Node.js. */
export { FastComposer, GeneratedImage } from './fastcomposer.js';
export type { DenoiseOptions, GenerateResult, LoadTimings, PromptEmbeddings, TokenizeResult } from './fastcomposer.js';
export { AbortError, DisposedError, FastComposerError } from './errors.js';
export type { FastComposerErrorCode } from './errors.js';
export type {
  GenerateOptions,
  ImageInput,
  ImageToken,
  LoadOptions,
  ModelDType,
  OutputFormat,
  RawImage,
  Region,
  SchedulerName,
  StepProgress,
  SubjectInput,
  SubjectSpec,
} from './options.js';
export { IMAGE_TOKENS, SCHEDULERS } from './options.js';
export type { DType, Tensor } from './tensor.js';
export type { FileCheck } from './model-files.js';
export type { ModelVerification, ModuleAudit } from './verify.js';
export { defaultModelDir } from './paths.js';
export { DownloadError, listModels, modelsDir, pull, resolveModel } from './hub/index.js';
export type { ModelSummary, PullEvent, PullOptions, PullResult } from './hub/index.js';
export { runtimeInfo } from './runtime-info.js';
export type { RuntimeInfo } from './runtime-info.js';
