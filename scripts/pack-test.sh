#!/usr/bin/env bash
# Packs the package (with a prebuilt binary), installs the tarball into an empty project and runs
# the README's main job there; then removes the package's build/ and checks it loads from
# prebuilds/. This is the test that catches a file missing from the package.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
npm run build:prebuilds
work=$(mktemp -d /tmp/fastcomposer-pack.XXXXXX)
trap 'rm -rf "$work"' EXIT
tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
echo "pack-test: $tarball is $(du -h "$work/$tarball" | cut -f1)"
cd "$work"
npm init -y >/dev/null
# As a new user: no torch on python3, and npm (11) may skip the package's install script; the
# CLI's first run then finishes the set-up (torch into the package's .venv, the prebuilt binary).
npm install "$work/$tarball"
npx fastcomposer generate --prompt "a man <|image|> in a park" --subject node_modules/fastcomposer/examples/subject-a.png --steps 4 --width 96 --height 64 --out out.png
node -e "
const b = require('fs').readFileSync('out.png');
if (b.readUInt32BE(0) !== 0x89504e47 || b.readUInt32BE(16) !== 96 || b.readUInt32BE(20) !== 64) { console.error('pack-test: out.png is not a 96x64 PNG'); process.exit(1); }
console.log('pack-test: out.png is a 96x64 PNG');"
rm -rf node_modules/fastcomposer/build
node --input-type=module -e "
import { runtimeInfo } from 'fastcomposer';
const info = runtimeInfo();
if (!info.addonPath.includes('/prebuilds/')) { console.error('pack-test: loaded', info.addonPath); process.exit(1); }
console.log('pack-test: loads from', info.addonPath);"
npx fastcomposer generate --prompt "a man <|image|> in a park" --subject node_modules/fastcomposer/examples/subject-a.png --steps 2 --width 64 --height 64 --out out2.png
# The second entry, both ways, with the main entry's classes.
node -e "
const q = require('fastcomposer/queue');
if (typeof q.FastComposerQueue !== 'function' || q.FastComposerError !== require('fastcomposer').FastComposerError) { console.error('pack-test: require(fastcomposer/queue)', Object.keys(q)); process.exit(1); }"
node --input-type=module -e "
import { FastComposerWorker, FastComposerError } from 'fastcomposer/queue';
import * as main from 'fastcomposer';
if (typeof FastComposerWorker.start !== 'function' || FastComposerError !== main.FastComposerError) { console.error('pack-test: import fastcomposer/queue'); process.exit(1); }
console.log('pack-test: fastcomposer/queue loads (import and require)');"
echo "pack-test: ok"
