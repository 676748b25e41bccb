#!/usr/bin/env node
/** `fastcomposer export | generate | info | pull | list | serve | setup | worker`: the command-line face of the library. */
import { Command, CommanderError } from 'commander';

import { FastComposerError } from '../errors.js';
import { exportCommand } from './export.js';
import { generateCommand } from './generate.js';
import { infoCommand } from './info.js';
import { listCommand } from './list.js';
import { pullCommand } from './pull.js';
import { serveCommand } from './serve.js';
import { ensureSetup, setupCommand } from './setup.js';
import { workerCommand } from './worker.js';

const program = new Command();
program
  .name('fastcomposer')
  .description('FastComposer (multi-subject personalized text-to-image) on libtorch')
  .showHelpAfterError()
  .exitOverride();
exportCommand(program);
generateCommand(program);
infoCommand(program);
pullCommand(program);
listCommand(program);
serveCommand(program);
setupCommand(program);
workerCommand(program);
// Commands that need torch, the binary or the embedded model finish an install npm left undone.
program.hook('preAction', (_program, action) => {
  if (action.name() !== 'setup' && action.name() !== 'list') ensureSetup();
});

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    process.exitCode = error.exitCode;
  } else if (error instanceof FastComposerError) {
    process.stderr.write(`fastcomposer: ${error.message} [${error.code}]\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(`fastcomposer: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exitCode = 1;
  }
}
