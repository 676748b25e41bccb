/**
 * The hub cache in the layout of Python's huggingface_hub, so that files either tool downloaded
 * serve the other:
 *
 *   <cache>/models--<owner>--<name>/
 *     blobs/<etag>                      the content (etag: sha256 for LFS files, git sha1 otherwise)
 *     blobs/<etag>.incomplete           a download under way (resumable)
 *     refs/<revision>                   the commit a branch or tag pointed to (no newline)
 *     snapshots/<commit>/<path>         relative symlink to ../../blobs/<etag>
 */
import { mkdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';

import { invalidArgument } from '../errors.js';

const REPO_ID = /^[A-Za-z0-9][\w.-]{0,95}\/[A-Za-z0-9][\w.-]{0,95}$/;
const COMMIT = /^[0-9a-f]{40}$/;
const ETAG = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** Checks an `owner/name` repo id (the hub's rules: no `--` or `..`, at most 96 characters a part). */
export function checkRepoId(repo: unknown, name = 'repo'): string {
  if (typeof repo !== 'string' || !REPO_ID.test(repo) || repo.includes('--') || repo.includes('..') || /[.-]$/.test(repo)) {
    throw invalidArgument('a hub repository id "owner/name"', name, repo);
  }
  return repo;
}

/** Checks a revision (branch, tag, commit, or refs/pr/N): it becomes a path under refs/. */
export function checkRevision(revision: unknown, name = 'revision'): string {
  if (
    typeof revision !== 'string' ||
    revision.length === 0 ||
    revision.length > 255 ||
    revision.startsWith('/') ||
    revision.split('/').some((part) => part === '' || part === '.' || part === '..') ||
    /[\s\\:~^?*[\]]/.test(revision)
  ) {
    throw invalidArgument('a git branch, tag or commit', name, revision);
  }
  return revision;
}

export const isCommit = (s: string): boolean => COMMIT.test(s);
export const isEtag = (s: string): boolean => ETAG.test(s);

export class HubCache {
  constructor(readonly dir: string) {}

  repoDir(repo: string): string {
    return join(this.dir, `models--${checkRepoId(repo).replace('/', '--')}`);
  }

  blob(repo: string, etag: string): string {
    if (!isEtag(etag)) throw new Error(`not a content hash: ${etag}`);
    return join(this.repoDir(repo), 'blobs', etag);
  }

  snapshotDir(repo: string, commit: string): string {
    if (!isCommit(commit)) throw new Error(`not a commit hash: ${commit}`);
    return join(this.repoDir(repo), 'snapshots', commit);
  }

  snapshotFile(repo: string, commit: string, path: string): string {
    return join(this.snapshotDir(repo, commit), ...path.split('/'));
  }

  /** Where our own lock for a blob lives (Python's .locks/<repo>/<etag>.lock is a file we leave alone). */
  lockFile(repo: string, etag: string): string {
    return join(this.dir, '.locks', `models--${repo.replace('/', '--')}`, `${etag}.fastcomposer`);
  }

  /** The commit a revision pointed to when last resolved, if this cache knows it. */
  async readRef(repo: string, revision: string): Promise<string | undefined> {
    if (isCommit(revision)) return revision;
    try {
      const commit = (await readFile(join(this.repoDir(repo), 'refs', ...checkRevision(revision).split('/')), 'utf8')).trim();
      return isCommit(commit) ? commit : undefined;
    } catch {
      return undefined;
    }
  }

  async writeRef(repo: string, revision: string, commit: string): Promise<void> {
    if (revision === commit || !isCommit(commit)) return;
    const file = join(this.repoDir(repo), 'refs', ...checkRevision(revision).split('/'));
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, commit);
  }

  /** The snapshot path of a file when it is there and whole (`size` when known), else undefined. */
  async cached(repo: string, commit: string, path: string, size?: number): Promise<string | undefined> {
    const file = this.snapshotFile(repo, commit, path);
    try {
      const s = await stat(file); // follows the symlink to the blob
      if (!s.isFile() || (size !== undefined && s.size !== size)) return undefined;
      return file;
    } catch {
      return undefined;
    }
  }

  /** Whether a blob is there with the expected size. */
  async hasBlob(repo: string, etag: string, size: number): Promise<boolean> {
    try {
      const s = await stat(this.blob(repo, etag));
      return s.isFile() && s.size === size;
    } catch {
      return false;
    }
  }

  /** Points snapshots/<commit>/<path> at blobs/<etag> with a relative symlink, as Python does. */
  async link(repo: string, commit: string, path: string, etag: string): Promise<string> {
    const pointer = this.snapshotFile(repo, commit, path);
    const target = relative(dirname(pointer), this.blob(repo, etag));
    await mkdir(dirname(pointer), { recursive: true });
    try {
      if ((await readlink(pointer)) === target) return pointer;
    } catch {
      // absent, or not a link
    }
    await rm(pointer, { force: true }); // a stale link or a copy
    await symlink(target, pointer);
    return pointer;
  }
}
