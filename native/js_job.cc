#include "js_job.h"

#include <cmath>

#include "errors.h"
#include "js_tensor.h"
#include "subject_pixels.h"

namespace fc {
namespace {

[[noreturn]] void fail(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

std::string getString(const Napi::Object& obj, const char* key) {
  Napi::Value v = obj.Get(key);
  if (!v.IsString()) fail(obj.Env(), std::string("Expected string for ") + key);
  return v.As<Napi::String>();
}

double getNumber(const Napi::Object& obj, const char* key) {
  Napi::Value v = obj.Get(key);
  if (!v.IsNumber()) fail(obj.Env(), std::string("Expected number for ") + key);
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) fail(obj.Env(), std::string("Expected finite number for ") + key);
  return d;
}

int64_t getInt(const Napi::Object& obj, const char* key, int64_t min, int64_t max) {
  double d = getNumber(obj, key);
  if (d != std::floor(d) || d < static_cast<double>(min) || d > static_cast<double>(max))
    fail(obj.Env(), std::string("Expected integer between ") + std::to_string(min) + " and " + std::to_string(max) + " for " + key);
  return static_cast<int64_t>(d);
}

bool getBool(const Napi::Object& obj, const char* key, bool fallback) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) fail(obj.Env(), std::string("Expected boolean for ") + key);
  return v.As<Napi::Boolean>();
}

std::vector<int64_t> getIntArray(const Napi::Object& obj, const char* key, int64_t max) {
  Napi::Value v = obj.Get(key);
  std::vector<int64_t> out;
  if (v.IsUndefined()) return out;
  if (!v.IsArray()) fail(obj.Env(), std::string("Expected array for ") + key);
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) fail(obj.Env(), std::string("Expected numbers in ") + key);
    double d = e.As<Napi::Number>().DoubleValue();
    if (d != std::floor(d) || d < 0 || d > static_cast<double>(max)) fail(obj.Env(), std::string("Out-of-range entry in ") + key);
    out.push_back(static_cast<int64_t>(d));
  }
  return out;
}

// int64 [1,L]: L is the text encoder's context length, model.json maxLength.
at::Tensor getIds(const Napi::Object& obj, const char* key, int64_t maxLength) {
  at::Tensor ids = tensorFromJs(obj.Env(), obj.Get(key), key);
  if (ids.scalar_type() != at::kLong || ids.dim() != 2 || ids.size(0) != 1 || ids.size(1) != maxLength)
    fail(obj.Env(), "Expected int64 [1," + std::to_string(maxLength) + "] tensor for " + key);
  return ids;
}

template <typename T>
void readOptional(const Napi::Object& obj, const char* key, std::optional<T>& out);

template <>
void readOptional(const Napi::Object& obj, const char* key, std::optional<double>& out) {
  Napi::Value v = obj.Get(key);
  if (v.IsNumber()) out = v.As<Napi::Number>().DoubleValue();
}
template <>
void readOptional(const Napi::Object& obj, const char* key, std::optional<int64_t>& out) {
  Napi::Value v = obj.Get(key);
  if (v.IsNumber()) out = v.As<Napi::Number>().Int64Value();
}
template <>
void readOptional(const Napi::Object& obj, const char* key, std::optional<bool>& out) {
  Napi::Value v = obj.Get(key);
  if (v.IsBoolean()) out = v.As<Napi::Boolean>().Value();
}
template <>
void readOptional(const Napi::Object& obj, const char* key, std::optional<std::string>& out) {
  Napi::Value v = obj.Get(key);
  if (v.IsString()) out = v.As<Napi::String>().Utf8Value();
}
template <>
void readOptional(const Napi::Object& obj, const char* key, std::optional<std::vector<double>>& out) {
  Napi::Value v = obj.Get(key);
  if (!v.IsArray()) return;
  Napi::Array a = v.As<Napi::Array>();
  std::vector<double> values;
  for (uint32_t i = 0; i < a.Length(); ++i) values.push_back(a.Get(i).As<Napi::Number>().DoubleValue());
  out = std::move(values);
}

}  // namespace

ModelSpec modelSpecFromJs(const Napi::Object& obj) {
  ModelSpec spec;
  spec.textEncoderPath = getString(obj, "textEncoder");
  spec.imageEncoderPath = getString(obj, "imageEncoder");
  spec.postfusePath = getString(obj, "postfuse");
  spec.unetPath = getString(obj, "unet");
  spec.vaeDecoderPath = getString(obj, "vaeDecoder");
  spec.device = getString(obj, "device");
  spec.dtype = getString(obj, "dtype");
  if (!obj.Get("threads").IsUndefined()) spec.threads = getInt(obj, "threads", 0, 1024);
  spec.latentScale = getNumber(obj, "latentScale");
  spec.vaeScaleFactor = getInt(obj, "vaeScaleFactor", 1, 64);
  spec.latentChannels = getInt(obj, "latentChannels", 1, 64);
  spec.maxLength = getInt(obj, "maxLength", 1, 4096);
  if (!obj.Get("prepackCacheDir").IsUndefined()) spec.prepackCacheDir = getString(obj, "prepackCacheDir");
  if (!obj.Get("prepackCacheMinBytes").IsUndefined()) spec.prepackCacheMinBytes = getInt(obj, "prepackCacheMinBytes", 0, int64_t{1} << 50);
  return spec;
}

SchedulerConfig schedulerConfigFromJs(const Napi::Value& value) {
  SchedulerConfig c;
  if (!value.IsObject()) return c;
  Napi::Object o = value.As<Napi::Object>();
  readOptional(o, "num_train_timesteps", c.numTrainTimesteps);
  readOptional(o, "beta_start", c.betaStart);
  readOptional(o, "beta_end", c.betaEnd);
  readOptional(o, "beta_schedule", c.betaSchedule);
  readOptional(o, "trained_betas", c.trainedBetas);
  readOptional(o, "set_alpha_to_one", c.setAlphaToOne);
  readOptional(o, "skip_prk_steps", c.skipPrkSteps);
  readOptional(o, "steps_offset", c.stepsOffset);
  readOptional(o, "clip_sample", c.clipSample);
  readOptional(o, "clip_sample_range", c.clipSampleRange);
  readOptional(o, "prediction_type", c.predictionType);
  readOptional(o, "timestep_spacing", c.timestepSpacing);
  readOptional(o, "timestep_type", c.timestepType);
  readOptional(o, "interpolation_type", c.interpolationType);
  readOptional(o, "use_karras_sigmas", c.useKarrasSigmas);
  readOptional(o, "solver_order", c.solverOrder);
  readOptional(o, "algorithm_type", c.algorithmType);
  readOptional(o, "solver_type", c.solverType);
  readOptional(o, "lower_order_final", c.lowerOrderFinal);
  readOptional(o, "euler_at_final", c.eulerAtFinal);
  readOptional(o, "final_sigmas_type", c.finalSigmasType);
  readOptional(o, "thresholding", c.thresholding);
  readOptional(o, "rescale_betas_zero_snr", c.rescaleBetasZeroSnr);
  return c;
}

PromptJob promptJobFromJs(const Napi::Object& obj, int64_t maxLength, bool subjectsFollow) {
  PromptJob job;
  job.inputIds = getIds(obj, "inputIds", maxLength);
  job.textOnlyIds = getIds(obj, "textOnlyIds", maxLength);
  job.negativeIds = getIds(obj, "negativeIds", maxLength);
  job.subjectPositions = getIntArray(obj, "subjectPositions", maxLength - 1);
  Napi::Value embeds = obj.Get("objectEmbeds");
  if (!embeds.IsUndefined() && !embeds.IsNull()) job.objectEmbeds = tensorFromJs(obj.Env(), embeds, "objectEmbeds");
  if (!job.subjectPositions.empty() && !subjectsFollow &&
      (!job.objectEmbeds.defined() || job.objectEmbeds.dim() != 2 ||
       job.objectEmbeds.size(0) != static_cast<int64_t>(job.subjectPositions.size())))
    fail(obj.Env(), "Expected objectEmbeds [S,D] with one row per subject position");
  return job;
}

DenoiseJob denoiseJobFromJs(const Napi::Object& obj, const ModelSpec& spec) {
  Napi::Env env = obj.Env();
  const int64_t vaeScaleFactor = spec.vaeScaleFactor;
  DenoiseJob job;
  job.steps = getInt(obj, "steps", 1, 1000);
  job.guidanceScale = getNumber(obj, "guidanceScale");
  job.mergeThreshold = getNumber(obj, "mergeThreshold");
  job.seed = static_cast<uint64_t>(getInt(obj, "seed", 0, (int64_t{1} << 53) - 1));
  job.width = getInt(obj, "width", 8, 8192);
  job.height = getInt(obj, "height", 8, 8192);
  if (job.width % vaeScaleFactor || job.height % vaeScaleFactor)
    fail(env, "width and height must be multiples of the model's VAE scale factor (" + std::to_string(vaeScaleFactor) + ")");
  job.numImages = getInt(obj, "numImages", 1, 64);
  job.scheduler = getString(obj, "scheduler");
  job.schedulerConfig = schedulerConfigFromJs(obj.Get("schedulerConfig"));
  Napi::Value latents = obj.Get("latents");
  if (!latents.IsUndefined() && !latents.IsNull()) {
    job.latents = tensorFromJs(env, latents, "latents");
    if (job.latents.dim() != 4 || job.latents.size(0) != job.numImages || job.latents.size(1) != spec.latentChannels ||
        job.latents.size(2) != job.height / vaeScaleFactor || job.latents.size(3) != job.width / vaeScaleFactor ||
        job.latents.scalar_type() != at::kFloat)
      fail(env,
           "Expected float32 latents [numImages," + std::to_string(spec.latentChannels) + ",height/f,width/f] (f: the VAE scale factor)");
  }
  job.attentionMaps = getBool(obj, "attentionMaps", false);
  job.subjectPositions = getIntArray(obj, "subjectPositions", spec.maxLength - 1);
  Napi::Value inside = obj.Get("regionInside");
  if (!inside.IsUndefined() && !inside.IsNull()) {
    job.regionInside = tensorFromJs(env, inside, "regionInside");
    const int64_t s = static_cast<int64_t>(job.subjectPositions.size());
    if (job.regionInside.dim() != 3 || job.regionInside.size(0) != s || job.regionInside.size(1) != job.height / vaeScaleFactor ||
        job.regionInside.size(2) != job.width / vaeScaleFactor || job.regionInside.scalar_type() != at::kFloat)
      fail(env, "Expected float32 regionInside [subjects,height/f,width/f] (f: the VAE scale factor)");
    job.regionStrength = getNumber(obj, "regionStrength");
    job.regionExclusive = getBool(obj, "regionExclusive", false);
    std::vector<int64_t> has = getIntArray(obj, "hasRegion", 1);
    if (static_cast<int64_t>(has.size()) != s) fail(env, "Expected hasRegion with one entry per subject");
    for (int64_t v : has) job.hasRegion.push_back(v != 0);
  }
  return job;
}

int64_t pixelSizeFromJs(Napi::Env env, const Napi::Value& value, const char* name) {
  if (!value.IsNumber()) throw toJsError(env, {"ERR_INVALID_ARGUMENT", std::string("Expected a number for ") + name});
  const double d = value.As<Napi::Number>().DoubleValue();
  if (!(d >= 1 && d <= 4096) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw toJsError(env, {"ERR_INVALID_ARGUMENT", std::string("Expected an integer between 1 and 4096 for ") + name});
  return static_cast<int64_t>(d);
}

std::vector<at::Tensor> subjectImagesFromJs(Napi::Env env, const Napi::Value& value, const char* what, JsKeepAlive& keepAlive) {
  if (!value.IsArray()) fail(env, std::string("Expected an array of uint8 [H,W,3] tensors for ") + what);
  Napi::Array a = value.As<Napi::Array>();
  std::vector<at::Tensor> images;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    const std::string name = std::string(what) + "[" + std::to_string(i) + "]";
    images.push_back(tensorViewOfJs(env, a.Get(i), name.c_str(), keepAlive));
  }
  checkSubjectImages(images);
  return images;
}

PromptEmbeds promptEmbedsFromJs(const Napi::Object& obj, int64_t maxLength) {
  auto load = [&](const char* key) {
    at::Tensor t = tensorFromJs(obj.Env(), obj.Get(key), key);
    if (t.dim() != 3 || t.size(0) != 1 || t.size(1) != maxLength || !t.is_floating_point())
      fail(obj.Env(), "Expected float [1," + std::to_string(maxLength) + ",D] tensor for " + key);
    return t;  // host copy; moved to the model's device and dtype on its job thread
  };
  PromptEmbeds e;
  e.fused = load("fused");
  e.textOnly = load("textOnly");
  e.negative = load("negative");
  return e;
}

Napi::Object promptEmbedsToJs(Napi::Env env, const PromptEmbeds& embeds) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("fused", tensorToJs(env, embeds.fused.to(at::kFloat)));
  out.Set("textOnly", tensorToJs(env, embeds.textOnly.to(at::kFloat)));
  out.Set("negative", tensorToJs(env, embeds.negative.to(at::kFloat)));
  return out;
}

}  // namespace fc
