/** `fastcomposer info`: torch, binary, devices, and a model's summary; `--verify` checks the model's files and code. */
import type { Command } from 'commander';

import { FastComposer } from '../fastcomposer.js';
import { readModelDir } from '../model-dir.js';
import type { FileCheck } from '../model-files.js';
import { defaultModelDir } from '../paths.js';
import { runtimeInfo } from '../runtime-info.js';
import type { ModelVerification } from '../verify.js';

function fileLine(f: FileCheck): string {
  switch (f.status) {
    case 'ok':
      return `  ok          ${f.file} (${f.size} bytes, sha256 ${f.sha256})`;
    case 'missing':
      return `  MISSING     ${f.file}`;
    case 'unrecorded':
      return `  UNRECORDED  ${f.file}: model.json records no size or SHA-256 for it (sha256 ${f.sha256})`;
    case 'size-mismatch':
      return `  MISMATCH    ${f.file}: ${f.size} bytes, model.json records ${f.expectedSize}`;
    case 'hash-mismatch':
      return `  MISMATCH    ${f.file}: sha256 ${f.sha256}, model.json records ${f.expectedSha256}`;
  }
}

function verificationLines(v: ModelVerification): string[] {
  return [
    `verify         ${v.dir}`,
    `  model.json  sha256 ${v.manifestSha256} (compare with the publisher's; it pins every file below)`,
    ...v.files.map(fileLine),
    ...v.modules.map((m) =>
      m.error === undefined
        ? `  code ok     ${m.file}: ${m.operators!.length} operators, all allowed`
        : `  REFUSED     ${m.file}: ${m.error}`,
    ),
    `result         ${v.ok ? 'ok' : 'FAILED'}`,
  ];
}

export function infoCommand(program: Command): void {
  program
    .command('info')
    .description('show the torch in use, the native binary, CUDA devices and a model summary')
    .option('-m, --model <name|dir>', "model to summarise: a pulled model's name or a folder", defaultModelDir)
    .option(
      '--verify',
      "check every file's size and SHA-256 against model.json and audit each module's code (runs none of it); exit code 1 if anything fails",
    )
    .option('--json', 'print JSON')
    .action(async (flags: { model: string; json?: boolean; verify?: boolean }) => {
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
          ...(dir.warnings.length > 0 ? { warnings: dir.warnings } : {}),
        };
      } catch (error) {
        model = `unavailable: ${(error as Error).message}`;
      }
      const verification = flags.verify ? await FastComposer.verify(flags.model) : undefined;
      if (verification && !verification.ok) process.exitCode = 1;
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ ...runtime, model, ...(verification ? { verification } : {}) }, null, 2)}\n`);
        return;
      }
      const lines = [
        `torch          ${runtime.torchVersion} (${runtime.torchSource}: ${runtime.torchRoot})`,
        `binary         ${runtime.addonPath} (built against torch ${runtime.builtAgainst})`,
        `cuda devices   ${runtime.cudaDevices}`,
        `cpu threads    ${runtime.threads}`,
        `model          ${typeof model === 'string' ? model : JSON.stringify(model)}`,
        ...(verification ? verificationLines(verification) : []),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
