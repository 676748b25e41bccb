/**
 * The released FastComposer as three hub repos, and exactly the files of each that the exporter
 * reads (exporter/fastcomposer_export/cli.py Configs, tokenizer.py, checkpoint.py): the SD1.5
 * folder's configs and tokenizer (its weights are superseded by the checkpoint's), CLIP
 * ViT-L/14's config.json, and FastComposer's pytorch_model.bin.
 */
import { invalidArgument } from '../errors.js';
import { checkRepoId, checkRevision } from './hub-cache.js';

/**
 * runwayml/stable-diffusion-v1-5, which the FastComposer and MMagic code name, was taken down
 * from the hub; this is the copy the diffusers documentation points to now (same files).
 */
export const DEFAULT_BASE = 'stable-diffusion-v1-5/stable-diffusion-v1-5';
export const DEFAULT_IMAGE_ENCODER = 'openai/clip-vit-large-patch14';
export const DEFAULT_CHECKPOINT = 'mit-han-lab/fastcomposer';
export const DEFAULT_MODEL_NAME = 'fastcomposer';
export const CHECKPOINT_FILE = 'pytorch_model.bin';

export const BASE_FILES = [
  'text_encoder/config.json',
  'unet/config.json',
  'vae/config.json',
  'scheduler/scheduler_config.json',
  'tokenizer/vocab.json',
  'tokenizer/merges.txt',
];
export const IMAGE_ENCODER_FILES = ['config.json'];
export const CHECKPOINT_FILES = [CHECKPOINT_FILE];

export interface RepoRef {
  repo: string;
  revision: string;
}

/** `owner/name` or `owner/name@revision` (revision default: main, or `revision` when given). */
export function parseRepoRef(value: unknown, name: string, revision?: string): RepoRef {
  if (typeof value !== 'string') throw invalidArgument('a hub repository id "owner/name[@revision]"', name, value);
  const at = value.indexOf('@');
  const repo = checkRepoId(at < 0 ? value : value.slice(0, at), name);
  const rev = at < 0 ? (revision ?? 'main') : value.slice(at + 1);
  if (at >= 0 && revision !== undefined && revision !== rev) {
    throw invalidArgument(`one revision (${name} says @${rev})`, 'revision', revision);
  }
  return { repo, revision: checkRevision(rev, `${name} revision`) };
}

/** `hf://owner/name@commit[/path]`, the form huggingface_hub's file system uses: recorded in model.json. */
export function hfUri(repo: string, commit: string, path?: string): string {
  return `hf://${repo}@${commit}${path ? `/${path}` : ''}`;
}
