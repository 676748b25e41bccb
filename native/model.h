// A loaded model directory: the five TorchScript modules on one device and dtype.
#pragma once

#include <ATen/ATen.h>
#include <torch/script.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_graph.h"
#include "graph_passes.h"
#include "job_thread.h"
#include "prepack.h"

namespace fc {

// What TypeScript read from model.json (it checks the format and version) and hands over.
struct ModelSpec {
  std::string textEncoderPath;
  std::string imageEncoderPath;
  std::string postfusePath;
  std::string unetPath;
  std::string vaeDecoderPath;
  std::string device = "cpu";     // "cpu", "cuda", "cuda:N" (TS resolves "auto")
  std::string dtype = "float32";  // "float32" | "float16" | "bfloat16"
  int64_t threads = 0;            // CPU threads for this model's work; 0 = libtorch's default
  double latentScale = 0.18215;
  int64_t vaeScaleFactor = 8;
  int64_t latentChannels = 4;
  int64_t maxLength = 77;  // the text encoder's context length (model.json maxLength)
  // CPU: where prepacked weights are kept between loads (prepack_cache.h); empty: not kept.
  std::string prepackCacheDir;
  int64_t prepackCacheMinBytes = 0;  // modules with fewer packed bytes are not kept
};

// Where a load's time went, in milliseconds (wall clock on the job thread).
struct LoadTimings {
  double readMs = 0;         // the module files mapped with their pages in memory (mapped_load.h; 0 when not mapped)
  double deserializeMs = 0;  // the archives read: code, structure, tensors (module_loader.h)
  double auditMs = 0;        // the modules' code inspected (module_audit.h)
  double convertMs = 0;      // dtype and memory-format conversions of the weights
  double passesMs = 0;       // graph passes (graph_passes.h)
  double prepackMs = 0;      // weights reordered for the CPU kernels
  double warmupMs = 0;       // first calls made at load
  double totalMs = 0;
};

// libtorch's default intra-op thread count, read on the main thread at addon start.
void recordDefaultThreads();

// For tests (testing_exports.cc): runs `hook` once, in the next model load, after the module files
// are read and before their weights are used.
void setAfterModulesReadForTesting(std::function<void()> hook);

class Model {
 public:
  // Loads every module, each read and audited before any of it runs (module_loader.h); throws
  // CodedError("ERR_MODEL"/"ERR_DEVICE") naming the file at fault.
  explicit Model(const ModelSpec& spec);

  const ModelSpec& spec() const { return spec_; }
  // Latents in the model's dtype and memory format, ready for the UNet or the VAE decoder.
  at::Tensor prepareLatents(const at::Tensor& x) const;

  // The thread that runs all of this model's torch work: its device's (see job_thread.h).
  JobThread& jobs() { return deviceJobThread(device_.str()); }

  // Sets this model's CPU thread count on the calling (worker) thread: OpenMP keeps the count
  // per thread, so models of different sizes can share libuv's pool.
  void useThreads() const;

  // Whether the last UNet step was replayed from a CUDA graph.
  bool replaysCudaGraph() const { return graphReplayed_.load(); }  // read on the main thread

  // unet.<method>(inputs) ("forward" or "forward_localized"), replayed from a CUDA graph
  // captured for the current shapes where possible. Returns the output tensor(s), owned by the
  // caller. Call with runLock held.
  std::vector<at::Tensor> runUnet(const std::string& method, const std::vector<at::Tensor>& inputs);
  const at::Device& device() const { return device_; }
  // What graph_passes.h changed in the UNet and the VAE decoder at load.
  const GraphPassCounts& graphPasses() const { return graphPasses_; }
  at::ScalarType dtype() const { return dtype_; }
  const LoadTimings& loadTimings() const { return loadTimings_; }
  // What prepack.h reordered at load (CPU only).
  const PrepackCounts& prepacked() const { return prepacked_; }
  // Throws CodedError("ERR_MODEL") once a prepack cache file that weights point into has changed
  // (cut short, or written in place: mapped_load.h's MappedFileStatus): the weights read from it,
  // and the call that read them, are void. For the end of each call and of the load.
  void checkMappedFiles() const;

 private:
  // Declared before the modules, so destroyed after them: their prepacked weights may point into
  // these cache files (prepack_cache.h).
  std::vector<std::shared_ptr<MappedFile>> packedMappings_;

 public:
  torch::jit::Module textEncoder, imageEncoder, postfuse, unet, vaeDecoder;

  // TorchScript modules are not meant to run two forwards at once from two threads on one
  // device; calls on one model take this lock (JS also queues them, this is the backstop).
  std::mutex runLock;

 private:
  void warmup();
  void optimizeGraphs();
  // `filesAtRead`: each module file's moduleFileIdentity() before it was read (prepack_cache.h).
  void prepackWeights(const std::map<std::string, std::string>& filesAtRead);

  ModelSpec spec_;
  at::Device device_;
  at::ScalarType dtype_;
  bool channelsLast_ = false;
  int threads_ = 0;
  GraphPassCounts graphPasses_;
  LoadTimings loadTimings_;
  PrepackCounts prepacked_;
  bool prepack_ = false;                // CPU: weights reordered for oneDNN (prepack.h)
  bool prepackConvolutions_ = false;    // CPU: convolution weights too (not where their layout depends on the input size)
  std::unique_ptr<GraphCache> graphs_;  // null: no CUDA graphs (CPU, disabled, or not built in)
  std::atomic<bool> graphReplayed_{false};
};

}  // namespace fc
