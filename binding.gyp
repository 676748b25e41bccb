# node-gyp build of the same native/ sources as CMakeLists.txt (cmake-js is the default path;
# this one serves tools that expect node-gyp). libtorch is found by scripts/gyp-config.mjs.
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
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "_GLIBCXX_USE_CXX11_ABI=1"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-frtti", "-Wno-unused-parameter"],
      "libraries": [
        "-L<(torch_root)/lib",
        "-Wl,--no-as-needed",
        "-Wl,-z,nodelete",
        "-ltorch",
        "-ltorch_cpu",
        "-lc10",
        "-Wl,-rpath,<(torch_root)/lib"
      ]
    }
  ]
}
