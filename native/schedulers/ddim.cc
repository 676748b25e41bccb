// DDIM (Song et al. 2021), deterministic (eta = 0, as the Stable Diffusion pipelines call it).
// Matches diffusers' DDIMScheduler.
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"

namespace fc::sched {
namespace {

class Ddim final : public Scheduler {
 public:
  explicit Ddim(const SchedulerConfig& cfg) {
    rejectThresholding(cfg);
    noise_ = resolveNoiseSchedule(cfg, /*rescaleKnown=*/true);
    clip_ = cfg.clipSample.value_or(true);
    clipRange_ = cfg.clipSampleRange.value_or(1.0);
    const bool alphaToOne = cfg.setAlphaToOne.value_or(true);
    offset_ = cfg.stepsOffset.value_or(0);
    prediction_ = cfg.predictionType.value_or("epsilon");
    spacing_ = cfg.timestepSpacing.value_or("leading");
    requireOneOf("prediction_type", prediction_, {"epsilon", "sample", "v_prediction"});
    requireOneOf("timestep_spacing", spacing_, {"linspace", "leading", "trailing"});
    alphasCumprod_ = makeAlphasCumprod(noise_, false);
    finalAlphaCumprod_ = alphaToOne ? at::scalar_tensor(1.0, at::kFloat) : alphasCumprod_[0];
  }

  void setTimesteps(int64_t n, const at::Device& device) override {
    const int64_t T = noise_.numTrainTimesteps;
    if (n < 1 || n > T) {
      throw std::invalid_argument("ddim: numInferenceSteps must be in [1, num_train_timesteps]");
    }
    n_ = n;
    std::vector<int64_t> ascending = discreteTimesteps(spacing_, T, n, offset_);
    ts_.assign(ascending.rbegin(), ascending.rend());
    requireTimestepsBelow("ddim", ts_, T, n);
    timesteps_ = at::tensor(ts_, at::TensorOptions().dtype(at::kLong)).to(at::kFloat).to(device);
  }

  const at::Tensor& timesteps() const override { return timesteps_; }
  double initNoiseSigma() const override { return 1.0; }
  at::Tensor scaleModelInput(const at::Tensor& x, int64_t) override { return x; }

  at::Tensor step(const at::Tensor& eps, int64_t stepIndex, const at::Tensor& x, std::optional<at::Generator>) override {
    if (!timesteps_.defined()) throw std::logic_error("ddim: setTimesteps was not called");
    checkStepIndex("ddim", stepIndex, static_cast<int64_t>(ts_.size()));
    const int64_t t = ts_[static_cast<size_t>(stepIndex)];
    const int64_t prevT = t - noise_.numTrainTimesteps / n_;
    const at::Tensor a = alphasCumprod_[t];
    const at::Tensor aPrev = prevT >= 0 ? alphasCumprod_[prevT] : finalAlphaCumprod_;
    const at::Tensor b = at::rsub(a, 1);

    at::Tensor x0;
    at::Tensor epsPred;
    if (prediction_ == "epsilon") {
      x0 = (x - at::pow(b, 0.5) * eps) / at::pow(a, 0.5);
      epsPred = eps;
    } else if (prediction_ == "sample") {
      x0 = eps;
      epsPred = (x - at::pow(a, 0.5) * x0) / at::pow(b, 0.5);
    } else {
      x0 = at::pow(a, 0.5) * x - at::pow(b, 0.5) * eps;
      epsPred = at::pow(a, 0.5) * eps + at::pow(b, 0.5) * x;
    }
    if (clip_) x0 = x0.clamp(-clipRange_, clipRange_);

    // eta = 0: the noise term vanishes but keeps the reference's arithmetic for the direction.
    const at::Tensor bPrev = at::rsub(aPrev, 1);
    const at::Tensor variance = (bPrev / b) * at::rsub(a / aPrev, 1);
    const at::Tensor stdDev = at::pow(variance, 0.5) * 0.0;
    const at::Tensor direction = at::pow(at::rsub(aPrev, 1) - at::pow(stdDev, 2), 0.5) * epsPred;
    return at::pow(aPrev, 0.5) * x0 + direction;
  }

 private:
  NoiseScheduleConfig noise_;
  bool clip_ = true;
  double clipRange_ = 1.0;
  int64_t offset_ = 0;
  std::string prediction_;
  std::string spacing_;
  at::Tensor alphasCumprod_;
  at::Tensor finalAlphaCumprod_;

  int64_t n_ = 0;
  std::vector<int64_t> ts_;
  at::Tensor timesteps_;
};

}  // namespace

std::unique_ptr<Scheduler> makeDdim(const SchedulerConfig& cfg) { return std::make_unique<Ddim>(cfg); }

}  // namespace fc::sched
