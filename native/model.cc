#include "model.h"

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "errors.h"
#include "mapped_load.h"
#include "module_loader.h"
#include "prepack.h"
#include "prepack_cache.h"

namespace fc {
namespace {

at::ScalarType parseDtype(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "float16") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  throw CodedError("ERR_INVALID_ARGUMENT", "Unsupported dtype \"" + name + "\"");
}

at::Device parseDevice(const std::string& name) {
  at::Device device(at::kCPU);
  try {
    device = at::Device(name);
  } catch (const c10::Error&) {
    throw CodedError("ERR_DEVICE", "Unknown device \"" + name + "\"");
  }
  if (device.is_cuda()) {
    if (!torch::cuda::is_available())
      throw CodedError("ERR_DEVICE", "Device \"" + name + "\" asked for, but this libtorch has no usable CUDA");
    int64_t index = device.has_index() ? device.index() : 0;
    if (index >= static_cast<int64_t>(torch::cuda::device_count()))
      throw CodedError("ERR_DEVICE", "Device \"" + name + "\" asked for, but only " + std::to_string(torch::cuda::device_count()) +
                                         " CUDA device(s) exist");
    if (!device.has_index()) device = at::Device(at::kCUDA, 0);
  } else if (!device.is_cpu()) {
    throw CodedError("ERR_DEVICE", "Unsupported device \"" + name + "\" (use cpu, cuda or cuda:N)");
  }
  return device;
}

bool envFlag(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return std::strcmp(v, "0") != 0;
}

// A module file read through a mapping, and what became of it meanwhile (mapped_load.h).
struct MappedModuleFile {
  std::string path;
  std::shared_ptr<const MappedFileStatus> status;
};

// Read and audited before anything of it runs (module_loader.h), then put in eval mode. On the
// CPU its tensors point into a mapping of the file until the load ends (mapped_load.h): the
// file is added to `mappedFiles`.
torch::jit::Module loadModule(const std::string& path, const at::Device& device, LoadTimings& timings,
                              std::vector<MappedModuleFile>& mappedFiles) {
  const bool mapped = device.is_cpu() && envFlag("FASTCOMPOSER_MAP_WEIGHTS", true);
  AuditedModule loaded = loadAuditedModule(path, device, mapped ? Weights::Mapped : Weights::Read);
  if (loaded.fileStatus) mappedFiles.push_back({path, loaded.fileStatus});
  timings.readMs += loaded.readMs;
  timings.deserializeMs += loaded.deserializeMs;
  timings.auditMs += loaded.auditMs;
  torch::jit::Module module = loaded.module;
  module.eval();
  return module;
}

// Convolution weights in NHWC: cuDNN's fastest fp16/bf16 kernels on recent GPUs read that layout.
void toChannelsLast(torch::jit::Module& module) {
  for (at::Tensor p : module.parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

// Adds the wall time of `body` to `ms`.
template <typename F>
void timed(double& ms, F&& body) {
  const auto start = std::chrono::steady_clock::now();
  body();
  ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// bfloat16 on the CPU is only worth it where the CPU multiplies bfloat16 natively (AVX512-BF16 or
// AMX-BF16): elsewhere oneDNN emulates it, slower than float32. FASTCOMPOSER_CPU_BF16=1 allows it
// anyway, =0 refuses it as on a CPU without.
bool cpuHasFastBfloat16() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  unsigned a = 0, b = 0, c = 0, d = 0;
  const bool amx = __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((d >> 22) & 1);
  return __builtin_cpu_supports("avx512bf16") || amx;
#else
  return false;
#endif
}

// oneDNN's bfloat16 kernels, which prepacked weights run on (prepack.h), need AVX512BW, VL and DQ, or
// AVX-NE-CONVERT, within ONEDNN_MAX_CPU_ISA: torch's own check says so. A CPU without them that
// runs bfloat16 anyway (FASTCOMPOSER_CPU_BF16=1) keeps ATen's own kernels.
bool cpuHasOneDnnBfloat16() {
  const std::optional<c10::OperatorHandle> op = c10::Dispatcher::singleton().findSchema({"mkldnn::_is_mkldnn_bf16_supported", ""});
  return op && op->typed<bool()>().call();
}

void checkCpuBfloat16() {
  const char* force = std::getenv("FASTCOMPOSER_CPU_BF16");
  const bool allowed = force && *force ? std::strcmp(force, "0") != 0 : cpuHasFastBfloat16();
  if (!allowed)
    throw CodedError("ERR_DEVICE",
                     "dtype bfloat16 on cpu needs a CPU with native bfloat16 arithmetic (AVX512-BF16 or AMX), which this "
                     "one lacks (or FASTCOMPOSER_CPU_BF16=0 is set): it would be emulated, slower than float32. Use float32, or "
                     "set FASTCOMPOSER_CPU_BF16=1 to run it emulated anyway");
}

// Written by each environment's Init, read on job threads.
std::atomic<int> defaultThreads{0};

}  // namespace

void recordDefaultThreads() { defaultThreads.store(at::get_num_threads()); }

namespace {
std::mutex afterModulesReadMutex;
std::function<void()> afterModulesRead;

void runAfterModulesReadHook() {
  std::function<void()> hook;
  {
    std::lock_guard<std::mutex> lock(afterModulesReadMutex);
    hook.swap(afterModulesRead);
  }
  if (hook) hook();
}
}  // namespace

void setAfterModulesReadForTesting(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(afterModulesReadMutex);
  afterModulesRead = std::move(hook);
}

void Model::useThreads() const {
  if (device_.is_cpu() && threads_ > 0 && at::get_num_threads() != threads_) at::set_num_threads(threads_);
}

Model::Model(const ModelSpec& spec) : spec_(spec), device_(parseDevice(spec.device)), dtype_(parseDtype(spec.dtype)) {
  if (device_.is_cpu() && dtype_ == at::kHalf)
    throw CodedError("ERR_INVALID_ARGUMENT", "dtype float16 is not supported on cpu; use float32 or bfloat16");
  if (device_.is_cpu() && dtype_ == at::kBFloat16) checkCpuBfloat16();
  const auto loadStart = std::chrono::steady_clock::now();
  std::vector<MappedModuleFile> mappedFiles;
  std::map<std::string, std::string> filesAtRead;  // module path -> moduleFileIdentity() before it was read
  for (auto [module, path] :
       {std::pair{&textEncoder, &spec.textEncoderPath}, std::pair{&imageEncoder, &spec.imageEncoderPath},
        std::pair{&postfuse, &spec.postfusePath}, std::pair{&unet, &spec.unetPath}, std::pair{&vaeDecoder, &spec.vaeDecoderPath}}) {
    // What the prepack cache records the packed weights were made from (prepack_cache.h).
    filesAtRead[*path] = moduleFileIdentity(*path);
    *module = loadModule(*path, device_, loadTimings_, mappedFiles);
  }
  runAfterModulesReadHook();
  threads_ = spec.threads > 0 ? static_cast<int>(spec.threads) : defaultThreads.load();
  // Weights packed (and the layout probe run) under the thread count the model's calls use:
  // oneDNN may lay a convolution's weight out by it (prepack.h).
  useThreads();
  if (!unet.find_method("forward_localized"))
    throw CodedError("ERR_MODEL", "Module " + spec.unetPath + " lacks the forward_localized method; re-export the model");
  if (device_.is_cuda()) {
    // cuDNN picks the fastest convolution algorithm per shape on first use.
    at::globalContext().setBenchmarkCuDNN(envFlag("FASTCOMPOSER_CUDNN_BENCHMARK", true));
    // PyTorch lets cuDNN use TF32 in float32 convolutions by default (so does Python);
    // FASTCOMPOSER_TF32=0 asks for full float32 (process-wide, as PyTorch's own switch).
    if (const char* tf32 = std::getenv("FASTCOMPOSER_TF32"); tf32 && *tf32)
      at::globalContext().setAllowTF32CuDNN(std::strcmp(tf32, "0") != 0);
    channelsLast_ = envFlag("FASTCOMPOSER_CHANNELS_LAST", dtype_ != at::kFloat);
    if (envFlag("FASTCOMPOSER_CUDA_GRAPHS", true)) graphs_ = GraphCache::create(device_);
  } else {
    // oneDNN's NHWC convolutions: the VAE decode at 256x256 took 40 ms instead of 66-74 ms
    // (docs/PERFORMANCE.md); same numbers to ~1e-6.
    channelsLast_ = envFlag("FASTCOMPOSER_CHANNELS_LAST", true);
    prepack_ = envFlag("FASTCOMPOSER_PREPACK", true) && (dtype_ != at::kBFloat16 || cpuHasOneDnnBfloat16());
    // FASTCOMPOSER_PREPACK_CONV: unset, convolutions too where their packed layout does not depend
    // on the input's size (prepack.h); 1 always, 0 never.
    const char* conv = std::getenv("FASTCOMPOSER_PREPACK_CONV");
    prepackConvolutions_ = prepack_ && (conv && *conv ? std::strcmp(conv, "0") != 0 : !convolutionLayoutsDependOnInputSize(dtype_));
  }
  timed(loadTimings_.convertMs, [&] {
    // Only floating parameters change dtype; int buffers (position ids, frequency indices) stay.
    if (dtype_ != at::kFloat)
      for (torch::jit::Module* module : {&textEncoder, &imageEncoder, &postfuse, &unet, &vaeDecoder}) module->to(dtype_);
    // Prepacking reorders the convolution weights from any layout: no NHWC copy first.
    if (channelsLast_ && !prepackConvolutions_) {
      toChannelsLast(unet);
      toChannelsLast(vaeDecoder);
    }
  });
  timed(loadTimings_.passesMs, [&] { optimizeGraphs(); });
  timed(loadTimings_.prepackMs, [&] { prepackWeights(filesAtRead); });
  // What is still read from the files' mappings gets memory of its own (mapped_load.h).
  timed(loadTimings_.convertMs, [&] {
    for (torch::jit::Module* module : {&textEncoder, &imageEncoder, &postfuse, &unet, &vaeDecoder}) ownMappedTensors(*module);
  });
  // The mappings are gone (the last check of each file came as it was unmapped): weights read
  // from a file that changed meanwhile would go unnoticed from here on. Cache files that the
  // prepacked weights point into are checked after each call (checkMappedFiles), and here.
  for (const MappedModuleFile& file : mappedFiles)
    if (file.status->disturbed()) throw fileChangedError(file.path);
  checkMappedFiles();
  // The constructor runs on the device's job thread (addon.cc), where later calls run too:
  // cuDNN and cuBLAS handles are per thread.
  timed(loadTimings_.warmupMs, [&] {
    if (device_.is_cuda() && envFlag("FASTCOMPOSER_WARMUP", true)) warmup();
  });
  loadTimings_.totalMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - loadStart).count();
}

void Model::checkMappedFiles() const {
  for (const std::shared_ptr<MappedFile>& file : packedMappings_) {
    if (file->disturbed())
      throw CodedError("ERR_MODEL", "The prepack cache file " + file->path() +
                                        " changed while this model read weights from it (cut short or written again by another "
                                        "program): the call's results are void. Load the model again");
  }
}

// Before the first run, so that the executors see the rewritten graphs (graph_passes.h).
void Model::optimizeGraphs() {
  if (!envFlag("FASTCOMPOSER_GRAPH_PASSES", true)) return;
  for (torch::jit::Module* module : {&unet, &vaeDecoder}) {
    GraphPassCounts c = optimizeForInference(*module, channelsLast_);
    graphPasses_.groupNorms += c.groupNorms;
    graphPasses_.fusedSilus += c.fusedSilus;
    graphPasses_.droppedContiguous += c.droppedContiguous;
  }
}

// After the graph passes (they match aten::group_norm and the NHWC copies, not the prepacked ops).
// FASTCOMPOSER_PREPACK_LINEAR=0 keeps linear layers on ATen (MKL): bit-identical to the unpacked
// model, slower where MKL takes its generic path.
void Model::prepackWeights(const std::map<std::string, std::string>& filesAtRead) {
  if (!prepack_) return;
  PrepackOptions options;
  options.channelsLast = channelsLast_;
  options.convolutions = prepackConvolutions_;
  options.linears = envFlag("FASTCOMPOSER_PREPACK_LINEAR", true);
  // Packed convolutions were laid out for this thread count (prepack.h): a load with another
  // count packs its own.
  const std::string variant = spec_.dtype + (options.channelsLast ? " nhwc" : " nchw") +
                              (options.convolutions ? " conv threads " + std::to_string(at::get_num_threads()) : " no-conv") +
                              (options.linears ? " linear" : " no-linear");
  const std::pair<torch::jit::Module*, const std::string*> modules[] = {{&textEncoder, &spec_.textEncoderPath},
                                                                        {&imageEncoder, &spec_.imageEncoderPath},
                                                                        {&postfuse, &spec_.postfusePath},
                                                                        {&unet, &spec_.unetPath},
                                                                        {&vaeDecoder, &spec_.vaeDecoderPath}};
  for (const auto& [module, path] : modules) {
    PackedWeightCache cache(spec_.prepackCacheDir, *path, filesAtRead.at(*path), spec_.dtype, variant, spec_.prepackCacheMinBytes);
    options.cache = &cache;
    PrepackCounts c = prepackForCpu(*module, options);
    cache.save();
    if (std::shared_ptr<MappedFile> mapping = cache.mapping()) packedMappings_.push_back(std::move(mapping));
    prepacked_.convolutions += c.convolutions;
    prepacked_.linears += c.linears;
    prepacked_.weights += c.weights;
    prepacked_.bytes += c.bytes;
    prepacked_.fromCache += c.fromCache;
  }
}

// One small call of each module at load, so CUDA's lazy start-up (context, cuBLAS and cuDNN
// handles, allocator pools) is not paid by the first generate().
void Model::warmup() {
  c10::InferenceMode guard;
  auto opts = at::TensorOptions().device(device_).dtype(dtype_);
  at::Tensor ids = at::zeros({1, spec_.maxLength}, at::TensorOptions().device(device_).dtype(at::kLong));
  at::Tensor text = textEncoder.forward({ids}).toTensor();
  at::Tensor pixels = at::zeros({1, 224, 224, 3}, at::TensorOptions().device(device_).dtype(at::kByte));
  imageEncoder.forward({pixels});
  at::Tensor latents = prepareLatents(at::zeros({2, spec_.latentChannels, 8, 8}, opts));
  at::Tensor t = at::full({2}, 999.0, at::TensorOptions().device(device_).dtype(at::kFloat));
  unet.forward({latents, t, text.expand({2, text.size(1), text.size(2)}).contiguous()});
  vaeDecoder.forward({prepareLatents(at::zeros({1, spec_.latentChannels, 8, 8}, opts))});
  torch::cuda::synchronize(device_.index());
}

std::vector<at::Tensor> Model::runUnet(const std::string& method, const std::vector<at::Tensor>& inputs) {
  if (graphs_) {
    if (auto outputs = graphs_->run(unet, method, inputs)) {
      graphReplayed_.store(true);
      // Copies: the graph's output tensors are overwritten by the next replay, and multistep
      // schedulers (PNDM, DPM++) keep earlier model outputs.
      std::vector<at::Tensor> owned;
      for (const at::Tensor& y : *outputs) owned.push_back(y.clone());
      return owned;
    }
  }
  graphReplayed_.store(false);
  c10::IValue out = unet.get_method(method)(std::vector<c10::IValue>(inputs.begin(), inputs.end()));
  if (out.isTensor()) return {out.toTensor()};
  std::vector<at::Tensor> owned;
  for (const c10::IValue& v : out.toTupleRef().elements()) owned.push_back(v.toTensor());
  return owned;
}

at::Tensor Model::prepareLatents(const at::Tensor& x) const {
  at::Tensor y = x.to(dtype_);
  return channelsLast_ ? y.contiguous(at::MemoryFormat::ChannelsLast) : y;
}

}  // namespace fc
