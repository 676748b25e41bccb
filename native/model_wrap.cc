#include "model_wrap.h"

#include <algorithm>

#include "abort_flag.h"
#include "addon_data.h"
#include "device_memory.h"
#include "generate_call.h"
#include "graph_passes.h"
#include "js_job.h"
#include "js_tensor.h"
#include "subject_pixels.h"
#include "workers.h"

namespace fc {
namespace {

AbortFlag abortFlagFrom(const Napi::Value& value) {
  if (value.IsObject() && value.As<Napi::Object>().InstanceOf(addonData(value.Env()).abortFlagClass.Value()))
    return AbortFlagWrap::Unwrap(value.As<Napi::Object>())->flag();
  return nullptr;
}

}  // namespace

Napi::Function ModelWrap::Define(Napi::Env env) {
  Napi::Function cls =
      DefineClass(env, "NativeModel",
                  {InstanceMethod<&ModelWrap::EncodeSubjects>("encodeSubjects"), InstanceMethod<&ModelWrap::EncodePrompt>("encodePrompt"),
                   InstanceMethod<&ModelWrap::Denoise>("denoise"), InstanceMethod<&ModelWrap::Decode>("decode"),
                   InstanceMethod<&ModelWrap::Generate>("generate"), InstanceMethod<&ModelWrap::GenerateBatch>("generateBatch"),
                   InstanceMethod<&ModelWrap::Dispose>("dispose"), InstanceMethod<&ModelWrap::Info>("info")});
  return cls;
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {}

Napi::Object ModelWrap::Wrap(Napi::Env env, std::shared_ptr<Model> model) {
  Napi::Object obj = addonData(env).modelClass.New({});
  ModelWrap::Unwrap(obj)->model_ = std::move(model);
  return obj;
}

std::shared_ptr<Model> ModelWrap::modelOrThrow(Napi::Env env) const {
  if (!model_) throw toJsError(env, {"ERR_DISPOSED", "This FastComposer model has been disposed"});
  return model_;
}

namespace {

// Every method reads its arguments the same way: a missing or mistyped one is ERR_INVALID_ARGUMENT
// naming it (js_job.h checks what the objects hold, against the model's spec).
Napi::Object objectArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (!info[index].IsObject()) throw toJsError(info.Env(), {"ERR_INVALID_ARGUMENT", std::string("Expected an object for ") + name});
  return info[index].As<Napi::Object>();
}

}  // namespace

// encodeSubjects(subjectImages: uint8 [H,W,3][], size): pad + resize + image encoder, all on the job thread.
Napi::Value ModelWrap::EncodeSubjects(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = modelOrThrow(env);
  auto keepAlive = std::make_shared<JsKeepAlive>();
  std::vector<at::Tensor> images = guarded(env, [&] { return subjectImagesFromJs(env, info[0], "subjectImages", *keepAlive); });
  if (images.empty()) throw toJsError(env, {"ERR_INVALID_ARGUMENT", "Expected at least one subject image"});
  const int64_t size = pixelSizeFromJs(env, info[1], "size");
  auto out = std::make_shared<at::Tensor>();
  std::shared_ptr<EnvJobs> envJobs = addonData(env).jobs;
  return startJob(
      env, model->jobs(),
      [model, images, size, out, envJobs] {
        at::Tensor pixels = readSubjectPixels(*envJobs, images, size);
        *out = Pipeline(model).encodeSubjects(pixels).to(at::kFloat).to(at::kCPU);
      },
      [out](Napi::Env e) -> Napi::Value { return tensorToJs(e, *out); },
      keepAlive);  // the pictures' JS buffers, released on the main thread once settled
}

// encodePrompt(job: PromptJob) -> PromptEmbeds (float32, host).
Napi::Value ModelWrap::EncodePrompt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = modelOrThrow(env);
  Napi::Object obj = objectArg(info, 0, "job");
  PromptJob job = guarded(env, [&] { return promptJobFromJs(obj, model->spec().maxLength); });
  auto out = std::make_shared<PromptEmbeds>();
  return startJob(
      env, model->jobs(),
      [model, job, out] {
        // Host float32 copies made here, on the job thread, not on the main thread.
        PromptEmbeds e = Pipeline(model).encodePrompt(job);
        out->fused = e.fused.to(at::kCPU, at::kFloat).contiguous();
        out->textOnly = e.textOnly.to(at::kCPU, at::kFloat).contiguous();
        out->negative = e.negative.to(at::kCPU, at::kFloat).contiguous();
      },
      [out](Napi::Env e) -> Napi::Value { return promptEmbedsToJs(e, *out); });
}

// denoise(embeds: PromptEmbeds, job: DenoiseJob, onStep, abortFlag) -> { latents, attentionMaps? }.
Napi::Value ModelWrap::Denoise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = modelOrThrow(env);
  Napi::Object embedsObj = objectArg(info, 0, "embeds");
  Napi::Object jobObj = objectArg(info, 1, "job");
  PromptEmbeds embeds = guarded(env, [&] { return promptEmbedsFromJs(embedsObj, model->spec().maxLength); });
  DenoiseJob job = guarded(env, [&] { return denoiseJobFromJs(jobObj, model->spec()); });
  auto out = std::make_shared<DenoiseResult>();
  return startDenoisingJob(
      env, model->jobs(),
      [model, embeds, job, out](const ProgressFn& progress, const std::atomic<bool>& aborted) {
        PromptEmbeds onDevice;
        onDevice.fused = embeds.fused.to(model->device(), model->dtype());
        onDevice.textOnly = embeds.textOnly.to(model->device(), model->dtype());
        onDevice.negative = embeds.negative.to(model->device(), model->dtype());
        *out = Pipeline(model).denoise(onDevice, job, progress, aborted);
      },
      [out](Napi::Env e) -> Napi::Value { return denoiseResultToJs(e, *out); }, info[2], abortFlagFrom(info[3]));
}

// decode(latents: float32 [N,C,h,w]) -> uint8 [N,H,W,3].
Napi::Value ModelWrap::Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = modelOrThrow(env);
  at::Tensor latents = guarded(env, [&] { return tensorFromJs(env, info[0], "latents"); });
  if (latents.dim() != 4 || latents.size(1) != model->spec().latentChannels || latents.scalar_type() != at::kFloat)
    throw toJsError(
        env, {"ERR_INVALID_ARGUMENT", "Expected float32 latents [N," + std::to_string(model->spec().latentChannels) + ",h,w] for latents"});
  auto out = std::make_shared<at::Tensor>();
  return startJob(
      env, model->jobs(), [model, latents, out] { *out = Pipeline(model).decode(latents); },
      [out](Napi::Env e) -> Napi::Value { return tensorToJs(e, *out); });
}

// generate(job, onStep, abortFlag): job = { subjectImages?, subjectSize?, prompt: PromptJob fields,
// denoise fields }. The subject pictures are padded and resized on the worker (subject_pixels.h).
Napi::Value ModelWrap::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = modelOrThrow(env);
  auto keepAlive = std::make_shared<JsKeepAlive>();
  auto call = std::make_shared<GenerateCall>(readGenerateCall(env, objectArg(info, 0, "job"), model->spec(), *keepAlive));
  auto out = std::make_shared<GenerateOutput>();
  std::shared_ptr<EnvJobs> envJobs = addonData(env).jobs;
  return startDenoisingJob(
      env, model->jobs(),
      [model, envJobs, call, out](const ProgressFn& progress, const std::atomic<bool>& aborted) {
        runGenerate(model, *envJobs, *call, progress, aborted, *out);
      },
      [out](Napi::Env e) -> Napi::Value { return generateOutputToJs(e, *out); }, info[1], abortFlagFrom(info[2]),
      keepAlive);  // the pictures' JS buffers, released on the main thread once settled
}

// generateBatch(jobs, onStep, abortFlags): generate()'s jobs, batchable (pipeline.h), as one batch;
// one abort flag per job. onStep's events carry the job's index as `member`. Resolves with one
// result per job, { aborted: true } for a job whose flag was set.
Napi::Value ModelWrap::GenerateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = modelOrThrow(env);
  if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() == 0)
    throw toJsError(env, {"ERR_INVALID_ARGUMENT", "Expected a non-empty array for jobs"});
  Napi::Array jobs = info[0].As<Napi::Array>();
  if (!info[2].IsArray() || info[2].As<Napi::Array>().Length() != jobs.Length())
    throw toJsError(env, {"ERR_INVALID_ARGUMENT", "Expected one AbortFlag per job for abortFlags"});
  Napi::Array flagValues = info[2].As<Napi::Array>();
  auto keepAlive = std::make_shared<JsKeepAlive>();
  auto calls = std::make_shared<std::vector<GenerateCall>>();
  std::vector<AbortFlag> flags;
  for (uint32_t k = 0; k < jobs.Length(); ++k) {
    const std::string name = "jobs[" + std::to_string(k) + "]";
    if (!jobs.Get(k).IsObject()) throw toJsError(env, {"ERR_INVALID_ARGUMENT", "Expected an object for " + name});
    calls->push_back(readGenerateCall(env, jobs.Get(k).As<Napi::Object>(), model->spec(), *keepAlive));
    const GenerateCall& call = calls->back();
    const auto withImages = std::find_if(calls->begin(), calls->end(), [](const GenerateCall& c) { return !c.images.empty(); });
    if (!call.images.empty() && call.subjectSize != withImages->subjectSize)
      throw toJsError(env, {"ERR_INVALID_ARGUMENT", name + " has another subjectSize than the jobs before it"});
    if (!batchable(calls->front().job, call.job))
      throw toJsError(env, {"ERR_INVALID_ARGUMENT", name + " cannot share a batch with jobs[0]: the same size, steps and scheduler are "
                                                           "needed, and neither attention maps nor regions"});
    AbortFlag flag = abortFlagFrom(flagValues.Get(k));
    if (!flag) throw toJsError(env, {"ERR_INVALID_ARGUMENT", "Expected an AbortFlag for abortFlags[" + std::to_string(k) + "]"});
    flags.push_back(std::move(flag));
  }
  auto outs = std::make_shared<std::vector<GenerateOutput>>();
  std::shared_ptr<EnvJobs> envJobs = addonData(env).jobs;
  return startDenoisingJob(
      env, model->jobs(),
      [model, envJobs, calls, flags, outs](const ProgressFn& progress, const std::atomic<bool>& aborted) {
        runGenerateBatch(model, *envJobs, *calls, flags, progress, aborted, *outs);
      },
      [outs](Napi::Env e) -> Napi::Value {
        Napi::Array results = Napi::Array::New(e, outs->size());
        for (size_t k = 0; k < outs->size(); ++k) results.Set(static_cast<uint32_t>(k), generateOutputToJs(e, (*outs)[k]));
        return results;
      },
      info[1], nullptr, keepAlive);  // the pictures' JS buffers, released on the main thread once settled
}

// dispose() -> Promise<void>, settled once the model's job thread has run everything queued so
// far: the model's deletion is among it when this was its last reference (the deleter queues it
// there, addon.cc). Awaiting it means the device memory is back, also before the process exits;
// a CUDA model freed while the process tears CUDA down crashed the process. In-flight workers
// hold their own references: then the model goes when the last of them ends.
Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!model_) {
    auto deferred = Napi::Promise::Deferred::New(env);
    deferred.Resolve(env.Undefined());
    return deferred.Promise();
  }
  JobThread& thread = model_->jobs();
  model_.reset();
  return startJob(
      env, thread, [] {}, [](Napi::Env e) -> Napi::Value { return e.Undefined(); });
}

Napi::Value ModelWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = modelOrThrow(env);
  Napi::Object out = Napi::Object::New(env);
  out.Set("device", Napi::String::New(env, model->device().str()));
  out.Set("dtype", Napi::String::New(env, scalarTypeName(model->dtype())));
  out.Set("cudaGraph", Napi::Boolean::New(env, model->replaysCudaGraph()));
  const GraphPassCounts& passes = model->graphPasses();
  Napi::Object graph = Napi::Object::New(env);
  graph.Set("groupNorms", Napi::Number::New(env, passes.groupNorms));
  graph.Set("fusedSilus", Napi::Number::New(env, passes.fusedSilus));
  graph.Set("droppedContiguous", Napi::Number::New(env, passes.droppedContiguous));
  graph.Set("nhwcGroupNormKernel", Napi::Boolean::New(env, hasNhwcGroupNormKernel()));
  out.Set("graphPasses", graph);
  Napi::Object prepacked = Napi::Object::New(env);
  prepacked.Set("convolutions", model->prepacked().convolutions);
  prepacked.Set("linears", model->prepacked().linears);
  prepacked.Set("weights", model->prepacked().weights);
  prepacked.Set("bytes", static_cast<double>(model->prepacked().bytes));
  prepacked.Set("fromCache", model->prepacked().fromCache);
  out.Set("prepacked", prepacked);
  const LoadTimings& t = model->loadTimings();
  Napi::Object load = Napi::Object::New(env);
  load.Set("readMs", t.readMs);
  load.Set("deserializeMs", t.deserializeMs);
  load.Set("auditMs", t.auditMs);
  load.Set("convertMs", t.convertMs);
  load.Set("passesMs", t.passesMs);
  load.Set("prepackMs", t.prepackMs);
  load.Set("warmupMs", t.warmupMs);
  load.Set("totalMs", t.totalMs);
  out.Set("load", load);
  return out;
}

}  // namespace fc
