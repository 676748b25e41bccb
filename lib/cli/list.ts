/** `fastcomposer list`: the named models in the models cache, with their sizes and sources. */
import type { Command } from 'commander';

import { formatBytes, listModels, modelsDir } from '../hub/index.js';

/** hf://owner/name@<40 hex>[/file] -> owner/name@<12 hex>[ file]; anything else as it is. */
function shortSource(value: unknown): string {
  if (typeof value !== 'string') return String(value);
  const m = /^hf:\/\/([^@]+)@([0-9a-f]{40})(?:\/(.+))?$/.exec(value);
  return m ? `${m[1]}@${m[2]!.slice(0, 12)}${m[3] ? ` ${m[3]}` : ''}` : value;
}

export function listCommand(program: Command): void {
  program
    .command('list')
    .description('show the models `fastcomposer pull` exported (use them with --model <name>)')
    .option('--json', 'print JSON')
    .action(async (flags: { json?: boolean }) => {
      const models = await listModels();
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(models, null, 2)}\n`);
        return;
      }
      if (models.length === 0) {
        process.stdout.write(`No models in ${modelsDir()}; get the released one with \`npx fastcomposer pull\`\n`);
        return;
      }
      const width = Math.max(...models.map((m) => m.name.length));
      const lines: string[] = [];
      for (const m of models) {
        lines.push(`${m.name.padEnd(width)}  ${formatBytes(m.size).padStart(8)}  ${m.weightsDtype ?? '?'}  ${m.dir}`);
        for (const [key, title] of [
          ['checkpoint', 'checkpoint'],
          ['base', 'base'],
          ['imageEncoder', 'image encoder'],
          ['preset', 'preset'],
          ['endpoint', 'from'],
        ] as const) {
          if (m.source[key] !== undefined && m.source[key] !== null)
            lines.push(`${' '.repeat(width)}  ${title.padEnd(13)} ${shortSource(m.source[key])}`);
        }
      }
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
