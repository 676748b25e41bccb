#!/usr/bin/env bash
# Packs the package (with a prebuilt binary), installs the tarball into an empty project and runs
# the README's main job there; then removes the package's build/ and checks it loads from
# prebuilds/. This is the test that catches a file missing from the package.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
npm run build:prebuilds
work=$(mktemp -d /tmp/fastcomposer-pack.XXXXXX)
hub_pid=
trap '[ -n "$hub_pid" ] && kill "$hub_pid"; rm -rf "$work"' EXIT
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
# The server and its page come from the package too: serve, fetch the page and the API, stop with SIGTERM.
node --input-type=module -e "
import { spawn } from 'node:child_process';
const child = spawn('node_modules/.bin/fastcomposer', ['serve', '--port', '0', '--device', 'cpu'], { stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
const url = await new Promise((resolve, reject) => {
  child.stdout.on('data', (d) => { out += d; const m = /at (http:[^ ]+\/)/.exec(out); if (m) resolve(m[1]); });
  child.on('exit', (code) => reject(new Error('serve exited with ' + code + ': ' + out)));
});
const page = await (await fetch(url)).text();
const script = await fetch(url + 'app.js');
const health = await (await fetch(url + 'api/health')).json();
const exited = new Promise((resolve) => child.on('exit', resolve));
child.kill('SIGTERM');
const code = await exited;
if (!page.includes('<script src=\"app.js\"></script>') || script.status !== 200 || health.status !== 'ok' || code !== 0) {
  console.error('pack-test: serve failed', { status: script.status, health, code });
  process.exit(1);
}
console.log('pack-test: serve answered at', url, 'and stopped with exit code 0');"
rm -rf node_modules/fastcomposer/build
node --input-type=module -e "
import { runtimeInfo } from 'fastcomposer';
const info = runtimeInfo();
if (!info.addonPath.includes('/prebuilds/')) { console.error('pack-test: loaded', info.addonPath); process.exit(1); }
console.log('pack-test: loads from', info.addonPath);"
npx fastcomposer generate --prompt "a man <|image|> in a park" --subject node_modules/fastcomposer/examples/subject-a.png --steps 2 --width 64 --height 64 --out out2.png
# The released weights in one command, as on a fresh machine: pull from a stand-in for the hub
# (HF_ENDPOINT) serving the tiny release in the released layout, then generate with the name.
release=$root/test/fixtures/tiny-a/release
node "$root/test/hub/fake-hub.mjs" stable-diffusion-v1-5/stable-diffusion-v1-5="$release/sd" \
  openai/clip-vit-large-patch14="$release/clip" mit-han-lab/fastcomposer="$release/fastcomposer" > hub.out &
hub_pid=$!
for _ in $(seq 50); do grep -q '^HF_ENDPOINT=' hub.out && break; sleep 0.2; done
export HF_ENDPOINT=$(sed -n 's/^HF_ENDPOINT=//p' hub.out) HF_HOME=$work/hf FASTCOMPOSER_CACHE=$work/fc
npx fastcomposer pull --no-progress
npx fastcomposer generate --model fastcomposer --prompt "a man img in a park" --image-token img --subject node_modules/fastcomposer/examples/subject-a.png --steps 2 --width 64 --height 64 --out out3.png
npx fastcomposer list
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
