// PNDM (pseudo numerical methods for diffusion models, Liu et al. 2022): optional Runge-Kutta
// warm-up ("prk") steps, then linear multistep ("plms") steps that combine up to four previous
// noise predictions. Matches diffusers' PNDMScheduler.
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"

namespace fc::sched {
namespace {

class Pndm final : public Scheduler {
 public:
  explicit Pndm(const SchedulerConfig& cfg) {
    noise_ = resolveNoiseSchedule(cfg, /*rescaleKnown=*/false);
    skipPrk_ = cfg.skipPrkSteps.value_or(false);
    const bool alphaToOne = cfg.setAlphaToOne.value_or(false);
    prediction_ = cfg.predictionType.value_or("epsilon");
    spacing_ = cfg.timestepSpacing.value_or("leading");
    offset_ = cfg.stepsOffset.value_or(0);
    requireOneOf("prediction_type", prediction_, {"epsilon", "v_prediction"});
    requireOneOf("timestep_spacing", spacing_, {"linspace", "leading", "trailing"});
    alphasCumprod_ = makeAlphasCumprod(noise_, false);
    finalAlphaCumprod_ = alphaToOne ? at::scalar_tensor(1.0, at::kFloat) : alphasCumprod_[0];
  }

  void setTimesteps(int64_t n, const at::Device& device) override {
    if (n < 1) throw std::invalid_argument("pndm: numInferenceSteps must be >= 1");
    const int64_t T = noise_.numTrainTimesteps;
    n_ = n;
    std::vector<int64_t> base = discreteTimesteps(spacing_, T, n, offset_);  // ascending
    requireTimestepsBelow("pndm", base, T, n);
    const auto m = static_cast<int64_t>(base.size());
    prk_.clear();
    std::vector<int64_t> plms;
    if (skipPrk_) {
      // base[:-1] ++ base[-2:-1] ++ base[-1:], reversed.
      std::vector<int64_t> fwd(base.begin(), base.end() - 1);
      if (m >= 2) fwd.push_back(base[static_cast<size_t>(m - 2)]);
      fwd.push_back(base.back());
      plms.assign(fwd.rbegin(), fwd.rend());
    } else {
      if (m < 4) {
        throw std::invalid_argument("pndm: with skip_prk_steps = false at least 4 inference steps are needed");
      }
      const int64_t half = T / n / 2;
      std::vector<int64_t> grid;  // base[-4:] each twice, plus (0, half) alternately
      for (int64_t k = m - 4; k < m; ++k) {
        grid.push_back(base[static_cast<size_t>(k)]);
        grid.push_back(base[static_cast<size_t>(k)] + half);
      }
      std::vector<int64_t> doubled;  // grid[:-1], each twice, then drop first and last
      for (size_t k = 0; k + 1 < grid.size(); ++k) {
        doubled.push_back(grid[k]);
        doubled.push_back(grid[k]);
      }
      prk_.assign(doubled.rbegin() + 1, doubled.rend() - 1);
      for (int64_t k = m - 4; k >= 0; --k) plms.push_back(base[static_cast<size_t>(k)]);
    }
    all_ = prk_;
    all_.insert(all_.end(), plms.begin(), plms.end());
    timesteps_ = at::tensor(all_, at::TensorOptions().dtype(at::kLong)).to(at::kFloat).to(device);
    ets_.clear();
    curSample_ = at::Tensor();
    curModelOutput_ = at::Tensor();
    counter_ = 0;
  }

  const at::Tensor& timesteps() const override { return timesteps_; }
  double initNoiseSigma() const override { return 1.0; }

  at::Tensor scaleModelInput(const at::Tensor& x, int64_t) override { return x; }

  at::Tensor step(const at::Tensor& eps, int64_t stepIndex, const at::Tensor& x, std::optional<at::Generator>) override {
    if (!timesteps_.defined()) throw std::logic_error("pndm: setTimesteps was not called");
    checkStepIndex("pndm", stepIndex, static_cast<int64_t>(all_.size()));
    if (stepIndex != counter_) {
      throw std::invalid_argument("pndm: steps must run in order (expected step " + std::to_string(counter_) + ", got " +
                                  std::to_string(stepIndex) + ")");
    }
    const int64_t t = all_[static_cast<size_t>(stepIndex)];
    at::Tensor out = (!skipPrk_ && counter_ < static_cast<int64_t>(prk_.size())) ? stepPrk(eps, t, x) : stepPlms(eps, t, x);
    ++counter_;
    return out;
  }

 private:
  at::Tensor stepPrk(const at::Tensor& eps, int64_t t, const at::Tensor& x) {
    const int64_t T = noise_.numTrainTimesteps;
    const int64_t diff = (counter_ % 2) ? 0 : T / n_ / 2;
    const int64_t prevT = t - diff;
    const int64_t curT = prk_[static_cast<size_t>(counter_ / 4 * 4)];
    at::Tensor mo = eps;
    switch (counter_ % 4) {
      case 0:
        curModelOutput_ = eps * (1.0 / 6);
        ets_.push_back(eps);
        curSample_ = x;
        break;
      case 1:
      case 2:
        curModelOutput_ = curModelOutput_ + eps * (1.0 / 3);
        break;
      default:
        mo = curModelOutput_ + eps * (1.0 / 6);
        curModelOutput_ = at::Tensor();
        break;
    }
    const at::Tensor& sample = curSample_.defined() ? curSample_ : x;
    return prevSample(sample, curT, prevT, mo);
  }

  at::Tensor stepPlms(const at::Tensor& eps, int64_t t, const at::Tensor& x) {
    const int64_t ratio = noise_.numTrainTimesteps / n_;
    if (!skipPrk_ && ets_.size() < 3) {
      throw std::logic_error("pndm: plms steps need three prk steps first");
    }
    int64_t curT = t;
    int64_t prevT = t - ratio;
    if (counter_ != 1) {
      if (ets_.size() > 3) ets_.erase(ets_.begin(), ets_.end() - 3);
      ets_.push_back(eps);
    } else {
      prevT = t;
      curT = t + ratio;
    }
    at::Tensor sample = x;
    at::Tensor mo;
    const size_t k = ets_.size();
    if (k == 1 && counter_ == 0) {
      mo = eps;
      curSample_ = x;
    } else if (k == 1 && counter_ == 1) {
      mo = (eps + ets_[0]) / 2;
      sample = curSample_;
      curSample_ = at::Tensor();
    } else if (k == 2) {
      mo = (ets_[1] * 3 - ets_[0]) / 2;
    } else if (k == 3) {
      mo = (ets_[2] * 23 - ets_[1] * 16 + ets_[0] * 5) / 12;
    } else {
      mo = (ets_[k - 1] * 55 - ets_[k - 2] * 59 + ets_[k - 3] * 37 - ets_[k - 4] * 9) * (1.0 / 24);
    }
    return prevSample(sample, curT, prevT, mo);
  }

  // Formula (9) of the PNDM paper. The coefficients are 0-dim float32 CPU tensors.
  at::Tensor prevSample(const at::Tensor& sample, int64_t t, int64_t prevT, at::Tensor mo) const {
    const at::Tensor a = alphasCumprod_[t];
    const at::Tensor aPrev = prevT >= 0 ? alphasCumprod_[prevT] : finalAlphaCumprod_;
    const at::Tensor b = at::rsub(a, 1);
    const at::Tensor bPrev = at::rsub(aPrev, 1);
    if (prediction_ == "v_prediction") {
      mo = at::pow(a, 0.5) * mo + at::pow(b, 0.5) * sample;
    }
    const at::Tensor sampleCoeff = at::pow(aPrev / a, 0.5);
    const at::Tensor denom = a * at::pow(bPrev, 0.5) + at::pow(a * b * aPrev, 0.5);
    return sampleCoeff * sample - (aPrev - a) * mo / denom;
  }

  NoiseScheduleConfig noise_;
  bool skipPrk_ = false;
  std::string prediction_;
  std::string spacing_;
  int64_t offset_ = 0;
  at::Tensor alphasCumprod_;
  at::Tensor finalAlphaCumprod_;

  int64_t n_ = 0;
  std::vector<int64_t> prk_;
  std::vector<int64_t> all_;
  at::Tensor timesteps_;
  std::vector<at::Tensor> ets_;
  at::Tensor curSample_;
  at::Tensor curModelOutput_;
  int64_t counter_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> makePndm(const SchedulerConfig& cfg) { return std::make_unique<Pndm>(cfg); }

}  // namespace fc::sched
