#include "cuda_graph.h"

#include <map>
#include <set>

#ifdef FASTCOMPOSER_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace fc {

#ifdef FASTCOMPOSER_CUDA_GRAPHS
namespace {

// Strides need not match: copy_ into the graph's input tensors converts them (an expanded
// timestep has stride 0, its copy does not).
bool sameKind(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() && a.device() == b.device();
}

std::vector<at::Tensor> tensorsOf(const c10::IValue& value) {
  if (value.isTensor()) return {value.toTensor()};
  std::vector<at::Tensor> out;
  for (const c10::IValue& v : value.toTupleRef().elements()) out.push_back(v.toTensor());
  return out;
}

// One method captured for one set of input shapes and dtypes.
class CapturedMethod {
 public:
  explicit CapturedMethod(const std::vector<at::Tensor>& inputs) {
    // The graph reads its inputs from these tensors, made before the capture (so they live
    // outside the graph's pool) in the caller's memory format (channels_last latents stay so;
    // an expanded tensor becomes dense).
    for (const at::Tensor& x : inputs) inputs_.push_back(x.clone());
  }

  // Runs the method twice on a side stream (cuDNN's autotuning and the libraries' lazy set-up
  // must not be recorded), then records it into `pool` ({0,0}: a pool of its own).
  void capture(torch::jit::Module& module, const std::string& method, at::cuda::MempoolId_t pool) {
    const c10::DeviceIndex index = inputs_.front().device().index();
    c10::cuda::getCurrentCUDAStream(index).synchronize();
    c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool(false, index);
    torch::jit::Method fn = module.get_method(method);
    std::vector<c10::IValue> args(inputs_.begin(), inputs_.end());
    {
      c10::cuda::CUDAStreamGuard guard(stream);
      for (int i = 0; i < 2; ++i) fn(args);
      stream.synchronize();
      // Thread-local capture: other threads (another device's job thread) may use CUDA meanwhile.
      graph_.capture_begin(pool, cudaStreamCaptureModeThreadLocal);
      try {
        outputs_ = tensorsOf(fn(args));
      } catch (...) {
        // An op that cannot be captured invalidates the capture; end it so that the pooled
        // stream is usable again, then let the caller fall back to eager runs.
        cudaStreamCaptureStatus status;
        if (cudaStreamIsCapturing(stream.stream(), &status) == cudaSuccess && status != cudaStreamCaptureStatusNone) {
          cudaGraph_t broken = nullptr;
          cudaStreamEndCapture(stream.stream(), &broken);
          if (broken) cudaGraphDestroy(broken);
        }
        cudaGetLastError();
        throw;
      }
      graph_.capture_end();
    }
    stream.synchronize();
  }

  bool matches(const std::vector<at::Tensor>& inputs) const {
    if (inputs.size() != inputs_.size()) return false;
    for (size_t i = 0; i < inputs.size(); ++i)
      if (!sameKind(inputs[i], inputs_[i])) return false;
    return true;
  }

  const std::vector<at::Tensor>& run(const std::vector<at::Tensor>& inputs) {
    for (size_t i = 0; i < inputs.size(); ++i) inputs_[i].copy_(inputs[i]);
    graph_.replay();
    return outputs_;
  }

  at::cuda::MempoolId_t pool() { return graph_.pool(); }

 private:
  std::vector<at::Tensor> inputs_, outputs_;
  at::cuda::CUDAGraph graph_;
};

class CudaGraphCache : public GraphCache {
 public:
  std::optional<std::vector<at::Tensor>> run(torch::jit::Module& module, const std::string& method,
                                             const std::vector<at::Tensor>& inputs) override {
    if (uncapturable_.count(method)) return std::nullopt;
    auto found = graphs_.find(method);
    if (found == graphs_.end() || !found->second->matches(inputs)) {
      // New shapes: the other captures are for the old ones too. Drop them all, so the pool
      // is freed before the next capture fills a new one.
      if (found != graphs_.end() || !sameShapes(inputs)) graphs_.clear();
      auto graph = std::make_unique<CapturedMethod>(inputs);
      try {
        graph->capture(module, method, graphs_.empty() ? at::cuda::MempoolId_t{0, 0} : graphs_.begin()->second->pool());
      } catch (const std::exception&) {
        uncapturable_.insert(method);
        return std::nullopt;
      }
      found = graphs_.insert_or_assign(method, std::move(graph)).first;
      shape_ = inputs.front().sizes().vec();
    }
    return found->second->run(inputs);
  }

 private:
  // Whether the first input (the latents) has the shape the current captures were made for.
  bool sameShapes(const std::vector<at::Tensor>& inputs) const { return inputs.front().sizes().vec() == shape_; }

  std::map<std::string, std::unique_ptr<CapturedMethod>> graphs_;
  std::set<std::string> uncapturable_;
  std::vector<int64_t> shape_;
};

}  // namespace

std::unique_ptr<GraphCache> GraphCache::create(const at::Device& device) {
  if (!device.is_cuda()) return nullptr;
  return std::make_unique<CudaGraphCache>();
}

#else

std::unique_ptr<GraphCache> GraphCache::create(const at::Device&) { return nullptr; }

#endif

}  // namespace fc
