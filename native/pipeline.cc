#include "pipeline.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include "errors.h"

namespace fc {
namespace {

at::Tensor runModule(torch::jit::Module& module, std::vector<c10::IValue> inputs) {
  return module.forward(std::move(inputs)).toTensor();
}

}  // namespace

at::Tensor Pipeline::encodeSubjects(const at::Tensor& pixelsU8) {
  model_->useThreads();
  c10::InferenceMode guard;
  TORCH_CHECK(pixelsU8.dim() == 4 && pixelsU8.size(1) == pixelsU8.size(2) && pixelsU8.size(3) == 3 &&
                  pixelsU8.scalar_type() == at::kByte,
              "subject pixels must be uint8 [S,size,size,3]");
  std::lock_guard<std::mutex> lock(model_->runLock);
  return runModule(model_->imageEncoder, {pixelsU8.to(model_->device())});
}

PromptEmbeds Pipeline::encodePrompt(const PromptJob& job) {
  model_->useThreads();
  c10::InferenceMode guard;
  std::lock_guard<std::mutex> lock(model_->runLock);
  const at::Device& device = model_->device();
  // The three prompts go through the text encoder as one batch of 3.
  at::Tensor ids = at::cat({job.inputIds, job.textOnlyIds, job.negativeIds}, 0).to(device);
  at::Tensor text = runModule(model_->textEncoder, {ids});
  PromptEmbeds out;
  out.fused = text.slice(0, 0, 1);
  out.textOnly = text.slice(0, 1, 2);
  out.negative = text.slice(0, 2, 3);
  if (!job.subjectPositions.empty()) {
    TORCH_CHECK(job.objectEmbeds.defined() && job.objectEmbeds.size(0) == static_cast<int64_t>(job.subjectPositions.size()),
                "one subject embedding per subject position is needed");
    at::Tensor positions = at::tensor(job.subjectPositions, at::kLong).to(device);
    at::Tensor objects = job.objectEmbeds.to(device, model_->dtype());
    out.fused = runModule(model_->postfuse, {out.fused, objects, positions});
  }
  return out;
}

at::Tensor Pipeline::regionWeights(const DenoiseJob& job, int64_t batch, bool cfg) const {
  const int64_t factor = model_->spec().vaeScaleFactor;
  const int64_t h = job.height / factor, w = job.width / factor;
  const int64_t subjects = static_cast<int64_t>(job.subjectPositions.size());
  at::Tensor ones = at::ones({subjects, h, w}, at::kFloat);
  at::Tensor weights = ones;
  if (job.regionInside.defined()) {
    const double s = job.regionStrength;
    at::Tensor inside = job.regionInside.to(at::kFloat);
    // Outside its region a subject token keeps (1 - s) of its attention weight: s = 1 is hard.
    weights = 1.0 - s * (1.0 - inside);
    if (job.regionExclusive) {
      // Also keep every subject out of the other subjects' regions.
      at::Tensor hasRegion = at::zeros({subjects, 1, 1}, at::kFloat);
      for (int64_t i = 0; i < subjects; ++i)
        if (job.hasRegion[static_cast<size_t>(i)]) hasRegion[i] = 1.0;
      at::Tensor claimed = inside * hasRegion;
      at::Tensor others = (claimed.sum(0, true) - claimed).clamp(0.0, 1.0) * (1.0 - claimed);
      weights = weights * (1.0 - s * others);
    }
  }
  at::Tensor cond = weights.unsqueeze(0).expand({cfg ? batch / 2 : batch, subjects, h, w});
  // The unconditional half carries the negative prompt: its tokens get no bias.
  at::Tensor full = cfg ? at::cat({at::ones_like(cond), cond}, 0) : cond;
  return full.contiguous().to(model_->device(), model_->dtype());
}

DenoiseResult Pipeline::denoise(const PromptEmbeds& embeds, const DenoiseJob& job, const ProgressFn& progress,
                                const std::atomic<bool>& aborted) {
  model_->useThreads();
  c10::InferenceMode guard;
  const at::Device& device = model_->device();
  const int64_t n = job.numImages;
  const int64_t h = job.height / model_->spec().vaeScaleFactor, w = job.width / model_->spec().vaeScaleFactor;

  std::unique_ptr<Scheduler> scheduler = makeScheduler(job.scheduler, job.schedulerConfig);
  scheduler->setTimesteps(job.steps, device);
  const at::Tensor timesteps = scheduler->timesteps();
  const at::Tensor hostTimesteps = timesteps.to(at::kCPU, at::kDouble);
  const int64_t total = scheduler->steps();

  // Initial noise from a CPU generator, so a seed gives the same picture on every device (and
  // the same numbers as diffusers with torch.Generator('cpu').manual_seed(seed)).
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(job.seed);
  at::Tensor x;
  if (job.latents.defined()) {
    x = job.latents.to(at::kFloat);
  } else {
    x = at::randn({n, model_->spec().latentChannels, h, w}, generator, at::TensorOptions().dtype(at::kFloat));
  }
  x = (x * scheduler->initNoiseSigma()).to(device);

  const bool cfg = job.guidanceScale > 1.0;
  auto conditioning = [&](const at::Tensor& cond) {
    at::Tensor c = cond.expand({n, cond.size(1), cond.size(2)});
    return cfg ? at::cat({embeds.negative.expand({n, cond.size(1), cond.size(2)}), c}, 0).contiguous() : c.contiguous();
  };
  const at::Tensor textOnlyBatch = conditioning(embeds.textOnly);
  const at::Tensor fusedBatch = conditioning(embeds.fused);
  const int64_t batch = cfg ? 2 * n : n;

  // forward_localized runs only when asked for: maps, or regions with a strength above 0. Without
  // either, every step takes the plain forward and the numbers are those of the plain pipeline
  // (forward_localized's explicit softmax differs from forward's fused attention by ~1e-6).
  const bool regions = job.regionInside.defined() && job.regionStrength > 0.0;
  const bool localized = !job.subjectPositions.empty() && (job.attentionMaps || regions);
  at::Tensor positions, weights, mapSum;
  int64_t mapSteps = 0;
  if (localized) {
    positions = at::tensor(job.subjectPositions, at::kLong).to(device);
    weights = regionWeights(job, batch, cfg);
  }

  std::lock_guard<std::mutex> lock(model_->runLock);
  for (int64_t i = 0; i < total; ++i) {
    if (aborted.load()) throw AbortedError();
    const bool subjectStep = static_cast<double>(i) > job.mergeThreshold;
    at::Tensor modelInput = cfg ? at::cat({x, x}, 0) : x;
    modelInput = model_->prepareLatents(scheduler->scaleModelInput(modelInput, i));
    at::Tensor t = timesteps.slice(0, i, i + 1).to(at::kFloat).expand({batch});
    at::Tensor eps;
    if (localized && subjectStep) {
      std::vector<at::Tensor> outputs = model_->runUnet("forward_localized", {modelInput, t, fusedBatch, positions, weights});
      TORCH_CHECK(outputs.size() >= 2, "unet.forward_localized must return (noise, maps); re-export the model");
      eps = outputs[0];
      at::Tensor maps = outputs[1].to(at::kFloat);
      if (cfg) maps = maps.slice(0, n, 2 * n);
      mapSum = mapSum.defined() ? mapSum + maps : maps;
      ++mapSteps;
    } else {
      eps = model_->runUnet("forward", {modelInput, t, subjectStep ? fusedBatch : textOnlyBatch})[0];
    }
    eps = eps.to(at::kFloat);
    if (cfg) {
      auto halves = eps.chunk(2, 0);
      eps = halves[0] + job.guidanceScale * (halves[1] - halves[0]);
    }
    x = scheduler->step(eps, i, x, generator);
    if (progress) progress({i + 1, total, hostTimesteps[i].item<double>()});
  }

  if (aborted.load()) throw AbortedError();  // a signal during the last step counts too
  DenoiseResult result;
  result.latents = x.to(at::kCPU);
  if (job.attentionMaps && !job.subjectPositions.empty()) {
    const int64_t subjects = static_cast<int64_t>(job.subjectPositions.size());
    if (mapSteps == 0) {
      // No step was subject-conditioned (alpha = 0): no attention to report; uniform maps.
      mapSum = at::ones({n, subjects, h, w}, at::kFloat);
    }
    at::Tensor total = mapSum.sum({-2, -1}, true).clamp_min(1e-30);
    result.attentionMaps = (mapSum / total).to(at::kCPU).contiguous();
  }
  return result;
}

at::Tensor Pipeline::decode(const at::Tensor& latents) {
  model_->useThreads();
  c10::InferenceMode guard;
  std::lock_guard<std::mutex> lock(model_->runLock);
  at::Tensor z = latents.to(model_->device(), at::kFloat) / model_->spec().latentScale;
  at::Tensor image = runModule(model_->vaeDecoder, {model_->prepareLatents(z)}).to(at::kFloat);
  // Same rounding as diffusers' postprocess: clamp(x/2+0.5) * 255, round half to even.
  image = ((image / 2 + 0.5).clamp(0, 1) * 255).round().to(at::kByte);
  return image.permute({0, 2, 3, 1}).contiguous().to(at::kCPU);
}

}  // namespace fc
