#include "cuda_graph.h"

#ifdef FASTCOMPOSER_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace fc {

#ifdef FASTCOMPOSER_CUDA_GRAPHS
namespace {

bool sameLayout(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.strides() == b.strides() && a.scalar_type() == b.scalar_type() &&
         a.device() == b.device();
}

class CudaUnetGraph : public UnetGraph {
 public:
  CudaUnetGraph(const at::Tensor& x, const at::Tensor& t, const at::Tensor& ehs)
      : x_(x.clone()), t_(t.contiguous().clone()), ehs_(ehs.contiguous().clone()) {}

  void capture(torch::jit::Module& unet) {
    const c10::DeviceIndex index = x_.device().index();
    c10::cuda::getCurrentCUDAStream(index).synchronize();
    // Capture happens on a side stream; warm-up runs there first so that cuDNN's autotuning
    // and the libraries' lazy set-up are not recorded.
    c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool(false, index);
    {
      c10::cuda::CUDAStreamGuard guard(stream);
      for (int i = 0; i < 2; ++i) unet.forward({x_, t_, ehs_});
      stream.synchronize();
      // Thread-local capture: other threads (another model's worker) may use CUDA meanwhile.
      graph_.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
      try {
        out_ = unet.forward({x_, t_, ehs_}).toTensor();
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

  bool matches(const at::Tensor& x, const at::Tensor& t, const at::Tensor& ehs) const override {
    return sameLayout(x, x_) && t.sizes() == t_.sizes() && t.scalar_type() == t_.scalar_type() &&
           ehs.sizes() == ehs_.sizes() && ehs.scalar_type() == ehs_.scalar_type();
  }

  at::Tensor run(const at::Tensor& x, const at::Tensor& t, const at::Tensor& ehs) override {
    x_.copy_(x);
    t_.copy_(t);
    ehs_.copy_(ehs);
    graph_.replay();
    return out_;
  }

 private:
  at::Tensor x_, t_, ehs_, out_;
  at::cuda::CUDAGraph graph_;
};

}  // namespace

std::unique_ptr<UnetGraph> UnetGraph::capture(torch::jit::Module& unet, const at::Tensor& x, const at::Tensor& t,
                                              const at::Tensor& ehs) {
  if (!x.is_cuda()) return nullptr;
  try {
    auto graph = std::make_unique<CudaUnetGraph>(x, t, ehs);
    graph->capture(unet);
    return graph;
  } catch (const std::exception&) {
    // Something in the graph could not be captured: run eagerly instead.
    return nullptr;
  }
}

#else

std::unique_ptr<UnetGraph> UnetGraph::capture(torch::jit::Module&, const at::Tensor&, const at::Tensor&,
                                              const at::Tensor&) {
  return nullptr;
}

#endif

}  // namespace fc
