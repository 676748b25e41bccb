// UNet methods captured in CUDA graphs, one capture per method for the current input shapes,
// then replayed every step: an SD UNet step is a thousand small kernel launches, and on a fast
// GPU launching them costs more than running them. Both methods are captured (forward for the
// plain steps, forward_localized for steps with attention maps or regions) into one shared
// memory pool: the replays never overlap, so the second capture reuses the first one's
// scratch memory instead of doubling it. Compiled in only against a CUDA libtorch with the CUDA
// headers (FASTCOMPOSER_CUDA_GRAPHS); elsewhere create() returns nullptr and callers run eagerly.
#pragma once

#include <ATen/ATen.h>
#include <torch/script.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fc {

class GraphCache {
 public:
  virtual ~GraphCache() = default;

  // A cache for modules on this device; nullptr when graphs are unavailable (CPU, or a build
  // without CUDA graph support).
  static std::unique_ptr<GraphCache> create(const at::Device& device);

  // module.<method>(inputs), replayed from the graph captured for these inputs' shapes, dtypes
  // and strides (capturing it first when there is none, or when the shapes changed: then every
  // capture is dropped and the pool freed). The outputs are the graph's own tensors, which the
  // next replay overwrites: copy what must outlive it. std::nullopt when this method cannot be
  // captured (it is then not tried again): run it eagerly.
  virtual std::optional<std::vector<at::Tensor>> run(torch::jit::Module& module, const std::string& method,
                                                     const std::vector<at::Tensor>& inputs) = 0;
};

}  // namespace fc
