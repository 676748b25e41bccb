/**
 * What the stage API (encodeSubjects, encodePrompt, denoise, decode) checks of its inputs that
 * are not options: the encodePrompt() arguments and the tensors handed from one stage to the next,
 * against the model's sizes. The options of denoise() are checked in options.ts, the subjects of
 * encodeSubjects() there too.
 */
import { float32Tensor, string } from './checks.js';
import { invalidArgument } from './errors.js';
import { isInteger, isRecord } from './is.js';
import type { ModelManifest } from './model-dir.js';
import { type ImageToken, imageTokenOption } from './options.js';
import type { Tensor } from './tensor.js';

export interface PromptArgs {
  prompt: string;
  negativePrompt: string;
  subjectEmbeds: unknown;
  signal: unknown;
  imageToken: ImageToken;
}

/** encodePrompt()'s argument object: the prompt and negative prompt are strings; the rest is checked by its user. */
export function promptArgs(args: unknown): PromptArgs {
  if (!isRecord(args)) throw invalidArgument('object {prompt, negativePrompt?, subjectEmbeds?}', 'arguments', args);
  const prompt = string(args.prompt, 'prompt');
  const negativePrompt = string(args.negativePrompt ?? '', 'negativePrompt');
  return { prompt, negativePrompt, subjectEmbeds: args.subjectEmbeds, signal: args.signal, imageToken: imageTokenOption(args.imageToken) };
}

/** encodeSubjects()'s output for a prompt with `count` subject tokens: float32 [count, objectEmbedSize]. */
export function subjectEmbeds(value: unknown, count: number, manifest: ModelManifest): Tensor {
  const size = manifest.objectEmbedSize ?? 'D';
  if (value === undefined) throw invalidArgument(`float32 tensor [${count}, ${size}] from encodeSubjects()`, 'subjectEmbeds', value);
  float32Tensor(value, 'subjectEmbeds', [count, size]);
  return value as Tensor;
}

/** encodePrompt()'s output as denoise() takes it: three float32 [1, maxLength, D] tensors and the subject positions. */
export function promptEmbeddings(
  embeds: unknown,
  manifest: ModelManifest,
): { fused: Tensor; textOnly: Tensor; negative: Tensor; subjectPositions: number[] } {
  if (!isRecord(embeds)) throw invalidArgument('PromptEmbeddings from encodePrompt()', 'embeds', embeds);
  const { maxLength } = manifest;
  const width = float32Tensor(embeds.fused, 'embeds.fused', [1, maxLength, manifest.textHiddenSize ?? 'D'])[2]!;
  float32Tensor(embeds.textOnly, 'embeds.textOnly', [1, maxLength, width]);
  float32Tensor(embeds.negative, 'embeds.negative', [1, maxLength, width]);
  const positions = embeds.subjectPositions ?? [];
  if (!Array.isArray(positions) || positions.some((p) => !isInteger(p, 0, maxLength - 1))) {
    throw invalidArgument(`array of integers between 0 and ${maxLength - 1}`, 'embeds.subjectPositions', positions);
  }
  return {
    fused: embeds.fused as Tensor,
    textOnly: embeds.textOnly as Tensor,
    negative: embeds.negative as Tensor,
    subjectPositions: positions as number[],
  };
}

/** decode()'s input: float32 [N, latentChannels, h, w]. */
export function latentsToDecode(latents: unknown, manifest: ModelManifest): Tensor {
  float32Tensor(latents, 'latents', ['N', manifest.latentChannels, 'h', 'w']);
  return latents as Tensor;
}
