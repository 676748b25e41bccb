/**
 * `fastcomposer export`: runs the Python exporter (exporter/fastcomposer_export) with the
 * Python that has torch, and turns its JSON-lines progress into a progress bar.
 */
import type { Command } from 'commander';

import { FastComposerError } from '../errors.js';
import { runExporter } from '../python.js';
import { progressBar } from './progress.js';

interface ExportFlags {
  checkpoint?: string;
  base?: string;
  imageEncoder?: string;
  out: string;
  tiny?: boolean;
  preset?: string;
  progress: boolean;
}

export function exportCommand(program: Command): void {
  program
    .command('export')
    .description('convert the released FastComposer weights into a model directory (TorchScript)')
    .option('--checkpoint <file>', "FastComposer's pytorch_model.bin")
    .option('--base <dir>', 'the Stable Diffusion 1.5 folder (diffusers layout)')
    .option('--image-encoder <dir>', 'the CLIP ViT-L/14 folder (its config.json)')
    .option('--tiny', 'make the tiny random test model instead')
    .option('--preset <name>', 'make a random model of a preset size instead (sd15-random)')
    .requiredOption('-o, --out <dir>', 'the model directory to write')
    .option('--no-progress', 'no progress bar')
    .action(async (flags: ExportFlags) => {
      const args = ['--out', flags.out];
      if (flags.tiny) args.push('--tiny');
      else if (flags.preset) args.push('--preset', flags.preset);
      else {
        for (const [flag, value] of [
          ['--checkpoint', flags.checkpoint],
          ['--base', flags.base],
          ['--image-encoder', flags.imageEncoder],
        ] as const) {
          if (!value) throw new FastComposerError('ERR_INVALID_ARGUMENT', `${flag} is required (or --tiny)`);
          args.push(flag, value);
        }
      }
      const bar = progressBar(flags.progress && process.stderr.isTTY === true);
      // The exporter announces its stages first ({"status":"plan","stages":[...]}), then reports each.
      let total = 1;
      let done = 0;
      try {
        await runExporter(args, (event) => {
          if (event.status === 'plan' && Array.isArray(event.stages)) total = event.stages.length;
          if (!event.stage) return;
          if (event.status === 'done') done += 1;
          bar.update(Math.min(done, total), total, `export: ${String(event.stage)} ${String(event.status ?? '')}`.trim());
        });
      } finally {
        bar.stop();
      }
      process.stdout.write(`${flags.out}\n`);
    });
}
