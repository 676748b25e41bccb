#!/usr/bin/env bash
# Prepares what bench/gpu-check.sh needs on a machine without Node.js or network: a compressed
# Node binary and the runtime node_modules, in .carry/ (git-ignored); plus dist/ (npm run build).
# Then: device run with carry [".carry", "dist"] and command `bash bench/gpu-check.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .carry && mkdir -p .carry/node_modules/@huggingface
xz -T2 -6 -c "$(command -v node)" >.carry/node.xz
for m in node-gyp-build node-addon-api node-api-headers; do cp -r "node_modules/$m" .carry/node_modules/; done
cp -r node_modules/@huggingface/tokenizers .carry/node_modules/@huggingface/
node scripts/build-ts.mjs
du -sh .carry dist
