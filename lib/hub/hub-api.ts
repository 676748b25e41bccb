/**
 * What the hub knows about a repo, asked through @huggingface/hub: the commit a revision points
 * to (modelInfo, as Python's snapshot_download does) and each file's size and content hashes
 * (pathsInfo). The library is loaded on first use: most programs that load a model never call
 * the hub.
 */
import type { PathInfo } from '@huggingface/hub';

import { DownloadError } from './errors.js';
import { HubCache, isCommit, isEtag } from './hub-cache.js';
import { hubFetch } from './http.js';
import { fastcomposerCacheDir, hubCacheDir, hubEndpoint, hubOffline, hubToken } from './settings.js';

export interface HubClient {
  endpoint: string;
  token: string | undefined;
  cache: HubCache;
  offline: boolean;
  /** fastcomposer's own cache (plain-URL downloads, named models). */
  ownCache: string;
}

/** The client for an environment (HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE, HF_HUB_OFFLINE, ...). */
export function hubClient(env: NodeJS.ProcessEnv = process.env): HubClient {
  return {
    endpoint: hubEndpoint(env),
    token: hubToken(env),
    cache: new HubCache(hubCacheDir(env)),
    offline: hubOffline(env),
    ownCache: fastcomposerCacheDir(env),
  };
}

export interface HubFileInfo {
  path: string;
  size: number;
  /** The cache's blob name: the sha256 for LFS files, the git blob sha1 otherwise (Python's etag). */
  etag: string;
  sha256?: string;
  gitSha1?: string;
}

type HubLibrary = typeof import('@huggingface/hub');
let library: Promise<HubLibrary> | undefined;
const hub = (): Promise<HubLibrary> => (library ??= import('@huggingface/hub'));

function credentials(client: HubClient): { accessToken?: string } {
  if (!client.token) return {};
  if (!client.token.startsWith('hf_')) {
    throw new DownloadError(
      'ERR_HUB_AUTH',
      'HF_TOKEN (or the saved login) does not look like a Hugging Face access token (they start with hf_)',
    );
  }
  return { accessToken: client.token };
}

function context(client: HubClient, repo: string, revision: string) {
  return { repo, revision, withToken: client.token !== undefined, endpoint: client.endpoint };
}

/** The commit hash `revision` (a branch, tag or commit) points to now. */
export async function resolveCommit(client: HubClient, repo: string, revision: string): Promise<string> {
  const { modelInfo } = await hub();
  const info = await modelInfo({
    name: repo,
    revision,
    additionalFields: ['sha'],
    hubUrl: client.endpoint,
    fetch: hubFetch(context(client, repo, revision)),
    ...credentials(client),
  });
  const sha = (info as { sha?: unknown }).sha;
  if (typeof sha !== 'string' || !isCommit(sha)) {
    throw new DownloadError('ERR_NETWORK', `${client.endpoint} gave no commit hash for ${repo} at ${revision}`, { repo });
  }
  return sha;
}

/** Size and hashes of each path at a commit; a path the repo lacks is ERR_HUB_NOT_FOUND. */
export async function filesInfo(client: HubClient, repo: string, commit: string, paths: string[]): Promise<Map<string, HubFileInfo>> {
  const { pathsInfo } = await hub();
  const entries: PathInfo[] = await pathsInfo({
    repo: { type: 'model', name: repo },
    paths,
    revision: commit,
    hubUrl: client.endpoint,
    fetch: hubFetch(context(client, repo, commit)),
    ...credentials(client),
  });
  const out = new Map<string, HubFileInfo>();
  for (const entry of entries) {
    if (entry.type !== 'file' || !paths.includes(entry.path)) continue;
    const etag = entry.lfs?.oid ?? entry.oid;
    const size = entry.lfs?.size ?? entry.size;
    if (typeof etag !== 'string' || !isEtag(etag) || !Number.isSafeInteger(size) || size < 0) {
      throw new DownloadError('ERR_NETWORK', `${client.endpoint} described ${repo}, file ${entry.path} without a valid size and hash`, {
        repo,
        file: entry.path,
      });
    }
    out.set(entry.path, entry.lfs ? { path: entry.path, size, etag, sha256: etag } : { path: entry.path, size, etag, gitSha1: etag });
  }
  for (const path of paths) {
    if (!out.has(path)) {
      throw new DownloadError('ERR_HUB_NOT_FOUND', `${repo} has no file ${path} at commit ${commit}`, { repo, file: path, status: 404 });
    }
  }
  return out;
}

/** The download URL of a file at a commit (the hub redirects LFS files to its CDN). */
export function resolveUrl(client: HubClient, repo: string, commit: string, path: string): string {
  return `${client.endpoint}/${repo}/resolve/${commit}/${path.split('/').map(encodeURIComponent).join('/')}`;
}
