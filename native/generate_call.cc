#include "generate_call.h"

#include <chrono>

#include "device_memory.h"
#include "errors.h"
#include "js_job.h"
#include "subject_pixels.h"

namespace fc {
namespace {

// Wall-clock laps between stages, each ended by a device synchronisation.
class StageClock {
 public:
  explicit StageClock(const at::Device& device) : device_(device), start_(now()), last_(start_) {}
  double lap() {
    synchronize(device_);
    auto t = now();
    double ms = std::chrono::duration<double, std::milli>(t - last_).count();
    last_ = t;
    return ms;
  }
  double total() const { return std::chrono::duration<double, std::milli>(last_ - start_).count(); }

 private:
  static std::chrono::steady_clock::time_point now() { return std::chrono::steady_clock::now(); }
  at::Device device_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace

at::Tensor readSubjectPixels(EnvJobs& envJobs, const std::vector<at::Tensor>& images, int64_t size) {
  at::Tensor pixels;
  if (!envJobs.whileAlive([&] { pixels = prepareSubjectPixels(images, size); })) throw AbortedError();
  return pixels;
}

GenerateCall readGenerateCall(Napi::Env env, const Napi::Object& obj, const ModelSpec& spec, JsKeepAlive& keepAlive) {
  GenerateCall call;
  Napi::Value imagesValue = obj.Get("subjectImages");
  const bool hasImages = !imagesValue.IsUndefined() && !imagesValue.IsNull();
  if (hasImages) {
    call.images = guarded(env, [&] { return subjectImagesFromJs(env, imagesValue, "subjectImages", keepAlive); });
    call.subjectSize = pixelSizeFromJs(env, obj.Get("subjectSize"), "subjectSize");
  }
  call.prompt = guarded(env, [&] { return promptJobFromJs(obj, spec.maxLength, hasImages); });
  if (hasImages && call.images.size() != call.prompt.subjectPositions.size())
    throw toJsError(env, {"ERR_SUBJECT_COUNT", "One subject picture per subject position is needed"});
  call.job = guarded(env, [&] { return denoiseJobFromJs(obj, spec); });
  return call;
}

void runGenerate(const std::shared_ptr<Model>& model, EnvJobs& envJobs, GenerateCall& call, const ProgressFn& progress,
                 const std::atomic<bool>& aborted, GenerateOutput& out) {
  Pipeline pipeline(model);
  // Stage times, synchronised with the device so they measure work, not queueing.
  StageClock clock(model->device());
  if (!call.images.empty() && !call.prompt.objectEmbeds.defined()) {
    at::Tensor pixels = readSubjectPixels(envJobs, call.images, call.subjectSize);
    call.images.clear();  // views; their buffers are released with the job's JS part
    call.prompt.objectEmbeds = pipeline.encodeSubjects(pixels);
  }
  out.encodeSubjectsMs = clock.lap();
  PromptEmbeds embeds = pipeline.encodePrompt(call.prompt);
  out.encodePromptMs = clock.lap();
  out.denoised = pipeline.denoise(embeds, call.job, progress, aborted);
  out.denoiseMs = clock.lap();
  if (aborted.load()) throw AbortedError();
  out.images = pipeline.decode(out.denoised.latents);
  out.decodeMs = clock.lap();
  out.totalMs = clock.total();
}

void runGenerateBatch(const std::shared_ptr<Model>& model, EnvJobs& envJobs, std::vector<GenerateCall>& calls,
                      const std::vector<AbortFlag>& flags, const ProgressFn& progress, const std::atomic<bool>& aborted,
                      std::vector<GenerateOutput>& outs) {
  TORCH_CHECK(flags.size() == calls.size(), "one abort flag per call is needed");
  outs.assign(calls.size(), GenerateOutput{});
  Pipeline pipeline(model);
  StageClock clock(model->device());
  // The calls still wanted; a call aborted before it started is left out from here on.
  std::vector<size_t> index;
  for (size_t k = 0; k < calls.size(); ++k) {
    if (flags[k] && flags[k]->load())
      outs[k].aborted = true;
    else
      index.push_back(k);
  }
  // Every call's subjects through the image encoder as one batch.
  std::vector<at::Tensor> pixels;
  std::vector<size_t> withPixels;
  for (size_t k : index) {
    GenerateCall& call = calls[k];
    if (call.images.empty() || call.prompt.objectEmbeds.defined()) continue;
    TORCH_CHECK(withPixels.empty() || call.subjectSize == calls[withPixels[0]].subjectSize, "batched calls need the same subject size");
    pixels.push_back(readSubjectPixels(envJobs, call.images, call.subjectSize));
    call.images.clear();
    withPixels.push_back(k);
  }
  if (!pixels.empty()) {
    at::Tensor embeds = pipeline.encodeSubjects(pixels.size() == 1 ? pixels[0] : at::cat(pixels, 0));
    int64_t row = 0;
    for (size_t n = 0; n < withPixels.size(); ++n) {
      const int64_t count = pixels[n].size(0);
      calls[withPixels[n]].prompt.objectEmbeds = embeds.slice(0, row, row + count);
      row += count;
    }
  }
  const double encodeSubjectsMs = clock.lap();
  std::vector<BatchMember> members;
  for (size_t k : index) {
    if (aborted.load()) throw AbortedError();
    members.push_back({pipeline.encodePrompt(calls[k].prompt), calls[k].job, flags[k].get()});
  }
  const double encodePromptMs = clock.lap();
  ProgressFn memberProgress;
  if (progress)
    memberProgress = [&](const StepEvent& event) {
      StepEvent e = event;
      e.member = static_cast<int64_t>(index[static_cast<size_t>(event.member)]);
      progress(e);
    };
  std::vector<BatchOutcome> outcomes =
      members.empty() ? std::vector<BatchOutcome>{} : pipeline.denoiseBatch(members, memberProgress, aborted);
  const double denoiseMs = clock.lap();
  if (aborted.load()) throw AbortedError();
  // The finished calls' latents through the VAE decoder as one batch.
  std::vector<at::Tensor> latents;
  std::vector<size_t> finished;
  for (size_t n = 0; n < outcomes.size(); ++n) {
    GenerateOutput& out = outs[index[n]];
    if (outcomes[n].aborted) {
      out.aborted = true;
      continue;
    }
    out.denoised = std::move(outcomes[n].result);
    latents.push_back(out.denoised.latents);
    finished.push_back(index[n]);
  }
  at::Tensor images;
  if (!latents.empty()) images = pipeline.decode(latents.size() == 1 ? latents[0] : at::cat(latents, 0));
  const double decodeMs = clock.lap();
  int64_t row = 0;
  for (size_t k : finished) {
    GenerateOutput& out = outs[k];
    const int64_t count = out.denoised.latents.size(0);
    out.images = images.slice(0, row, row + count).contiguous();
    row += count;
    out.encodeSubjectsMs = encodeSubjectsMs;
    out.encodePromptMs = encodePromptMs;
    out.denoiseMs = denoiseMs;
    out.decodeMs = decodeMs;
    out.totalMs = clock.total();
    out.batchedCalls = static_cast<int64_t>(members.size());
  }
}

Napi::Object denoiseResultToJs(Napi::Env env, const DenoiseResult& result) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("latents", tensorToJs(env, result.latents));
  if (result.attentionMaps.defined()) out.Set("attentionMaps", tensorToJs(env, result.attentionMaps));
  return out;
}

Napi::Value generateOutputToJs(Napi::Env env, const GenerateOutput& out) {
  if (out.aborted) {
    Napi::Object result = Napi::Object::New(env);
    result.Set("aborted", true);
    return result;
  }
  Napi::Object result = denoiseResultToJs(env, out.denoised);
  result.Set("images", tensorToJs(env, out.images));
  Napi::Object timings = Napi::Object::New(env);
  timings.Set("encodeSubjectsMs", out.encodeSubjectsMs);
  timings.Set("encodePromptMs", out.encodePromptMs);
  timings.Set("denoiseMs", out.denoiseMs);
  timings.Set("decodeMs", out.decodeMs);
  timings.Set("totalMs", out.totalMs);
  timings.Set("batchedCalls", static_cast<double>(out.batchedCalls));
  result.Set("timings", timings);
  return result;
}

}  // namespace fc
