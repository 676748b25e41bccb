/** `fastcomposer info`: torch, binary, devices, and a model's summary. */
import type { Command } from 'commander';

import { readModelDir } from '../model-dir.js';
import { defaultModelDir } from '../paths.js';
import { runtimeInfo } from '../runtime-info.js';

export function infoCommand(program: Command): void {
  program
    .command('info')
    .description('show the torch in use, the native binary, CUDA devices and a model summary')
    .option('-m, --model <name|dir>', 'model to summarise: a pulled model\'s name or a folder', defaultModelDir)
    .option('--json', 'print JSON')
    .action(async (flags: { model: string; json?: boolean }) => {
      const runtime = runtimeInfo();
      let model: Record<string, unknown> | string;
      try {
        const dir = await readModelDir(flags.model);
        const { manifest } = dir;
        model = {
          dir: dir.dir,
          name: manifest.name,
          formatVersion: manifest.version,
          textHiddenSize: manifest.textHiddenSize,
          latentScale: manifest.latentScale,
          scheduler: dir.schedulerConfig._class_name,
        };
      } catch (error) {
        model = `unavailable: ${(error as Error).message}`;
      }
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ ...runtime, model }, null, 2)}\n`);
        return;
      }
      const lines = [
        `torch          ${runtime.torchVersion} (${runtime.torchSource}: ${runtime.torchRoot})`,
        `binary         ${runtime.addonPath} (built against torch ${runtime.builtAgainst})`,
        `cuda devices   ${runtime.cudaDevices}`,
        `cpu threads    ${runtime.threads}`,
        `model          ${typeof model === 'string' ? model : JSON.stringify(model)}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
