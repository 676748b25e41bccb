// Module init: what the .node exports. lib/native-contract.ts is the TypeScript mirror of this
// list; change both together.
#include <ATen/Parallel.h>
#include <napi.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <memory>
#include <string>
#include <utility>

#include "abort_flag.h"
#include "addon_data.h"
#include "cpu_memory.h"
#include "device_memory.h"
#include "errors.h"
#include "job_thread.h"
#include "js_job.h"
#include "libtorch_log.h"
#include "model_wrap.h"
#include "module_loader.h"
#include "process_exit.h"
#include "testing_exports.h"
#include "workers.h"

namespace fc {
namespace {

Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw toJsError(env, {"ERR_INVALID_ARGUMENT", "Expected a model spec object"});
  ModelSpec spec = guarded(env, [&] { return modelSpecFromJs(info[0].As<Napi::Object>()); });
  auto model = std::make_shared<std::shared_ptr<Model>>();
  // Loaded on the device's job thread, like every later call on the model (job_thread.h).
  const std::string device = spec.device == "cuda" ? "cuda:0" : spec.device;
  JobThread* thread = guarded(env, [&] { return &deviceJobThread(device); });
  return startJob(
      env, *thread,
      [spec, model] {
        // The model is freed on its job thread, wherever its last reference goes (dispose,
        // garbage collection, a finished worker): CUDA frees and graph teardown stay off the
        // event loop and in order with the device's other work.
        *model = std::shared_ptr<Model>(new Model(spec), [](Model* m) { deviceJobThread(m->device().str()).post([m] { delete m; }); });
      },
      [model](Napi::Env e) -> Napi::Value { return ModelWrap::Wrap(e, std::move(*model)); });
}

// auditModule(path) -> Promise<string[]>: reads a module file's code without its weights and
// without running any of it, audits it (module_audit.h) and resolves with the operators it uses;
// rejects with ERR_MODEL when it is refused. On the CPU job thread, like all torch work.
Napi::Value AuditModule(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw toJsError(env, {"ERR_INVALID_ARGUMENT", "Expected a module file path"});
  const std::string path = info[0].As<Napi::String>();
  auto operators = std::make_shared<std::vector<std::string>>();
  return startJob(
      env, deviceJobThread("cpu"), [path, operators] { *operators = loadAuditedModule(path, std::nullopt, Weights::Skip).operators; },
      [operators](Napi::Env e) -> Napi::Value {
        Napi::Array out = Napi::Array::New(e, operators->size());
        for (size_t i = 0; i < operators->size(); ++i) out.Set(static_cast<uint32_t>(i), (*operators)[i]);
        return out;
      });
}

// takeWarnings() -> string[]: libtorch's warnings collected on the job threads since the last call.
Napi::Value TakeWarnings(const Napi::CallbackInfo& info) {
  std::vector<std::string> warnings = takeWarnings();
  Napi::Array out = Napi::Array::New(info.Env(), warnings.size());
  for (size_t i = 0; i < warnings.size(); ++i) out.Set(static_cast<uint32_t>(i), warnings[i]);
  return out;
}

Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    return Napi::Number::New(info.Env(), torch::cuda::is_available() ? static_cast<double>(torch::cuda::device_count()) : 0);
  });
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), at::get_num_threads()); }

// cudaMemory(index, resetPeak?) -> { allocated, peakAllocated, reserved, peakReserved } in bytes.
Napi::Value CudaMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto index = static_cast<c10::DeviceIndex>(info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0);
    DeviceMemory m = cudaMemory(index, info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value());
    Napi::Object out = Napi::Object::New(env);
    out.Set("allocated", static_cast<double>(m.allocated));
    out.Set("peakAllocated", static_cast<double>(m.peakAllocated));
    out.Set("reserved", static_cast<double>(m.reserved));
    out.Set("peakReserved", static_cast<double>(m.peakReserved));
    return out;
  });
}

// process.on('exit') on the main thread calls this (lib/native.ts), also for process.exit(),
// which runs no environment cleanup (process_exit.h prepareProcessExit); later 'exit' listeners
// still run.
Napi::Value PrepareExit(const Napi::CallbackInfo& info) {
  prepareProcessExit();
  return info.Env().Undefined();
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  preferHugePagesForLargeTensors();
  recordDefaultThreads();
  quietNnpack();
  auto* data = new AddonData();
  env.SetInstanceData(data);  // deleted by Node with the environment
  registerEnvironment(data->jobs);
  // When this environment ends (a worker thread terminated, the process exiting normally); the
  // wait is bounded so that a long load or decode cannot hold the end up.
  env.AddCleanupHook([jobs = data->jobs] { endEnvironment(jobs); });
  Napi::Function abortFlag = AbortFlagWrap::Define(env);
  data->abortFlagClass = Napi::Persistent(abortFlag);
  Napi::Function modelClass = ModelWrap::Define(env);
  data->modelClass = Napi::Persistent(modelClass);
  exports.Set("AbortFlag", abortFlag);
  exports.Set("NativeModel", modelClass);
  exports.Set("torchVersion", Napi::String::New(env, TORCH_VERSION));
  exports.Set("loadModel", Napi::Function::New(env, LoadModel, "loadModel"));
  exports.Set("auditModule", Napi::Function::New(env, AuditModule, "auditModule"));
  exports.Set("takeWarnings", Napi::Function::New(env, TakeWarnings, "takeWarnings"));
  exports.Set("cudaDeviceCount", Napi::Function::New(env, CudaDeviceCount, "cudaDeviceCount"));
  exports.Set("prepareExit", Napi::Function::New(env, PrepareExit, "prepareExit"));
  exports.Set("cudaMemory", Napi::Function::New(env, CudaMemory, "cudaMemory"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("testing", testingExports(env));
  return exports;
}

}  // namespace fc

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return fc::Init(env, exports); }

NODE_API_MODULE(fastcomposer, InitAddon)
