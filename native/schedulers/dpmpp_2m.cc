// DPM-Solver / DPM-Solver++ multistep (Lu et al. 2022), orders 1 to 3, in their ODE and SDE
// forms. The default config is DPM++ 2M: data prediction, second order, midpoint. Matches
// diffusers' DPMSolverMultistepScheduler.
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"

namespace fc::sched {
namespace {

using at::Tensor;

class DpmSolverMultistep final : public Scheduler {
 public:
  explicit DpmSolverMultistep(const SchedulerConfig& cfg) {
    rejectThresholding(cfg);
    noise_ = resolveNoiseSchedule(cfg, /*rescaleKnown=*/true);
    order_ = cfg.solverOrder.value_or(2);
    prediction_ = cfg.predictionType.value_or("epsilon");
    algorithm_ = cfg.algorithmType.value_or("dpmsolver++");
    solverType_ = cfg.solverType.value_or("midpoint");
    lowerOrderFinal_ = cfg.lowerOrderFinal.value_or(true);
    eulerAtFinal_ = cfg.eulerAtFinal.value_or(false);
    finalSigmas_ = cfg.finalSigmasType.value_or("zero");
    spacing_ = cfg.timestepSpacing.value_or("linspace");
    offset_ = cfg.stepsOffset.value_or(0);
    if (order_ < 1 || order_ > 3) {
      unsupported("solver_order", std::to_string(order_), "expected 1, 2 or 3");
    }
    requireOneOf("prediction_type", prediction_, {"epsilon", "sample", "v_prediction"});
    // diffusers maps the names of other solvers' variants onto these two.
    if (algorithm_ == "deis") algorithm_ = "dpmsolver++";
    if (solverType_ == "logrho" || solverType_ == "bh1" || solverType_ == "bh2") {
      solverType_ = "midpoint";
    }
    requireOneOf("algorithm_type", algorithm_, {"dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++"});
    requireOneOf("solver_type", solverType_, {"midpoint", "heun"});
    requireOneOf("final_sigmas_type", finalSigmas_, {"zero", "sigma_min"});
    requireOneOf("timestep_spacing", spacing_, {"linspace", "leading", "trailing"});
    if (finalSigmas_ == "zero" && algorithm_ != "dpmsolver++" && algorithm_ != "sde-dpmsolver++") {
      unsupported("final_sigmas_type", "\"zero\"", "algorithm_type \"" + algorithm_ + "\" needs \"sigma_min\"");
    }
    if (cfg.useKarrasSigmas && *cfg.useKarrasSigmas) {
      unsupported("use_karras_sigmas", "true", "Karras sigmas are not implemented");
    }
    if (order_ == 3 && (algorithm_ == "sde-dpmsolver" || algorithm_ == "sde-dpmsolver++")) {
      unsupported("solver_order", "3", "the SDE variants are implemented up to order 2");
    }
    dataPrediction_ = algorithm_ == "dpmsolver++" || algorithm_ == "sde-dpmsolver++";
    sde_ = algorithm_ == "sde-dpmsolver" || algorithm_ == "sde-dpmsolver++";
    alphasCumprod_ = makeAlphasCumprod(noise_, /*pinLastForZeroSnr=*/true);
  }

  void setTimesteps(int64_t n, const at::Device& device) override {
    if (n < 1) throw std::invalid_argument("dpmpp-2m: numInferenceSteps must be >= 1");
    const int64_t T = noise_.numTrainTimesteps;
    // lambda_min_clipped is -inf (not configurable here), so the last usable timestep is T.
    const int64_t last = T;
    ts_.clear();
    if (spacing_ == "linspace") {
      std::vector<double> v = npLinspace(0, static_cast<double>(last - 1), n + 1);
      for (int64_t i = n; i >= 1; --i) {
        ts_.push_back(static_cast<int64_t>(npRound(v[static_cast<size_t>(i)])));
      }
    } else if (spacing_ == "leading") {
      const int64_t ratio = last / (n + 1);
      for (int64_t i = n; i >= 1; --i) ts_.push_back(i * ratio + offset_);
    } else {
      const double ratio = static_cast<double>(T) / static_cast<double>(n);
      for (double v : npArange(static_cast<double>(last), 0, -ratio)) {
        ts_.push_back(static_cast<int64_t>(npRound(v)) - 1);
      }
    }
    // The sigma of an integer timestep is the training sigma itself.
    const std::vector<double> train = toDoubles(trainSigmas(alphasCumprod_));
    std::vector<double> s;
    for (int64_t t : ts_) {
      if (t < 0 || t >= T) {
        throw std::invalid_argument("dpmpp-2m: timestep " + std::to_string(t) + " is outside the training range (check steps_offset)");
      }
      s.push_back(train[static_cast<size_t>(t)]);
    }
    s.push_back(finalSigmas_ == "sigma_min" ? train[0] : 0.0);
    sigmas_ = floatTensor(s);  // stays on the CPU: its entries are per-step scalars
    timesteps_ = at::tensor(ts_, at::TensorOptions().dtype(at::kLong)).to(at::kFloat).to(device);
    outputs_.assign(static_cast<size_t>(order_), Tensor());
    lowerOrderNums_ = 0;
    next_ = 0;
  }

  const Tensor& timesteps() const override { return timesteps_; }
  double initNoiseSigma() const override { return 1.0; }
  Tensor scaleModelInput(const Tensor& x, int64_t) override { return x; }

  Tensor step(const Tensor& eps, int64_t stepIndex, const Tensor& x, std::optional<at::Generator> generator) override {
    if (!timesteps_.defined()) throw std::logic_error("dpmpp-2m: setTimesteps was not called");
    const auto count = static_cast<int64_t>(ts_.size());
    checkStepIndex("dpmpp-2m", stepIndex, count);
    if (stepIndex != next_) {
      throw std::invalid_argument("dpmpp-2m: steps must run in order (expected step " + std::to_string(next_) + ", got " +
                                  std::to_string(stepIndex) + ")");
    }
    i_ = stepIndex;
    const bool finalLower = i_ == count - 1 && (eulerAtFinal_ || (lowerOrderFinal_ && count < 15) || finalSigmas_ == "zero");
    const bool secondLower = i_ == count - 2 && lowerOrderFinal_ && count < 15;

    const Tensor m = convert(eps, x);
    for (int64_t k = 0; k + 1 < order_; ++k) {
      outputs_[static_cast<size_t>(k)] = outputs_[static_cast<size_t>(k + 1)];
    }
    outputs_.back() = m;
    const Tensor sample = x.to(at::kFloat);
    Tensor noise;
    if (sde_) {
      if (generator && generator->defined()) {
        noise = at::randn(m.sizes(), *generator, at::TensorOptions().dtype(at::kFloat).device(generator->device())).to(m.device());
      } else {
        noise = at::randn(m.sizes(), std::optional<at::Generator>(), m.options().dtype(at::kFloat));
      }
    }
    Tensor prev;
    if (order_ == 1 || lowerOrderNums_ < 1 || finalLower) {
      prev = firstOrder(m, sample, noise);
    } else if (order_ == 2 || lowerOrderNums_ < 2 || secondLower) {
      prev = secondOrder(sample, noise);
    } else {
      prev = thirdOrder(sample);
    }
    if (lowerOrderNums_ < order_) ++lowerOrderNums_;
    ++next_;
    return prev.to(m.scalar_type());
  }

 private:
  // alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t (0-dim float32 CPU tensors).
  static void alphaSigma(const Tensor& sigma, Tensor& alpha, Tensor& sig) {
    alpha = at::reciprocal(at::pow(at::pow(sigma, 2) + 1, 0.5)) * 1;
    sig = sigma * alpha;
  }
  static Tensor lambdaOf(const Tensor& alpha, const Tensor& sig) { return at::log(alpha) - at::log(sig); }

  // The model output as the solver wants it: x0 for the ++ variants, the noise otherwise.
  Tensor convert(const Tensor& mo, const Tensor& sample) const {
    Tensor alpha, sig;
    if (dataPrediction_) {
      if (prediction_ == "sample") return mo;
      alphaSigma(sigmas_[i_], alpha, sig);
      if (prediction_ == "epsilon") return (sample - sig * mo) / alpha;
      return alpha * sample - sig * mo;
    }
    if (prediction_ == "epsilon") return mo;
    alphaSigma(sigmas_[i_], alpha, sig);
    if (prediction_ == "sample") return (sample - alpha * mo) / sig;
    return alpha * mo + sig * sample;
  }

  Tensor firstOrder(const Tensor& m, const Tensor& sample, const Tensor& noise) const {
    Tensor aT, sT, aS, sS;
    alphaSigma(sigmas_[i_ + 1], aT, sT);
    alphaSigma(sigmas_[i_], aS, sS);
    const Tensor h = lambdaOf(aT, sT) - lambdaOf(aS, sS);
    if (algorithm_ == "dpmsolver++") {
      return (sT / sS) * sample - (aT * (at::exp(-h) - 1.0)) * m;
    }
    if (algorithm_ == "dpmsolver") {
      return (aT / aS) * sample - (sT * (at::exp(h) - 1.0)) * m;
    }
    if (algorithm_ == "sde-dpmsolver++") {
      return (sT / sS * at::exp(-h)) * sample + (aT * at::rsub(at::exp(h * -2.0), 1)) * m +
             sT * at::sqrt(at::rsub(at::exp(h * -2), 1.0)) * noise;
    }
    return (aT / aS) * sample - (sT * (at::exp(h) - 1.0)) * 2.0 * m + sT * at::sqrt(at::exp(h * 2) - 1.0) * noise;
  }

  Tensor secondOrder(const Tensor& sample, const Tensor& noise) const {
    Tensor aT, sT, a0, s0, a1, s1;
    alphaSigma(sigmas_[i_ + 1], aT, sT);
    alphaSigma(sigmas_[i_], a0, s0);
    alphaSigma(sigmas_[i_ - 1], a1, s1);
    const Tensor lT = lambdaOf(aT, sT);
    const Tensor l0 = lambdaOf(a0, s0);
    const Tensor l1 = lambdaOf(a1, s1);
    const Tensor& m0 = outputs_[outputs_.size() - 1];
    const Tensor& m1 = outputs_[outputs_.size() - 2];
    const Tensor h = lT - l0;
    const Tensor h0 = l0 - l1;
    const Tensor r0 = h0 / h;
    const Tensor& d0 = m0;
    const Tensor d1 = (at::reciprocal(r0) * 1.0) * (m0 - m1);
    const bool mid = solverType_ == "midpoint";
    if (algorithm_ == "dpmsolver++") {
      const Tensor c = aT * (at::exp(-h) - 1.0);
      if (mid) return (sT / s0) * sample - c * d0 - (c * 0.5) * d1;
      return (sT / s0) * sample - c * d0 + (aT * ((at::exp(-h) - 1.0) / h + 1.0)) * d1;
    }
    if (algorithm_ == "dpmsolver") {
      const Tensor c = sT * (at::exp(h) - 1.0);
      if (mid) return (aT / a0) * sample - c * d0 - (c * 0.5) * d1;
      return (aT / a0) * sample - c * d0 - (sT * ((at::exp(h) - 1.0) / h - 1.0)) * d1;
    }
    if (algorithm_ == "sde-dpmsolver++") {
      const Tensor c = aT * at::rsub(at::exp(h * -2.0), 1);
      const Tensor first = (sT / s0 * at::exp(-h)) * sample + c * d0;
      const Tensor tail = sT * at::sqrt(at::rsub(at::exp(h * -2), 1.0)) * noise;
      if (mid) return first + (c * 0.5) * d1 + tail;
      return first + (aT * (at::rsub(at::exp(h * -2.0), 1.0) / (h * -2.0) + 1.0)) * d1 + tail;
    }
    const Tensor c = sT * (at::exp(h) - 1.0);
    const Tensor tail = sT * at::sqrt(at::exp(h * 2) - 1.0) * noise;
    if (mid) return (aT / a0) * sample - (c * 2.0) * d0 - c * d1 + tail;
    return (aT / a0) * sample - (c * 2.0) * d0 - ((sT * ((at::exp(h) - 1.0) / h - 1.0)) * 2.0) * d1 + tail;
  }

  Tensor thirdOrder(const Tensor& sample) const {
    Tensor aT, sT, a0, s0, a1, s1, a2, s2;
    alphaSigma(sigmas_[i_ + 1], aT, sT);
    alphaSigma(sigmas_[i_], a0, s0);
    alphaSigma(sigmas_[i_ - 1], a1, s1);
    alphaSigma(sigmas_[i_ - 2], a2, s2);
    const Tensor lT = lambdaOf(aT, sT);
    const Tensor l0 = lambdaOf(a0, s0);
    const Tensor l1 = lambdaOf(a1, s1);
    const Tensor l2 = lambdaOf(a2, s2);
    const size_t k = outputs_.size();
    const Tensor& m0 = outputs_[k - 1];
    const Tensor& m1 = outputs_[k - 2];
    const Tensor& m2 = outputs_[k - 3];
    const Tensor h = lT - l0;
    const Tensor h0 = l0 - l1;
    const Tensor h1 = l1 - l2;
    const Tensor r0 = h0 / h;
    const Tensor r1 = h1 / h;
    const Tensor& d0 = m0;
    const Tensor d10 = (at::reciprocal(r0) * 1.0) * (m0 - m1);
    const Tensor d11 = (at::reciprocal(r1) * 1.0) * (m1 - m2);
    const Tensor d1 = d10 + (r0 / (r0 + r1)) * (d10 - d11);
    const Tensor d2 = (at::reciprocal(r0 + r1) * 1.0) * (d10 - d11);
    if (algorithm_ == "dpmsolver++") {
      return (sT / s0) * sample - (aT * (at::exp(-h) - 1.0)) * d0 + (aT * ((at::exp(-h) - 1.0) / h + 1.0)) * d1 -
             (aT * ((at::exp(-h) - 1.0 + h) / at::pow(h, 2) - 0.5)) * d2;
    }
    return (aT / a0) * sample - (sT * (at::exp(h) - 1.0)) * d0 - (sT * ((at::exp(h) - 1.0) / h - 1.0)) * d1 -
           (sT * ((at::exp(h) - 1.0 - h) / at::pow(h, 2) - 0.5)) * d2;
  }

  NoiseScheduleConfig noise_;
  int64_t order_ = 2;
  std::string prediction_;
  std::string algorithm_;
  std::string solverType_;
  bool lowerOrderFinal_ = true;
  bool eulerAtFinal_ = false;
  std::string finalSigmas_;
  std::string spacing_;
  int64_t offset_ = 0;
  bool dataPrediction_ = true;
  bool sde_ = false;
  at::Tensor alphasCumprod_;

  std::vector<int64_t> ts_;
  Tensor sigmas_;
  Tensor timesteps_;
  std::vector<Tensor> outputs_;
  int64_t lowerOrderNums_ = 0;
  int64_t next_ = 0;
  int64_t i_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> makeDpmpp2m(const SchedulerConfig& cfg) { return std::make_unique<DpmSolverMultistep>(cfg); }

}  // namespace fc::sched
