// Torch and Python discovery (scripts/torch-discovery.mjs), shared by the install scripts and the
// library: the order of the places, what each one yields, and that lib/ asks the same module
// about the package folder.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  TORCH_FIXES as SCRIPT_FIXES,
  exporterEnv,
  findPython,
  findTorch,
  hasCudaLibraries,
  venvPython,
} from '../scripts/torch-discovery.mjs';
import { packageRoot } from '../lib/paths.js';
import { findPython as libFindPython } from '../lib/python.js';
import { TORCH_FIXES, locateTorch } from '../lib/torch-locate.js';

const tmp = mkdtempSync(join(tmpdir(), 'fc-torch-discovery-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A folder that looks like a torch: lib/libtorch.so (empty), and a version file. */
function fakeTorch(root: string, { version, python = false, cuda = false }: { version: string; python?: boolean; cuda?: boolean }): string {
  mkdirSync(join(root, 'lib'), { recursive: true });
  writeFileSync(join(root, 'lib', 'libtorch.so'), '');
  if (cuda) writeFileSync(join(root, 'lib', 'libtorch_cuda.so'), '');
  if (python) writeFileSync(join(root, 'version.py'), `__version__ = '${version}'\n`);
  else writeFileSync(join(root, 'build-version'), `${version}\n`);
  return root;
}

/** An executable standing in for a Python: prints `torchRoot` whatever it is asked. */
function fakePython(name: string, torchRoot: string): string {
  const file = join(tmp, name);
  writeFileSync(file, `#!/bin/sh\necho '${torchRoot}'\n`);
  chmodSync(file, 0o755);
  return file;
}

describe('torch discovery', () => {
  const libtorch = fakeTorch(join(tmp, 'libtorch'), { version: '2.13.0+cu130', cuda: true });
  const pyTorch = fakeTorch(join(tmp, 'py', 'torch'), { version: '2.13.0+cpu', python: true });
  const python = fakePython('python-with-torch', pyTorch);
  const pkg = join(tmp, 'pkg');
  const venvTorchRoot = fakeTorch(join(pkg, '.venv', 'lib', 'python3.12', 'site-packages', 'torch'), { version: '2.13.0', python: true });

  it('LIBTORCH comes first and has no Python', () => {
    const found = findTorch(pkg, { LIBTORCH: libtorch, FASTCOMPOSER_PYTHON: python });
    expect(found).toEqual({
      root: libtorch,
      libDir: join(libtorch, 'lib'),
      version: '2.13.0+cu130',
      source: 'LIBTORCH',
      python: undefined,
    });
    expect(hasCudaLibraries(libtorch)).toBe(true);
    expect(hasCudaLibraries(pyTorch)).toBe(false);
  });

  it('a LIBTORCH without libtorch decides: nothing is found, the later places are not tried', () => {
    expect(findTorch(pkg, { LIBTORCH: join(tmp, 'py') })).toBeUndefined();
  });

  it("FASTCOMPOSER_PYTHON's torch comes next, with that Python", () => {
    expect(findTorch(pkg, { FASTCOMPOSER_PYTHON: python })).toEqual({
      root: pyTorch,
      libDir: join(pyTorch, 'lib'),
      version: '2.13.0+cpu',
      source: 'FASTCOMPOSER_PYTHON',
      python,
    });
    expect(findTorch(pkg, { FASTCOMPOSER_PYTHON: fakePython('python-without-torch', '') })).toBeUndefined();
    expect(findTorch(pkg, { FASTCOMPOSER_PYTHON: join(tmp, 'no-such-python') })).toBeUndefined();
  });

  it("then the package's own .venv", () => {
    expect(findTorch(pkg, {})).toEqual({
      root: venvTorchRoot,
      libDir: join(venvTorchRoot, 'lib'),
      version: '2.13.0',
      source: '.venv',
      python: venvPython(pkg),
    });
  });

  it('the library asks the same module about its own package folder', () => {
    const env = { LIBTORCH: libtorch };
    expect(locateTorch(env)).toEqual(findTorch(packageRoot, env));
    expect(TORCH_FIXES).toBe(SCRIPT_FIXES);
    expect(TORCH_FIXES).toMatch(/LIBTORCH.*FASTCOMPOSER_PYTHON.*npx fastcomposer setup.*pip install torch==/);
  });
});

describe('python discovery', () => {
  it("FASTCOMPOSER_PYTHON, else the package's .venv, else python3", () => {
    const pkg = join(tmp, 'pkg-python');
    expect(findPython(pkg, { FASTCOMPOSER_PYTHON: 'custom-python' })).toBe('custom-python');
    expect(findPython(pkg, {})).toBe('python3');
    mkdirSync(join(pkg, '.venv', 'bin'), { recursive: true });
    writeFileSync(venvPython(pkg), '');
    expect(findPython(pkg, {})).toBe(venvPython(pkg));
    expect(libFindPython({ FASTCOMPOSER_PYTHON: 'custom-python' })).toBe('custom-python');
  });

  it('the exporter runs from the package folder, before any PYTHONPATH already set', () => {
    expect(exporterEnv('/pkg', { A: '1' })).toEqual({ A: '1', PYTHONPATH: '/pkg/exporter', PYTHONUNBUFFERED: '1' });
    expect(exporterEnv('/pkg', { PYTHONPATH: '/mine' }).PYTHONPATH).toBe('/pkg/exporter:/mine');
  });
});
