// Ancestral Euler sampling (k-diffusion's sample_euler_ancestral, eta = 1): an Euler step down to
// sigma_down, then fresh noise of size sigma_up. Matches diffusers'
// EulerAncestralDiscreteScheduler, including where the noise is drawn: from the CPU generator
// given to step(), in the model output's dtype, then moved to the model output's device.
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"

namespace fc::sched {
namespace {

class EulerAncestral final : public Scheduler {
 public:
  explicit EulerAncestral(const SchedulerConfig& cfg) {
    noise_ = resolveNoiseSchedule(cfg, /*rescaleKnown=*/true);
    prediction_ = cfg.predictionType.value_or("epsilon");
    spacing_ = cfg.timestepSpacing.value_or("linspace");
    offset_ = cfg.stepsOffset.value_or(0);
    requireOneOf("prediction_type", prediction_, {"epsilon", "v_prediction"});
    requireOneOf("timestep_spacing", spacing_, {"linspace", "leading", "trailing"});
    alphasCumprod_ = makeAlphasCumprod(noise_, /*pinLastForZeroSnr=*/true);
  }

  void setTimesteps(int64_t n, const at::Device& device) override {
    if (n < 1) throw std::invalid_argument("euler-ancestral: numInferenceSteps must be >= 1");
    EulerGrid g = eulerGrid(alphasCumprod_, spacing_, offset_, n);
    g.sigmas.push_back(0.0);
    sigmas_ = floatTensor(g.sigmas);  // stays on the CPU: its entries are per-step scalars
    timesteps_ = at::from_blob(g.timesteps.data(), {static_cast<int64_t>(g.timesteps.size())}, at::kFloat).clone().to(device);
    initSigma_ = eulerInitNoiseSigma(sigmas_, spacing_);
  }

  const at::Tensor& timesteps() const override { return timesteps_; }
  double initNoiseSigma() const override { return initSigma_; }

  at::Tensor scaleModelInput(const at::Tensor& x, int64_t stepIndex) override {
    checkStepIndex("euler-ancestral", stepIndex, steps());
    return eulerScaleModelInput(x, sigmas_[stepIndex]);
  }

  at::Tensor step(const at::Tensor& eps, int64_t stepIndex, const at::Tensor& x, std::optional<at::Generator> generator) override {
    if (!timesteps_.defined()) {
      throw std::logic_error("euler-ancestral: setTimesteps was not called");
    }
    checkStepIndex("euler-ancestral", stepIndex, steps());
    const at::Tensor sigma = sigmas_[stepIndex];
    const at::Tensor sample = x.to(at::kFloat);
    at::Tensor x0;
    if (prediction_ == "epsilon") {
      x0 = sample - sigma * eps;
    } else {
      x0 = eps * (-sigma / at::pow(at::pow(sigma, 2) + 1, 0.5)) + sample / (at::pow(sigma, 2) + 1);
    }
    const at::Tensor& from = sigma;
    const at::Tensor to = sigmas_[stepIndex + 1];
    const at::Tensor to2 = at::pow(to, 2);
    const at::Tensor up = at::pow(to2 * (at::pow(from, 2) - to2) / at::pow(from, 2), 0.5);
    const at::Tensor down = at::pow(to2 - at::pow(up, 2), 0.5);
    const at::Tensor derivative = (sample - x0) / sigma;
    const at::Tensor dt = down - sigma;
    at::Tensor prev = sample + derivative * dt;

    at::Tensor noise;
    if (generator && generator->defined()) {
      // A CPU generator draws on the CPU, then the noise moves to the model output's device.
      noise = at::randn(eps.sizes(), *generator, at::TensorOptions().dtype(eps.scalar_type()).device(generator->device())).to(eps.device());
    } else {
      noise = at::randn(eps.sizes(), std::optional<at::Generator>(), eps.options());
    }
    prev = prev + noise * up;
    return prev.to(eps.scalar_type());
  }

 private:
  NoiseScheduleConfig noise_;
  std::string prediction_;
  std::string spacing_;
  int64_t offset_ = 0;
  at::Tensor alphasCumprod_;

  at::Tensor sigmas_;
  at::Tensor timesteps_;
  double initSigma_ = 1.0;
};

}  // namespace

std::unique_ptr<Scheduler> makeEulerAncestral(const SchedulerConfig& cfg) { return std::make_unique<EulerAncestral>(cfg); }

}  // namespace fc::sched
