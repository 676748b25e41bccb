#include "pipeline.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include "errors.h"

namespace fc {
namespace {

at::Tensor runModule(torch::jit::Module& module, std::vector<c10::IValue> inputs) { return module.forward(std::move(inputs)).toTensor(); }

}  // namespace

at::Tensor Pipeline::encodeSubjects(const at::Tensor& pixelsU8) {
  model_->useThreads();
  c10::InferenceMode guard;
  TORCH_CHECK(pixelsU8.dim() == 4 && pixelsU8.size(1) == pixelsU8.size(2) && pixelsU8.size(3) == 3 && pixelsU8.scalar_type() == at::kByte,
              "subject pixels must be uint8 [S,size,size,3]");
  std::lock_guard<std::mutex> lock(model_->runLock);
  at::Tensor embeds = runModule(model_->imageEncoder, {pixelsU8.to(model_->device())});
  model_->checkMappedFiles();  // each method's results are void if weights read as zeros (model.h)
  return embeds;
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
  model_->checkMappedFiles();
  return out;
}

namespace {

// Classifier-free guidance runs the unconditional and the conditioned prediction as one UNet batch:
// [negative x n, conditioned x n]. Without guidance the batch is the n conditioned rows.
struct ConditioningBatches {
  bool cfg = false;
  int64_t batch = 0;    // the UNet's batch: 2n with guidance, n without
  at::Tensor textOnly;  // [batch,L,D] for the steps i <= mergeThreshold
  at::Tensor fused;     // [batch,L,D] for the subject-conditioned steps
};

ConditioningBatches conditioningBatches(const PromptEmbeds& embeds, int64_t n, double guidanceScale) {
  ConditioningBatches out;
  out.cfg = guidanceScale > 1.0;
  auto batchOf = [&](const at::Tensor& cond) {
    at::Tensor c = cond.expand({n, cond.size(1), cond.size(2)});
    return out.cfg ? at::cat({embeds.negative.expand({n, cond.size(1), cond.size(2)}), c}, 0).contiguous() : c.contiguous();
  };
  out.textOnly = batchOf(embeds.textOnly);
  out.fused = batchOf(embeds.fused);
  out.batch = out.cfg ? 2 * n : n;
  return out;
}

// Per subject and latent cell, the factor its token's attention is multiplied by:
// [batch,S,h,w] in the model's dtype on its device, ones for the unconditional half.
at::Tensor regionWeights(const Model& model, const DenoiseJob& job, int64_t batch, bool cfg) {
  const int64_t factor = model.spec().vaeScaleFactor;
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
  return full.contiguous().to(model.device(), model.dtype());
}

// The extra inputs of unet.forward_localized. It runs only when asked for: maps, or regions with a
// strength above 0. Without either, every step takes the plain forward and the numbers are those
// of the plain pipeline (forward_localized's explicit softmax differs from forward's fused
// attention by ~1e-6).
struct LocalizedAttention {
  bool on = false;
  at::Tensor positions;  // int64 [S] on the device
  at::Tensor weights;    // regionWeights()
};

LocalizedAttention localizedAttention(const Model& model, const DenoiseJob& job, const ConditioningBatches& cond) {
  LocalizedAttention out;
  out.on = usesLocalizedAttention(job);
  if (out.on) {
    out.positions = at::tensor(job.subjectPositions, at::kLong).to(model.device());
    out.weights = regionWeights(model, job, cond.batch, cond.cfg);
  }
  return out;
}

// The subject tokens' attention maps ([n,S,h,w] float32) summed over the steps that made them.
struct MapSum {
  at::Tensor sum;
  int64_t steps = 0;
  void add(const at::Tensor& maps) {
    sum = sum.defined() ? sum + maps : maps;
    ++steps;
  }
};

// Initial latents from a CPU generator, so a seed gives the same picture on every device (and the
// same numbers as diffusers with torch.Generator('cpu').manual_seed(seed)); or the caller's.
at::Tensor initialNoise(const Model& model, const DenoiseJob& job, const Scheduler& scheduler, at::Generator& generator) {
  const int64_t factor = model.spec().vaeScaleFactor;
  at::Tensor x;
  if (job.latents.defined()) {
    x = job.latents.to(at::kFloat);
  } else {
    x = at::randn({job.numImages, model.spec().latentChannels, job.height / factor, job.width / factor}, generator,
                  at::TensorOptions().dtype(at::kFloat));
  }
  return (x * scheduler.initNoiseSigma()).to(model.device());
}

// Each map normalised to sum to 1, on the host; uniform maps when no step was subject-conditioned
// (alpha = 0): there was no attention to report.
at::Tensor normalisedMaps(const MapSum& maps, const DenoiseJob& job, int64_t vaeScaleFactor) {
  at::Tensor sum = maps.sum;
  if (maps.steps == 0) {
    const int64_t subjects = static_cast<int64_t>(job.subjectPositions.size());
    sum = at::ones({job.numImages, subjects, job.height / vaeScaleFactor, job.width / vaeScaleFactor}, at::kFloat);
  }
  at::Tensor total = sum.sum({-2, -1}, true).clamp_min(1e-30);
  return (sum / total).to(at::kCPU).contiguous();
}

// One UNet evaluation for step i, guided: forward, or forward_localized on the subject-conditioned
// steps when localized attention is on (adding that step's maps to `maps`).
at::Tensor guidedNoise(Model& model, const at::Tensor& x, const at::Tensor& t, bool subjectStep, const ConditioningBatches& cond,
                       const LocalizedAttention& localized, double guidanceScale, MapSum& maps) {
  at::Tensor modelInput = model.prepareLatents(x);
  at::Tensor eps;
  if (localized.on && subjectStep) {
    std::vector<at::Tensor> outputs =
        model.runUnet("forward_localized", {modelInput, t, cond.fused, localized.positions, localized.weights});
    TORCH_CHECK(outputs.size() >= 2, "unet.forward_localized must return (noise, maps); re-export the model");
    eps = outputs[0];
    at::Tensor m = outputs[1].to(at::kFloat);
    if (cond.cfg) m = m.slice(0, cond.batch / 2, cond.batch);  // the conditioned half
    maps.add(m);
  } else {
    eps = model.runUnet("forward", {modelInput, t, subjectStep ? cond.fused : cond.textOnly})[0];
  }
  eps = eps.to(at::kFloat);
  if (cond.cfg) {
    auto halves = eps.chunk(2, 0);
    eps = halves[0] + guidanceScale * (halves[1] - halves[0]);
  }
  return eps;
}

}  // namespace

bool usesLocalizedAttention(const DenoiseJob& job) {
  const bool regions = job.regionInside.defined() && job.regionStrength > 0.0;
  return !job.subjectPositions.empty() && (job.attentionMaps || regions);
}

bool batchable(const DenoiseJob& a, const DenoiseJob& b) {
  return a.steps == b.steps && a.scheduler == b.scheduler && a.width == b.width && a.height == b.height && !usesLocalizedAttention(a) &&
         !usesLocalizedAttention(b);
}

DenoiseResult Pipeline::denoise(const PromptEmbeds& embeds, const DenoiseJob& job, const ProgressFn& progress,
                                const std::atomic<bool>& aborted) {
  model_->useThreads();
  c10::InferenceMode guard;
  std::unique_ptr<Scheduler> scheduler = makeScheduler(job.scheduler, job.schedulerConfig);
  scheduler->setTimesteps(job.steps, model_->device());
  const at::Tensor timesteps = scheduler->timesteps();
  const at::Tensor hostTimesteps = timesteps.to(at::kCPU, at::kDouble);
  const int64_t total = scheduler->steps();

  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(job.seed);
  at::Tensor x = initialNoise(*model_, job, *scheduler, generator);
  const ConditioningBatches cond = conditioningBatches(embeds, job.numImages, job.guidanceScale);
  const LocalizedAttention localized = localizedAttention(*model_, job, cond);
  MapSum maps;

  std::lock_guard<std::mutex> lock(model_->runLock);
  for (int64_t i = 0; i < total; ++i) {
    if (aborted.load()) throw AbortedError();
    const bool subjectStep = static_cast<double>(i) > job.mergeThreshold;
    at::Tensor modelInput = scheduler->scaleModelInput(cond.cfg ? at::cat({x, x}, 0) : x, i);
    at::Tensor t = timesteps.slice(0, i, i + 1).to(at::kFloat).expand({cond.batch});
    at::Tensor eps = guidedNoise(*model_, modelInput, t, subjectStep, cond, localized, job.guidanceScale, maps);
    x = scheduler->step(eps, i, x, generator);
    if (progress) progress({i + 1, total, hostTimesteps[i].item<double>()});
  }

  if (aborted.load()) throw AbortedError();  // a signal during the last step counts too
  model_->checkMappedFiles();
  DenoiseResult result;
  result.latents = x.to(at::kCPU);
  if (job.attentionMaps && !job.subjectPositions.empty()) result.attentionMaps = normalisedMaps(maps, job, model_->spec().vaeScaleFactor);
  return result;
}

namespace {

// One batch member's own denoising state: what denoise() keeps in its locals.
struct MemberState {
  std::unique_ptr<Scheduler> scheduler;
  at::Generator generator;
  at::Tensor x;
  ConditioningBatches cond;
  bool live = true;
};

// The UNet's text input for the live members, in member order: each member's rows of its
// text-only or fused conditioning, whichever its step asks for.
at::Tensor batchConditioning(const std::vector<MemberState>& states, const std::vector<size_t>& live,
                             const std::vector<bool>& subjectStep) {
  std::vector<at::Tensor> parts;
  for (size_t k = 0; k < live.size(); ++k) {
    const ConditioningBatches& cond = states[live[k]].cond;
    parts.push_back(subjectStep[k] ? cond.fused : cond.textOnly);
  }
  return parts.size() == 1 ? parts[0] : at::cat(parts, 0);
}

}  // namespace

std::vector<BatchOutcome> Pipeline::denoiseBatch(const std::vector<BatchMember>& members, const ProgressFn& progress,
                                                 const std::atomic<bool>& aborted) {
  model_->useThreads();
  c10::InferenceMode guard;
  TORCH_CHECK(!members.empty(), "a batch needs at least one call");
  std::vector<MemberState> states(members.size());
  for (size_t k = 0; k < members.size(); ++k) {
    const DenoiseJob& job = members[k].job;
    TORCH_CHECK(batchable(members[0].job, job), "batched calls need the same size, steps and scheduler, and no attention maps or regions");
    MemberState& s = states[k];
    s.scheduler = makeScheduler(job.scheduler, job.schedulerConfig);
    s.scheduler->setTimesteps(job.steps, model_->device());
    s.generator = at::make_generator<at::CPUGeneratorImpl>(job.seed);
    s.x = initialNoise(*model_, job, *s.scheduler, s.generator);
    s.cond = conditioningBatches(members[k].embeds, job.numImages, job.guidanceScale);
  }
  const at::Tensor timesteps = states[0].scheduler->timesteps();
  const at::Tensor hostTimesteps = timesteps.to(at::kCPU, at::kDouble);
  const int64_t total = states[0].scheduler->steps();
  for (const MemberState& s : states)
    TORCH_CHECK(s.scheduler->steps() == total && at::equal(s.scheduler->timesteps().to(at::kCPU, at::kDouble), hostTimesteps),
                "batched calls need the same timesteps (the same scheduler configuration)");

  std::vector<BatchOutcome> out(members.size());
  // The text input is rebuilt only when the live members or their conditioning change.
  std::vector<size_t> cachedLive;
  std::vector<bool> cachedSteps;
  at::Tensor hidden;
  std::lock_guard<std::mutex> lock(model_->runLock);
  auto dropAborted = [&] {
    for (size_t k = 0; k < members.size(); ++k)
      if (states[k].live && members[k].aborted && members[k].aborted->load()) {
        states[k].live = false;
        states[k].x = at::Tensor();
        out[k].aborted = true;
      }
  };
  for (int64_t i = 0; i < total; ++i) {
    if (aborted.load()) throw AbortedError();
    dropAborted();
    std::vector<size_t> live;
    std::vector<bool> subjectStep;
    for (size_t k = 0; k < members.size(); ++k)
      if (states[k].live) {
        live.push_back(k);
        subjectStep.push_back(static_cast<double>(i) > members[k].job.mergeThreshold);
      }
    if (live.empty()) return out;
    if (live != cachedLive || subjectStep != cachedSteps) {
      hidden = batchConditioning(states, live, subjectStep);
      cachedLive = live;
      cachedSteps = subjectStep;
    }
    std::vector<at::Tensor> inputs;
    for (size_t k : live) {
      const MemberState& s = states[k];
      inputs.push_back(s.scheduler->scaleModelInput(s.cond.cfg ? at::cat({s.x, s.x}, 0) : s.x, i));
    }
    at::Tensor input = inputs.size() == 1 ? inputs[0] : at::cat(inputs, 0);
    at::Tensor t = timesteps.slice(0, i, i + 1).to(at::kFloat).expand({input.size(0)});
    at::Tensor eps = model_->runUnet("forward", {model_->prepareLatents(input), t, hidden})[0].to(at::kFloat);
    int64_t row = 0;
    for (size_t k : live) {
      MemberState& s = states[k];
      at::Tensor e = eps.slice(0, row, row + s.cond.batch);
      row += s.cond.batch;
      if (s.cond.cfg) {
        auto halves = e.chunk(2, 0);
        e = halves[0] + members[k].job.guidanceScale * (halves[1] - halves[0]);
      }
      s.x = s.scheduler->step(e, i, s.x, s.generator);
    }
    if (progress)
      for (size_t k : live) progress({i + 1, total, hostTimesteps[i].item<double>(), static_cast<int64_t>(k)});
  }
  if (aborted.load()) throw AbortedError();
  dropAborted();  // a signal during the last step counts too
  model_->checkMappedFiles();
  for (size_t k = 0; k < members.size(); ++k)
    if (states[k].live) out[k].result.latents = states[k].x.to(at::kCPU);
  return out;
}

at::Tensor Pipeline::decode(const at::Tensor& latents) {
  model_->useThreads();
  c10::InferenceMode guard;
  std::lock_guard<std::mutex> lock(model_->runLock);
  at::Tensor z = latents.to(model_->device(), at::kFloat) / model_->spec().latentScale;
  at::Tensor image = runModule(model_->vaeDecoder, {model_->prepareLatents(z)}).to(at::kFloat);
  // Same rounding as diffusers' postprocess: clamp(x/2+0.5) * 255, round half to even.
  image = ((image / 2 + 0.5).clamp(0, 1) * 255).round().to(at::kByte);
  model_->checkMappedFiles();
  return image.permute({0, 2, 3, 1}).contiguous().to(at::kCPU);
}

}  // namespace fc
