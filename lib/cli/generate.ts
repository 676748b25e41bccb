/** `fastcomposer generate`: one generate() on a model (default: the embedded tiny one), to a file. */
import { extname } from 'node:path';

import type { Command } from 'commander';

import { FastComposer } from '../fastcomposer.js';
import type { DeviceSpec, GenerateOptions, ImageToken, ModelDType, SchedulerName } from '../options.js';
import { defaultModelDir } from '../paths.js';
import { progressBar } from './progress.js';

interface GenerateFlags {
  model: string;
  prompt: string;
  subject: string[];
  negative?: string;
  steps?: string;
  guidance?: string;
  alpha?: string;
  seed?: string;
  width?: string;
  height?: string;
  scheduler?: string;
  numImages?: string;
  imageToken?: string;
  device: string;
  dtype: string;
  out: string;
  progress: boolean;
  verifyHashes?: boolean;
}

function number(flag: string | undefined): number | undefined {
  return flag === undefined ? undefined : Number(flag);
}

function outPath(out: string, index: number, count: number): string {
  if (count === 1) return out;
  const ext = extname(out);
  return `${out.slice(0, out.length - ext.length)}-${index}${ext}`;
}

export function generateCommand(program: Command): void {
  program
    .command('generate')
    .description('generate an image; subjects are marked in the prompt with <|image|> (or img) after their noun')
    .requiredOption('-p, --prompt <text>', 'the prompt, e.g. "a man <|image|> in a park"')
    .option('-s, --subject <file>', 'a subject picture, once per <|image|> in prompt order', (v: string, acc: string[]) => [...acc, v], [])
    .option(
      '-m, --model <name|dir>',
      "a pulled model's name (`fastcomposer list`) or a model folder; the default is the embedded tiny model",
      defaultModelDir,
    )
    .option('--image-token <token>', "the subject marker: <|image|> (default) or img (MMagic's prompts)")
    .option('-n, --negative <text>', 'negative prompt')
    .option('--steps <n>', 'denoising steps (default 50)')
    .option('--guidance <g>', 'classifier-free guidance scale (default 5)')
    .option('--alpha <a>', 'share of steps conditioned on the subjects (default 0.7)')
    .option('--seed <n>', 'random seed (default: drawn and printed)')
    .option('--width <px>', 'width, a multiple of 8 (default 512)')
    .option('--height <px>', 'height, a multiple of 8 (default 512)')
    .option('--scheduler <name>', 'pndm | ddim | euler | euler-ancestral | dpmpp-2m (default pndm)')
    .option('--num-images <n>', 'images to generate (default 1)')
    .option('--device <d>', 'cpu | cuda | cuda:N | auto', 'auto')
    .option('--dtype <t>', 'float32 | float16 | bfloat16', 'float32')
    .option('-o, --out <file>', 'output image (.png, .jpg, .webp); numbered when several', 'out.png')
    .option('--verify-hashes', "check every model file's SHA-256 against model.json before loading (sizes are always checked)")
    .option('--no-progress', 'no progress bar')
    .action(async (flags: GenerateFlags) => {
      const fc = await FastComposer.load(flags.model, {
        device: flags.device as DeviceSpec,
        dtype: flags.dtype as ModelDType,
        verifyHashes: flags.verifyHashes === true,
      });
      const bar = progressBar(flags.progress && process.stderr.isTTY === true);
      try {
        const opts: GenerateOptions = {
          prompt: flags.prompt,
          subjects: flags.subject,
          onStep: ({ step, steps }) => bar.update(step, steps, 'denoising'),
        };
        const set = <K extends keyof GenerateOptions>(key: K, value: GenerateOptions[K] | undefined): void => {
          if (value !== undefined) opts[key] = value;
        };
        set('negativePrompt', flags.negative);
        set('steps', number(flags.steps));
        set('guidanceScale', number(flags.guidance));
        set('alpha', number(flags.alpha));
        set('seed', number(flags.seed));
        set('width', number(flags.width));
        set('height', number(flags.height));
        set('scheduler', flags.scheduler as SchedulerName | undefined);
        set('numImages', number(flags.numImages));
        set('imageToken', flags.imageToken as ImageToken | undefined);
        const result = await fc.generate(opts);
        bar.stop();
        for (const [i, image] of result.images.entries()) {
          const file = outPath(flags.out, i, result.images.length);
          await image.save(file);
          process.stdout.write(`${file} (${image.width}x${image.height}, seed ${result.seed})\n`);
        }
        for (const warning of result.warnings) process.stderr.write(`warning: ${warning}\n`);
      } finally {
        bar.stop();
        await fc.dispose();
      }
    });
}
