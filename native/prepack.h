// Weights reordered once at load into the blocked layouts of oneDNN's CPU kernels, and the graphs
// rewritten to call oneDNN's prepacked-weight ops. Without it, every convolution reorders its
// weight on every call (ATen's oneDNN path: ~1 GB written per SD1.5 UNet call, and 4x4 or 8x8
// convolutions ran at a tenth of the kernel's speed), and linear layers run on the BLAS torch was
// built with (MKL takes a generic code path on some CPUs, at half oneDNN's rate or less).
#pragma once

#include <torch/script.h>

#include "prepack_cache.h"

namespace fc {

struct PrepackCounts {
  int convolutions = 0;  // aten::_convolution / conv2d -> mkldnn::_convolution_pointwise
  int linears = 0;       // aten::linear -> mkldnn::_linear_pointwise
  int weights = 0;       // distinct weights packed (methods that read one share its packed copy)
  int64_t bytes = 0;     // of prepacked weights
  int fromCache = 0;     // weights found in the cache (prepack_cache.h): all but the few checked are not reordered
};

struct PrepackOptions {
  bool convolutions = true;
  bool linears = true;
  // Convolution inputs made channels_last first, as ATen does when the weight is channels_last,
  // so that outputs keep the layout (and the numbers) of the unpacked model.
  bool channelsLast = true;
  // Where packed weights are found and kept between loads; none: every weight is reordered.
  PackedWeightCache* cache = nullptr;
};

// Whether oneDNN on this CPU lays a convolution's weight out by the size of its input (it does with
// AVX2's brgconv kernels, not with AVX-512's). A weight packed for one size is then reordered again,
// block layout to block layout, at every call of another size: 0.6 s for a 1280x1280x3x3 weight,
// the UNet 4x slower than unpacked. Where it does, convolutions are left to ATen (which reorders
// the plain NHWC weight at each call, a fast copy). The layout may also depend on the number of
// OpenMP threads (with AVX2: a 320x320x3x3 weight for a 32x32 input, 1 thread against 2), so
// weights are packed and probed under the thread count their calls use. Probed once per process,
// dtype (float32 or bfloat16) and thread count, in ~0.1 s; false where packed bytes cannot be
// read (prepack_cache.h).
bool convolutionLayoutsDependOnInputSize(at::ScalarType dtype);

// For every method of `module` (a CPU module, after graph_passes.h): convolutions and linear
// layers whose weight is a module attribute get a prepacked copy (a top-level attribute of the
// module) and the oneDNN op; the dense weights no graph reads any more are released. Convolutions
// give the same numbers bit for bit; linear layers differ from MKL's in the last bits.
PrepackCounts prepackForCpu(torch::jit::Module& module, const PrepackOptions& options);

}  // namespace fc
