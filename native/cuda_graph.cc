#include "cuda_graph.h"

#include <map>
#include <set>

#ifdef FASTCOMPOSER_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#if __has_include(<ATen/core/CachingHostAllocator.h>)
#include <ATen/core/CachingHostAllocator.h>
#define FASTCOMPOSER_HOST_ALLOCATOR_POOLS 1
#endif
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

#ifdef FASTCOMPOSER_HOST_ALLOCATOR_POOLS
// The host (pinned memory) allocator routes captures to pools in recent libtorch versions only;
// call its clean-up where it has one.
template <typename HostAllocator>
void endHostCapture(HostAllocator* host, at::cuda::MempoolId_t pool) {
  if constexpr (requires {
                  host->end_allocate_to_pool(pool);
                  host->release_pool(pool);
                }) {
    try {
      host->end_allocate_to_pool(pool);
      host->release_pool(pool);
    } catch (...) {
      // This version's capture_begin did not route host allocations: nothing to undo.
    }
  }
}
#endif

// Undoes what CUDAGraph::capture_begin set up when the capture itself failed: capture_end, which
// would, never runs then, and the allocators would keep routing to the pool through a filter that
// points into the destroyed CUDAGraph.
void abandonCapture(const c10::cuda::CUDAStream& stream, at::cuda::MempoolId_t pool) {
  cudaStreamCaptureStatus status;
  if (cudaStreamIsCapturing(stream.stream(), &status) == cudaSuccess && status != cudaStreamCaptureStatusNone) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(stream.stream(), &broken);
    if (broken) cudaGraphDestroy(broken);
  }
  cudaGetLastError();
  try {
    c10::cuda::CUDACachingAllocator::endAllocateToPool(stream.device_index(), pool);
    c10::cuda::CUDACachingAllocator::releasePool(stream.device_index(), pool);
  } catch (...) {
  }
#ifdef FASTCOMPOSER_HOST_ALLOCATOR_POOLS
  endHostCapture(at::getHostAllocator(at::kCUDA), pool);
#endif
}

// Thrown when the recording itself failed (an op that cannot be captured): the method is then
// run eagerly from now on. Errors before the recording (out of memory in the warm-up) propagate.
struct CaptureFailed {};

// One method captured for one set of input shapes and dtypes.
class CapturedMethod {
 public:
  explicit CapturedMethod(const std::vector<at::Tensor>& inputs) {
    // The graph reads its inputs from these tensors, made before the capture (so they live
    // outside the graph's pool) in the caller's memory format (channels_last latents stay so;
    // an expanded tensor becomes dense).
    for (const at::Tensor& x : inputs) inputs_.push_back(x.clone());
  }

  // Runs the method twice on the capture stream (cuDNN's autotuning and the libraries' lazy
  // set-up must not be recorded), then records it into `pool`.
  void capture(torch::jit::Module& module, const std::string& method, c10::cuda::CUDAStream stream, at::cuda::MempoolId_t pool) {
    c10::cuda::getCurrentCUDAStream(stream.device_index()).synchronize();
    torch::jit::Method fn = module.get_method(method);
    std::vector<c10::IValue> args(inputs_.begin(), inputs_.end());
    c10::cuda::CUDAStreamGuard guard(stream);
    for (int i = 0; i < 2; ++i) fn(args);
    stream.synchronize();
    // Thread-local capture: other threads (another device's job thread) may use CUDA meanwhile.
    graph_.capture_begin(pool, cudaStreamCaptureModeThreadLocal);
    try {
      outputs_ = tensorsOf(fn(args));
      graph_.capture_end();
    } catch (...) {
      abandonCapture(stream, pool);
      throw CaptureFailed{};
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

 private:
  std::vector<at::Tensor> inputs_, outputs_;
  at::cuda::CUDAGraph graph_;
};

class CudaGraphCache : public GraphCache {
 public:
  explicit CudaGraphCache(const at::Device& device)
      // One stream for every capture: the caching allocator reuses a pool's free blocks only on
      // the stream they were allocated on, so captures sharing the pool must share the stream.
      : stream_(c10::cuda::getStreamFromPool(false, device.index())) {}

  std::optional<std::vector<at::Tensor>> run(torch::jit::Module& module, const std::string& method,
                                             const std::vector<at::Tensor>& inputs) override {
    if (uncapturable_.count(method)) return std::nullopt;
    auto found = graphs_.find(method);
    if (found == graphs_.end() || !found->second->matches(inputs)) {
      // New latents: every capture is for the old ones, drop them all so that their memory is
      // back in the pool before the next capture. (Other inputs, such as the subject count of
      // forward_localized, only replace this method's capture.)
      if (inputs.front().sizes().vec() != latentShape_)
        graphs_.clear();
      else if (found != graphs_.end())
        graphs_.erase(found);
      // A pool whose last graph is gone may not take captures again (the allocator frees it
      // lazily): with no graph left, start a fresh one.
      if (graphs_.empty()) pool_ = at::cuda::graph_pool_handle();
      auto graph = std::make_unique<CapturedMethod>(inputs);
      try {
        graph->capture(module, method, stream_, pool_);
      } catch (const CaptureFailed&) {
        uncapturable_.insert(method);
        return std::nullopt;
      }
      found = graphs_.insert_or_assign(method, std::move(graph)).first;
      latentShape_ = inputs.front().sizes().vec();
    }
    return found->second->run(inputs);
  }

 private:
  c10::cuda::CUDAStream stream_;
  at::cuda::MempoolId_t pool_{0, 0};  // shared by the live captures: replays never overlap
  std::map<std::string, std::unique_ptr<CapturedMethod>> graphs_;
  std::set<std::string> uncapturable_;
  std::vector<int64_t> latentShape_;
};

}  // namespace

std::unique_ptr<GraphCache> GraphCache::create(const at::Device& device) {
  if (!device.is_cuda()) return nullptr;
  return std::make_unique<CudaGraphCache>(device);
}

#else

std::unique_ptr<GraphCache> GraphCache::create(const at::Device&) { return nullptr; }

#endif

}  // namespace fc
