/**
 * A few files of one hub repo into the shared hub cache: resolve the revision to a commit, reuse
 * what the cache already holds (from us or from Python's huggingface_hub), download the rest with
 * checks, and link each into snapshots/<commit>/ as Python does.
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

import { FastComposerError } from '../errors.js';
import { DownloadError } from './errors.js';
import { type HubClient, type HubFileInfo, filesInfo, resolveCommit, resolveUrl } from './hub-api.js';
import { transfer } from './transfer.js';

export interface RepoRequest {
  repo: string;
  revision: string;
  paths: string[];
}

export interface PlannedFile {
  path: string;
  /** Undefined when offline (the cached file is used as it is). */
  info: HubFileInfo | undefined;
  /** The snapshot path when the cache already holds the file whole. */
  cached: string | undefined;
}

export interface RepoPlan extends RepoRequest {
  commit: string;
  files: PlannedFile[];
  /** Set when the hub could not be asked and the cache served instead. */
  offline: boolean;
}

export interface FileProgress {
  repo: string;
  file: string;
  bytes: number;
  total: number | undefined;
  resumedFrom: number;
}

export interface FetchOptions {
  onStart?: (file: { repo: string; file: string; size: number; cached: boolean }) => void;
  onProgress?: (progress: FileProgress) => void;
  onDone?: (file: { repo: string; file: string; size: number; downloaded: number; cached: boolean }) => void;
  signal?: AbortSignal;
}

/** Answers from the cache alone: the commit the revision last pointed to and every file in its snapshot. */
async function planFromCache(client: HubClient, request: RepoRequest): Promise<RepoPlan | undefined> {
  const commit = await client.cache.readRef(request.repo, request.revision);
  if (!commit) return undefined;
  const files: PlannedFile[] = [];
  for (const path of request.paths) {
    const cached = await client.cache.cached(request.repo, commit, path);
    if (!cached) return undefined;
    files.push({ path, info: undefined, cached });
  }
  return { ...request, commit, files, offline: true };
}

/**
 * What there is to do for a repo, without downloading: the commit, each file's size and hashes,
 * and which files the cache already has. Offline (HF_HUB_OFFLINE=1, or the hub unreachable) the
 * cache alone answers, when it can.
 */
export async function planRepo(client: HubClient, request: RepoRequest): Promise<RepoPlan> {
  if (client.offline) {
    const plan = await planFromCache(client, request);
    if (plan) return plan;
    throw new DownloadError(
      'ERR_NETWORK',
      `HF_HUB_OFFLINE is set and the hub cache (${client.cache.dir}) lacks ${request.repo}@${request.revision} files ${request.paths.join(', ')}`,
      { repo: request.repo },
    );
  }
  let commit: string;
  try {
    commit = await resolveCommit(client, request.repo, request.revision);
  } catch (error) {
    if (error instanceof FastComposerError && error.code === 'ERR_NETWORK') {
      const plan = await planFromCache(client, request);
      if (plan) return plan;
    }
    throw error;
  }
  const infos = await filesInfo(client, request.repo, commit, request.paths);
  const files: PlannedFile[] = [];
  for (const path of request.paths) {
    const info = infos.get(path)!;
    files.push({ path, info, cached: await client.cache.cached(request.repo, commit, path, info.size) });
  }
  return { ...request, commit, files, offline: false };
}

/** Fetches what a plan lacks; returns the snapshot folder (every requested path is there). */
export async function fetchRepo(client: HubClient, plan: RepoPlan, options: FetchOptions = {}): Promise<string> {
  const { repo, commit } = plan;
  if (!plan.offline) await client.cache.writeRef(repo, plan.revision, commit);
  for (const file of plan.files) {
    if (file.cached) {
      const size = file.info?.size ?? (await stat(file.cached)).size;
      options.onStart?.({ repo, file: file.path, size, cached: true });
      options.onDone?.({ repo, file: file.path, size, downloaded: 0, cached: true });
      continue;
    }
    const info = file.info!;
    if (await client.cache.hasBlob(repo, info.etag, info.size)) {
      // The content is there under another snapshot (another revision, or Python's download).
      await client.cache.link(repo, commit, file.path, info.etag);
      options.onStart?.({ repo, file: file.path, size: info.size, cached: true });
      options.onDone?.({ repo, file: file.path, size: info.size, downloaded: 0, cached: true });
      continue;
    }
    options.onStart?.({ repo, file: file.path, size: info.size, cached: false });
    const downloaded = await withLock(client, repo, info.etag, async () => {
      if (await client.cache.hasBlob(repo, info.etag, info.size)) return 0; // another process finished it meanwhile
      const result = await transfer({
        url: resolveUrl(client, repo, commit, file.path),
        dest: client.cache.blob(repo, info.etag),
        expected: info,
        headers: client.token ? { authorization: `Bearer ${client.token}` } : {},
        context: { repo, file: file.path, revision: commit, withToken: client.token !== undefined, endpoint: client.endpoint },
        ...(options.signal ? { signal: options.signal } : {}),
        onProgress: (p) => options.onProgress?.({ repo, file: file.path, ...p }),
      });
      return result.downloaded;
    });
    await client.cache.link(repo, commit, file.path, info.etag);
    options.onDone?.({ repo, file: file.path, size: info.size, downloaded, cached: false });
  }
  return client.cache.snapshotDir(repo, commit);
}

/** One download of a blob at a time across fastcomposer processes (a second one waits, then finds it there). */
async function withLock<T>(client: HubClient, repo: string, etag: string, work: () => Promise<T>): Promise<T> {
  const file = client.cache.lockFile(repo, etag);
  await mkdir(dirname(file), { recursive: true });
  // Loaded here, not at the top: it installs exit and signal handlers (to drop its locks) as it
  // loads, which a program that only loads models should not get.
  const { default: lockfile } = await import('proper-lockfile');
  const release = await lockfile.lock(file, {
    realpath: false,
    stale: 30_000,
    update: 10_000,
    retries: { forever: true, minTimeout: 1000, maxTimeout: 5000 }, // as long as the other download takes
    // A lock lost to a stalled clock only lets another process start the same download; the
    // checks at the end still hold, so it is no reason to crash (the default throws).
    onCompromised: () => undefined,
  });
  try {
    return await work();
  } finally {
    await release().catch(() => undefined);
  }
}
