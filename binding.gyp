# node-gyp build of the same native/ sources as CMakeLists.txt (cmake-js is the default path;
# this one serves tools that expect node-gyp, and CI builds and loads it: scripts/gyp-check.sh).
# libtorch, its C++ ABI and its libraries are found by scripts/gyp-config.mjs, the same way as the
# cmake-js build; the torch.json beside the binary lets lib/native.ts check the torch at load.
# What it lacks, and why: the fused CUDA kernels (native/cuda/*.cu: gyp has no CUDA language, and
# without them fastcomposer::group_norm runs ATen's ops) and CUDA graphs (they need the CUDA
# toolkit's headers, which CMake's FindCUDAToolkit locates; without them each UNet step runs
# eagerly); a CUDA torch still runs on CUDA with this build. No precompiled headers either, so a
# build from scratch takes longer.
{
  "variables": {
    "torch_root%": "<!(node scripts/gyp-config.mjs torch)"
  },
  "targets": [
    {
      "target_name": "fastcomposer",
      "sources": ["<!@(node scripts/gyp-config.mjs sources)"],
      "include_dirs": [
        "<!(node scripts/gyp-config.mjs napi-include)",
        "native",
        "<(torch_root)/include",
        "<(torch_root)/include/torch/csrc/api/include"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "<!@(node scripts/gyp-config.mjs defines)"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-frtti", "-Wall", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "libraries": [
        "-L<(torch_root)/lib",
        "-Wl,--no-as-needed",
        "-Wl,-z,nodelete",
        "<!@(node scripts/gyp-config.mjs libraries)",
        "-Wl,-rpath,<(torch_root)/lib"
      ],
      "actions": [
        {
          "action_name": "torch_json",
          "inputs": ["scripts/gyp-config.mjs", "<(torch_root)/lib/libtorch.so"],
          "outputs": ["<(PRODUCT_DIR)/torch.json"],
          "action": ["node", "scripts/gyp-config.mjs", "torch-json", "<(PRODUCT_DIR)/torch.json"]
        }
      ]
    }
  ]
}
