/**
 * pull(): the released weights in one call. Asks the hub about all three repos first (so a
 * token or name problem shows before gigabytes move), downloads what the cache lacks, then runs
 * the exporter into a named model folder (`<models>/<name>`) or `out`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

import { invalidArgument } from '../errors.js';
import { runExporter } from '../python.js';
import { type HubClient, hubClient } from './hub-api.js';
import { type FileProgress, type RepoPlan, fetchRepo, planRepo } from './hub-download.js';
import { checkModelName, modelDirFor } from './registry.js';
import {
  BASE_FILES,
  CHECKPOINT_FILE,
  CHECKPOINT_FILES,
  DEFAULT_BASE,
  DEFAULT_CHECKPOINT,
  DEFAULT_IMAGE_ENCODER,
  DEFAULT_MODEL_NAME,
  IMAGE_ENCODER_FILES,
  hfUri,
  parseRepoRef,
} from './release.js';
import { checkUrl, downloadUrl } from './url-download.js';

export interface PullOptions {
  /** The named model to write (default 'fastcomposer'): `<models cache>/<name>`. */
  name?: string;
  /** Write the model here instead of the models cache. */
  out?: string;
  /** Stable Diffusion 1.5 in diffusers layout: `owner/name[@revision]`. */
  base?: string;
  /** CLIP ViT-L/14: `owner/name[@revision]`. */
  imageEncoder?: string;
  /** The FastComposer checkpoint's repo: `owner/name[@revision]`. */
  checkpoint?: string;
  /** The checkpoint repo's revision (branch, tag or commit). */
  revision?: string;
  /** Take pytorch_model.bin from this URL instead of the checkpoint repo. */
  checkpointUrl?: string;
  /** The expected sha256 of the file at checkpointUrl. */
  checkpointSha256?: string;
  /** Download into the caches and stop before the export. */
  downloadOnly?: boolean;
  /** Export even when the model folder already holds an export of the same sources. */
  force?: boolean;
  /** HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE, HF_HOME, HF_HUB_OFFLINE, FASTCOMPOSER_CACHE (default process.env). */
  env?: NodeJS.ProcessEnv;
  onProgress?: (event: PullEvent) => void;
  signal?: AbortSignal;
}

export type PullEvent =
  | { type: 'resolved'; repo: string; revision: string; commit: string; offline: boolean }
  | { type: 'file'; repo?: string; file: string; size: number | undefined; cached: boolean }
  | ({ type: 'progress' } & Omit<FileProgress, 'repo'> & { repo?: string })
  | { type: 'file-done'; repo?: string; file: string; size: number; downloaded: number; cached: boolean }
  | { type: 'export'; stage: string; status: string; done: number; total: number };

export interface PullResult {
  /** The model folder, undefined with downloadOnly. */
  dir: string | undefined;
  name: string;
  /** Local folders and file the export read. */
  base: string;
  imageEncoder: string;
  checkpoint: string;
  /** What model.json records as the source (hf://repo@commit/path, or the URL). */
  source: Record<string, string>;
  /** Bytes fetched over the network by this call. */
  downloaded: number;
  /** False when the folder already held an export of the same sources. */
  exported: boolean;
}

function sameSource(dir: string, source: Record<string, string>): boolean {
  try {
    const manifest = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as { source?: Record<string, unknown> };
    return Object.entries(source).every(([k, v]) => manifest.source?.[k] === v);
  } catch {
    return false;
  }
}

export async function pull(options: PullOptions = {}): Promise<PullResult> {
  if (options === null || typeof options !== 'object') throw invalidArgument('object', 'options', options);
  const env = options.env ?? process.env;
  const name = checkModelName(options.name ?? DEFAULT_MODEL_NAME, 'name');
  if (options.out !== undefined && (typeof options.out !== 'string' || options.out === ''))
    throw invalidArgument('a folder path', 'out', options.out);
  const dir = options.out !== undefined ? resolve(options.out) : modelDirFor(name, env);
  const base = parseRepoRef(options.base ?? DEFAULT_BASE, 'base');
  const imageEncoder = parseRepoRef(options.imageEncoder ?? DEFAULT_IMAGE_ENCODER, 'imageEncoder');
  if (options.checkpointUrl !== undefined) {
    checkUrl(options.checkpointUrl, 'checkpointUrl');
    if (options.checkpoint !== undefined || options.revision !== undefined) {
      throw invalidArgument('no checkpoint repo or revision with checkpointUrl', 'checkpoint', options.checkpoint ?? options.revision);
    }
  }
  const checkpoint =
    options.checkpointUrl === undefined
      ? parseRepoRef(options.checkpoint ?? DEFAULT_CHECKPOINT, 'checkpoint', options.revision)
      : undefined;
  const emit = options.onProgress ?? (() => undefined);
  const signal = options.signal;
  const client: HubClient = hubClient(env);

  // Every question to the hub before any download.
  const plans: RepoPlan[] = [];
  for (const [ref, paths] of [
    [base, BASE_FILES],
    [imageEncoder, IMAGE_ENCODER_FILES],
    ...(checkpoint ? [[checkpoint, CHECKPOINT_FILES] as const] : []),
  ] as const) {
    signal?.throwIfAborted();
    const plan = await planRepo(client, { ...ref, paths: [...paths] });
    emit({ type: 'resolved', repo: plan.repo, revision: plan.revision, commit: plan.commit, offline: plan.offline });
    plans.push(plan);
  }
  const [basePlan, clipPlan, checkpointPlan] = plans as [RepoPlan, RepoPlan, RepoPlan | undefined];
  const source: Record<string, string> = {
    base: hfUri(basePlan.repo, basePlan.commit),
    imageEncoder: hfUri(clipPlan.repo, clipPlan.commit),
    checkpoint: checkpointPlan ? hfUri(checkpointPlan.repo, checkpointPlan.commit, CHECKPOINT_FILE) : options.checkpointUrl!,
  };
  if (client.endpoint !== 'https://huggingface.co') source.endpoint = client.endpoint;

  let downloaded = 0;
  const fetchOptions = {
    onStart: (f: { repo: string; file: string; size: number; cached: boolean }) => emit({ type: 'file', ...f }),
    onProgress: (p: FileProgress) => emit({ type: 'progress', ...p }),
    onDone: (f: { repo: string; file: string; size: number; downloaded: number; cached: boolean }) => {
      downloaded += f.downloaded;
      emit({ type: 'file-done', ...f });
    },
    ...(signal ? { signal } : {}),
  };
  const baseDir = await fetchRepo(client, basePlan, fetchOptions);
  const clipDir = await fetchRepo(client, clipPlan, fetchOptions);
  let checkpointFile: string;
  if (checkpointPlan) {
    checkpointFile = join(await fetchRepo(client, checkpointPlan, fetchOptions), CHECKPOINT_FILE);
  } else {
    const url = options.checkpointUrl!;
    emit({ type: 'file', file: url, size: undefined, cached: false });
    const got = await downloadUrl(url, {
      cacheDir: client.ownCache,
      ...(options.checkpointSha256 ? { sha256: options.checkpointSha256 } : {}),
      onProgress: (p) => emit({ type: 'progress', file: url, ...p }),
      ...(signal ? { signal } : {}),
    });
    downloaded += got.downloaded;
    emit({ type: 'file-done', file: url, size: got.size, downloaded: got.downloaded, cached: got.downloaded === 0 });
    checkpointFile = got.file;
  }
  const result = { name, base: baseDir, imageEncoder: clipDir, checkpoint: checkpointFile, source, downloaded };
  if (options.downloadOnly) return { ...result, dir: undefined, exported: false };
  if (!options.force && existsSync(join(dir, 'model.json')) && sameSource(dir, source)) return { ...result, dir, exported: false };

  await mkdir(dirname(dir), { recursive: true });
  let total = 1;
  let done = 0;
  await runExporter(
    [
      '--checkpoint',
      checkpointFile,
      '--base',
      baseDir,
      '--image-encoder',
      clipDir,
      '--out',
      dir,
      '--name',
      name,
      '--source-json',
      JSON.stringify(source),
    ],
    (event) => {
      if (event.status === 'plan' && Array.isArray(event.stages)) total = event.stages.length;
      if (!event.stage) return;
      if (event.status === 'done') done += 1;
      emit({ type: 'export', stage: String(event.stage), status: String(event.status ?? ''), done, total });
    },
    signal,
  );
  return { ...result, dir, exported: true };
}
