/**
 * Where downloads come from and go to, read from the environment the way Python's
 * huggingface_hub reads it, so that both tools share one cache and one login.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

type Env = NodeJS.ProcessEnv;

const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** A variable's value, or undefined when unset or blank; a leading `~/` is the home folder, as in Python. */
function set(value: string | undefined): string | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  return value === '~' || value.startsWith('~/') ? join(homedir(), value.slice(1)) : value;
}

function xdgCache(env: Env): string {
  return set(env.XDG_CACHE_HOME) ?? join(homedir(), '.cache');
}

/** `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`. */
export function hfHome(env: Env = process.env): string {
  return set(env.HF_HOME) ?? join(xdgCache(env), 'huggingface');
}

/** The hub cache: `HF_HUB_CACHE` (or the older `HUGGINGFACE_HUB_CACHE`), else `<HF_HOME>/hub`. */
export function hubCacheDir(env: Env = process.env): string {
  return set(env.HF_HUB_CACHE) ?? set(env.HUGGINGFACE_HUB_CACHE) ?? join(hfHome(env), 'hub');
}

/** `HF_ENDPOINT` (a mirror or a local server), else the Hugging Face Hub; no trailing slash. */
export function hubEndpoint(env: Env = process.env): string {
  return (set(env.HF_ENDPOINT) ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

/**
 * The access token: `HF_TOKEN` (or the older `HUGGING_FACE_HUB_TOKEN`), else the file that
 * `huggingface-cli login` / `hf auth login` writes (`HF_TOKEN_PATH`, default `<HF_HOME>/token`).
 */
export function hubToken(env: Env = process.env): string | undefined {
  const fromEnv = set(env.HF_TOKEN) ?? set(env.HUGGING_FACE_HUB_TOKEN);
  if (fromEnv) return fromEnv.trim();
  try {
    return set(readFileSync(set(env.HF_TOKEN_PATH) ?? join(hfHome(env), 'token'), 'utf8'))?.trim();
  } catch {
    return undefined;
  }
}

/** `HF_HUB_OFFLINE=1`: use what the cache holds and never call the hub. */
export function hubOffline(env: Env = process.env): boolean {
  return ['1', 'on', 'yes', 'true'].includes((env.HF_HUB_OFFLINE ?? '').trim().toLowerCase());
}

/**
 * fastcomposer's own cache: `FASTCOMPOSER_CACHE`, else `$XDG_CACHE_HOME/fastcomposer`, else
 * `~/.cache/fastcomposer`. Exported models live in its `models/<name>`, plain-URL downloads in
 * `downloads/`. It is kept apart from the hub cache, whose layout belongs to huggingface_hub.
 */
export function fastcomposerCacheDir(env: Env = process.env): string {
  return set(env.FASTCOMPOSER_CACHE) ?? join(xdgCache(env), 'fastcomposer');
}

/** The folder of named models (`FastComposer.load('fastcomposer')`, `--model fastcomposer`). */
export function modelsDir(env: Env = process.env): string {
  return join(fastcomposerCacheDir(env), 'models');
}
