// The plain UNet call captured in a CUDA graph for one input shape, then replayed every step:
// an SD UNet step is a thousand small kernel launches, and on a fast GPU launching them costs
// more than running them. Compiled in only against a CUDA libtorch with the CUDA headers
// (FASTCOMPOSER_CUDA_GRAPHS); elsewhere capture() returns nullptr and the caller runs eagerly.
#pragma once

#include <ATen/ATen.h>
#include <torch/script.h>

#include <memory>

namespace fc {

class UnetGraph {
 public:
  virtual ~UnetGraph() = default;

  // Captures unet.forward(x, t, ehs) for these shapes, dtypes and memory formats; nullptr when
  // graphs are unavailable or the capture failed (the caller then runs the module eagerly).
  static std::unique_ptr<UnetGraph> capture(torch::jit::Module& unet, const at::Tensor& x, const at::Tensor& t,
                                            const at::Tensor& ehs);

  // Whether a capture of these inputs can be replayed with them.
  virtual bool matches(const at::Tensor& x, const at::Tensor& t, const at::Tensor& ehs) const = 0;

  // Copies the inputs into the graph's own tensors, replays it, and returns its output tensor,
  // which the next run() overwrites.
  virtual at::Tensor run(const at::Tensor& x, const at::Tensor& t, const at::Tensor& ehs) = 0;
};

}  // namespace fc
