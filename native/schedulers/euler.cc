// Euler's method on the probability-flow ODE in sigma space (Karras et al. 2022, algorithm 2
// without churn). Matches diffusers' EulerDiscreteScheduler with s_churn = 0.
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"

namespace fc::sched {
namespace {

class Euler final : public Scheduler {
 public:
  explicit Euler(const SchedulerConfig& cfg) {
    noise_ = resolveNoiseSchedule(cfg, /*rescaleKnown=*/true);
    prediction_ = cfg.predictionType.value_or("epsilon");
    spacing_ = cfg.timestepSpacing.value_or("linspace");
    offset_ = cfg.stepsOffset.value_or(0);
    timestepType_ = cfg.timestepType.value_or("discrete");
    finalSigmas_ = cfg.finalSigmasType.value_or("zero");
    const std::string interpolation = cfg.interpolationType.value_or("linear");
    requireOneOf("prediction_type", prediction_, {"epsilon", "v_prediction", "sample", "original_sample"});
    requireOneOf("timestep_spacing", spacing_, {"linspace", "leading", "trailing"});
    requireOneOf("timestep_type", timestepType_, {"discrete", "continuous"});
    requireOneOf("final_sigmas_type", finalSigmas_, {"zero", "sigma_min"});
    if (interpolation != "linear") {
      unsupported("interpolation_type", "\"" + interpolation + "\"", "only \"linear\" is implemented");
    }
    if (cfg.useKarrasSigmas && *cfg.useKarrasSigmas) {
      unsupported("use_karras_sigmas", "true", "Karras sigmas are not implemented");
    }
    alphasCumprod_ = makeAlphasCumprod(noise_, /*pinLastForZeroSnr=*/true);
  }

  void setTimesteps(int64_t n, const at::Device& device) override {
    if (n < 1) throw std::invalid_argument("euler: numInferenceSteps must be >= 1");
    EulerGrid g = eulerGrid(alphasCumprod_, spacing_, offset_, n);
    std::vector<double> s = g.sigmas;
    if (finalSigmas_ == "sigma_min") {
      s.push_back(trainSigmas(alphasCumprod_.slice(0, 0, 1))[0].item<double>());
    } else {
      s.push_back(0.0);
    }
    sigmas_ = floatTensor(s);  // stays on the CPU: its entries are per-step scalars
    at::Tensor ts;
    if (timestepType_ == "continuous" && prediction_ == "v_prediction") {
      // 0.25 * log(sigma), one 0-dim op per entry as the reference does.
      ts = at::empty({sigmas_.size(0) - 1}, at::kFloat);
      for (int64_t i = 0; i + 1 < sigmas_.size(0); ++i) ts[i] = at::log(sigmas_[i]) * 0.25;
    } else {
      ts = at::from_blob(g.timesteps.data(), {static_cast<int64_t>(g.timesteps.size())}, at::kFloat).clone();
    }
    timesteps_ = ts.to(device);
    initSigma_ = eulerInitNoiseSigma(sigmas_, spacing_);
  }

  const at::Tensor& timesteps() const override { return timesteps_; }
  double initNoiseSigma() const override { return initSigma_; }

  at::Tensor scaleModelInput(const at::Tensor& x, int64_t stepIndex) override {
    checkStepIndex("euler", stepIndex, steps());
    return eulerScaleModelInput(x, sigmas_[stepIndex]);
  }

  at::Tensor step(const at::Tensor& eps, int64_t stepIndex, const at::Tensor& x, std::optional<at::Generator>) override {
    if (!timesteps_.defined()) throw std::logic_error("euler: setTimesteps was not called");
    checkStepIndex("euler", stepIndex, steps());
    const at::Tensor sample = x.to(at::kFloat);
    const at::Tensor sigma = sigmas_[stepIndex];
    const at::Tensor sigmaHat = sigma * 1.0;  // no churn: gamma = 0
    at::Tensor x0;
    if (prediction_ == "epsilon") {
      x0 = sample - sigmaHat * eps;
    } else if (prediction_ == "v_prediction") {
      x0 = eps * (-sigma / at::pow(at::pow(sigma, 2) + 1, 0.5)) + sample / (at::pow(sigma, 2) + 1);
    } else {
      x0 = eps;
    }
    const at::Tensor derivative = (sample - x0) / sigmaHat;
    const at::Tensor dt = sigmas_[stepIndex + 1] - sigmaHat;
    return (sample + derivative * dt).to(eps.scalar_type());
  }

 private:
  NoiseScheduleConfig noise_;
  std::string prediction_;
  std::string spacing_;
  int64_t offset_ = 0;
  std::string timestepType_;
  std::string finalSigmas_;
  at::Tensor alphasCumprod_;

  at::Tensor sigmas_;
  at::Tensor timesteps_;
  double initSigma_ = 1.0;
};

}  // namespace

std::unique_ptr<Scheduler> makeEuler(const SchedulerConfig& cfg) { return std::make_unique<Euler>(cfg); }

}  // namespace fc::sched
