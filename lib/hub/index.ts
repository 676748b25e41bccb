/**
 * Getting the released weights: downloads from the Hugging Face Hub (or a URL) into the cache
 * Python's huggingface_hub shares, the export into a named model, and finding named models.
 *
 *   settings.ts      environment: HF_ENDPOINT, HF_TOKEN, HF_HOME, HF_HUB_CACHE, FASTCOMPOSER_CACHE
 *   hub-cache.ts     the hub cache's layout (blobs, refs, snapshots), as Python's
 *   hub-api.ts       what the hub says about a repo (@huggingface/hub)
 *   http.ts          HTTP refusals to coded errors
 *   transfer.ts      one resumable, checked download
 *   hub-download.ts  a repo's files into the cache
 *   url-download.ts  a plain URL into fastcomposer's cache
 *   release.ts       the three repos and the files the exporter reads
 *   pull.ts          all of it, then the export
 *   registry.ts      named models
 */
export { pull, type PullEvent, type PullOptions, type PullResult } from './pull.js';
export { listModels, modelDirFor, resolveModel, type ModelSummary } from './registry.js';
export { fastcomposerCacheDir, hubCacheDir, modelsDir } from './settings.js';
export { DownloadError, formatBytes } from './errors.js';
export { DEFAULT_BASE, DEFAULT_CHECKPOINT, DEFAULT_IMAGE_ENCODER, DEFAULT_MODEL_NAME } from './release.js';
