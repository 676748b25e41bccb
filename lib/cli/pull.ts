/**
 * `fastcomposer pull`: the released weights from the Hugging Face Hub (or the checkpoint from a
 * URL) into the shared hub cache, exported into a named model (lib/hub/pull.ts does the work).
 */
import type { Command } from 'commander';

import { AbortError, FastComposerError } from '../errors.js';
import {
  DEFAULT_BASE,
  DEFAULT_CHECKPOINT,
  DEFAULT_IMAGE_ENCODER,
  DEFAULT_MODEL_NAME,
  type PullOptions,
  formatBytes,
  pull,
} from '../hub/index.js';
import { pullReporter } from './download-progress.js';

interface PullFlags {
  name: string;
  out?: string;
  base: string;
  imageEncoder: string;
  checkpoint?: string;
  revision?: string;
  checkpointUrl?: string;
  checkpointSha256?: string;
  downloadOnly?: boolean;
  force?: boolean;
  progress: boolean;
}

export function pullCommand(program: Command): void {
  program
    .command('pull')
    .description('download the released weights (Hugging Face Hub, or a URL for the checkpoint) and export them into a named model')
    .option('--name <name>', 'the model name (`--model <name>` finds it)', DEFAULT_MODEL_NAME)
    .option('-o, --out <dir>', 'write the model here instead of the models cache')
    .option('--base <repo>', 'Stable Diffusion 1.5 repo, owner/name[@revision]', DEFAULT_BASE)
    .option('--image-encoder <repo>', 'CLIP ViT-L/14 repo, owner/name[@revision]', DEFAULT_IMAGE_ENCODER)
    .option('--checkpoint <repo>', `FastComposer checkpoint repo, owner/name[@revision] (default ${DEFAULT_CHECKPOINT})`)
    .option('--revision <rev>', 'revision (branch, tag or commit) of the checkpoint repo')
    .option('--checkpoint-url <url>', 'take pytorch_model.bin from this URL instead (e.g. a mirror)')
    .option('--checkpoint-sha256 <hex>', 'expected sha256 of the file at --checkpoint-url')
    .option('--download-only', 'download into the caches, do not export')
    .option('--force', 'export again even if the model already holds an export of the same files')
    .option('--no-progress', 'no progress bars')
    .action(async (flags: PullFlags) => {
      const reporter = pullReporter(flags.progress && process.stderr.isTTY === true);
      // Ctrl-C stops cleanly: partial downloads stay (the next pull resumes them), the exporter
      // removes its partial output. A second Ctrl-C ends the process at once. (Not `once`: the
      // lock library's exit hook re-raises a signal that it finds no other listener for.)
      const controller = new AbortController();
      const onSigint = (): void => {
        if (controller.signal.aborted) process.exit(130);
        controller.abort(new Error('interrupted'));
      };
      process.on('SIGINT', onSigint);
      const options: PullOptions = {
        name: flags.name,
        base: flags.base,
        imageEncoder: flags.imageEncoder,
        onProgress: (event) => reporter.onEvent(event),
        signal: controller.signal,
      };
      const set = <K extends keyof PullOptions>(key: K, value: PullOptions[K] | undefined): void => {
        if (value !== undefined) options[key] = value;
      };
      set('out', flags.out);
      set('checkpoint', flags.checkpoint);
      set('revision', flags.revision);
      set('checkpointUrl', flags.checkpointUrl);
      set('checkpointSha256', flags.checkpointSha256);
      set('downloadOnly', flags.downloadOnly);
      set('force', flags.force);
      try {
        const result = await pull(options);
        reporter.stop();
        const fetched = result.downloaded > 0 ? `downloaded ${formatBytes(result.downloaded)}` : 'nothing to download';
        if (!result.dir) {
          process.stderr.write(`${fetched}; the export reads:\n`);
          process.stdout.write(`--checkpoint ${result.checkpoint} --base ${result.base} --image-encoder ${result.imageEncoder}\n`);
          return;
        }
        const done = result.exported ? 'exported' : 'already exported from the same files';
        const model = flags.out ? result.dir : result.name;
        process.stderr.write(`${fetched}; ${done}. Use it with: npx fastcomposer generate --model ${model} ...\n`);
        process.stdout.write(`${result.dir}\n`);
      } catch (error) {
        if (error instanceof AbortError) throw new FastComposerError('ERR_ABORTED', 'interrupted; run the same command again to resume');
        throw error;
      } finally {
        reporter.stop();
        process.removeListener('SIGINT', onSigint);
      }
    });
}
