// Rewrites of the loaded TorchScript graphs for the way this addon runs them. The model files
// stay plain TorchScript (Python loads and runs them unchanged); the rewrites happen at load.
#pragma once

#include <torch/script.h>

namespace fc {

struct GraphPassCounts {
  int groupNorms = 0;  // aten::group_norm now fastcomposer::group_norm
  int fusedSilus = 0;  // of which absorb the aten::silu that followed
  int droppedContiguous = 0;
};

// For every method of `module`: inlines the submodules' calls, then
//  - replaces aten::group_norm (+ aten::silu) by fastcomposer::group_norm (group_norm_op.cc),
//  - with channelsLast, drops the aten::contiguous calls that only feed convolutions and
//    additions: the exporter makes the transformer's output NCHW-contiguous for CPU float32
//    rounding parity with diffusers, which in a channels_last model costs a copy there and
//    another in the next convolution.
// Call before the method's first run: an executor keeps the graph it first ran, later rewrites
// would go unseen.
GraphPassCounts optimizeForInference(torch::jit::Module& module, bool channelsLast);

// Whether this build has the NHWC group-norm CUDA kernel (else the op runs ATen's).
bool hasNhwcGroupNormKernel();

}  // namespace fc
