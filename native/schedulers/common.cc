#include "common.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace fc::sched {

void unsupported(const std::string& key, const std::string& value, const std::string& why) {
  std::ostringstream msg;
  msg << "scheduler config: " << key << " = " << value << " is not supported";
  if (!why.empty()) msg << " (" << why << ")";
  throw std::invalid_argument(msg.str());
}

void requireOneOf(const std::string& key, const std::string& value, const std::vector<std::string>& allowed) {
  for (const auto& a : allowed) {
    if (a == value) return;
  }
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  unsupported(key, "\"" + value + "\"", "expected one of " + list);
}

NoiseScheduleConfig resolveNoiseSchedule(const SchedulerConfig& cfg, bool rescaleKnown) {
  NoiseScheduleConfig c;
  if (cfg.numTrainTimesteps) c.numTrainTimesteps = *cfg.numTrainTimesteps;
  if (cfg.betaStart) c.betaStart = *cfg.betaStart;
  if (cfg.betaEnd) c.betaEnd = *cfg.betaEnd;
  if (cfg.betaSchedule) c.betaSchedule = *cfg.betaSchedule;
  c.trainedBetas = cfg.trainedBetas;
  if (rescaleKnown && cfg.rescaleBetasZeroSnr) c.rescaleBetasZeroSnr = *cfg.rescaleBetasZeroSnr;
  if (c.numTrainTimesteps < 2) {
    unsupported("num_train_timesteps", std::to_string(c.numTrainTimesteps), "must be >= 2");
  }
  if (c.trainedBetas) {
    if (static_cast<int64_t>(c.trainedBetas->size()) != c.numTrainTimesteps) {
      unsupported("trained_betas", "[" + std::to_string(c.trainedBetas->size()) + " values]", "expected num_train_timesteps values");
    }
  } else {
    requireOneOf("beta_schedule", c.betaSchedule, {"linear", "scaled_linear", "squaredcos_cap_v2"});
  }
  return c;
}

void rejectThresholding(const SchedulerConfig& cfg) {
  if (cfg.thresholding && *cfg.thresholding) {
    unsupported("thresholding", "true", "dynamic thresholding is not implemented");
  }
}

namespace {

// The cosine ("squaredcos_cap_v2") schedule, computed in double like the Python reference and
// rounded to float32 once at the end.
at::Tensor cosineBetas(int64_t n) {
  const double pi = 3.14159265358979323846;
  auto alphaBar = [pi](double t) {
    const double c = std::cos((t + 0.008) / 1.008 * pi / 2);
    return c * c;
  };
  std::vector<double> betas(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double t1 = static_cast<double>(i) / static_cast<double>(n);
    const double t2 = static_cast<double>(i + 1) / static_cast<double>(n);
    betas[static_cast<size_t>(i)] = std::min(1 - alphaBar(t2) / alphaBar(t1), 0.999);
  }
  return floatTensor(betas);
}

// Rescales betas so the last timestep has zero SNR (Lin et al. 2023, "Common Diffusion Noise
// Schedules and Sample Steps are Flawed", algorithm 1), in float32 torch ops.
at::Tensor rescaleZeroTerminalSnr(const at::Tensor& betas) {
  at::Tensor alphas = at::rsub(betas, 1.0);
  at::Tensor sqrtBar = at::cumprod(alphas, 0).sqrt();
  at::Tensor first = sqrtBar[0].clone();
  at::Tensor last = sqrtBar[-1].clone();
  sqrtBar.sub_(last);
  sqrtBar.mul_(first / (first - last));
  at::Tensor bar = at::pow(sqrtBar, 2);
  at::Tensor ratios = bar.slice(0, 1) / bar.slice(0, 0, -1);
  at::Tensor a = at::cat({bar.slice(0, 0, 1), ratios});
  return at::rsub(a, 1);
}

}  // namespace

at::Tensor makeBetas(const NoiseScheduleConfig& c) {
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(at::kCPU);
  at::Tensor betas;
  if (c.trainedBetas) {
    betas = floatTensor(*c.trainedBetas);
  } else if (c.betaSchedule == "linear") {
    betas = at::linspace(c.betaStart, c.betaEnd, c.numTrainTimesteps, f32);
  } else if (c.betaSchedule == "scaled_linear") {
    betas = at::pow(at::linspace(std::pow(c.betaStart, 0.5), std::pow(c.betaEnd, 0.5), c.numTrainTimesteps, f32), 2);
  } else {
    betas = cosineBetas(c.numTrainTimesteps);
  }
  if (c.rescaleBetasZeroSnr) betas = rescaleZeroTerminalSnr(betas);
  return betas;
}

at::Tensor makeAlphasCumprod(const NoiseScheduleConfig& c, bool pinLastForZeroSnr) {
  at::Tensor ac = at::cumprod(at::rsub(makeBetas(c), 1.0), 0);
  if (c.rescaleBetasZeroSnr && pinLastForZeroSnr) ac[-1].fill_(std::ldexp(1.0, -24));
  return ac;
}

at::Tensor trainSigmas(const at::Tensor& alphasCumprod) { return at::pow(at::rsub(alphasCumprod, 1) / alphasCumprod, 0.5); }

std::vector<double> npLinspace(double start, double stop, int64_t num) {
  std::vector<double> y(static_cast<size_t>(std::max<int64_t>(num, 0)));
  if (num <= 0) return y;
  const int64_t div = num - 1;
  const double delta = stop - start;
  if (div > 0) {
    const double step = delta / static_cast<double>(div);
    for (int64_t i = 0; i < num; ++i) {
      double v;
      if (step == 0) {
        v = static_cast<double>(i) / static_cast<double>(div) * delta;
      } else {
        v = static_cast<double>(i) * step;
      }
      y[static_cast<size_t>(i)] = v + start;
    }
    y[static_cast<size_t>(num - 1)] = stop;
  } else {
    y[0] = 0.0 * delta + start;
  }
  return y;
}

std::vector<double> npArange(double start, double stop, double step) {
  const double len = std::ceil((stop - start) / step);
  std::vector<double> y;
  if (!(len > 0)) return y;
  const auto n = static_cast<int64_t>(len);
  y.resize(static_cast<size_t>(n));
  y[0] = start;
  if (n > 1) {
    const double second = start + step;
    const double delta = second - start;
    y[1] = second;
    for (int64_t i = 2; i < n; ++i) y[static_cast<size_t>(i)] = start + static_cast<double>(i) * delta;
  }
  return y;
}

double npRound(double v) { return std::nearbyint(v); }

std::vector<double> npInterpIndex(const std::vector<double>& x, const std::vector<double>& fp) {
  // xp = 0, 1, ..., n-1. Same arithmetic as NumPy's compiled interp: exact hits return fp[j];
  // otherwise slope * (x - xp[j]) + fp[j], with the product rounded on its own (no FMA).
  const auto n = static_cast<int64_t>(fp.size());
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double xv = x[i];
    if (std::isnan(xv)) {
      out[i] = xv;
    } else if (xv >= static_cast<double>(n - 1)) {
      out[i] = fp[static_cast<size_t>(n - 1)];
    } else if (xv < 0) {
      out[i] = fp[0];
    } else {
      const auto j = static_cast<int64_t>(std::floor(xv));
      const auto uj = static_cast<size_t>(j);
      if (static_cast<double>(j) == xv) {
        out[i] = fp[uj];
      } else {
        const double slope = (fp[uj + 1] - fp[uj]) / 1.0;
        volatile double prod = slope * (xv - static_cast<double>(j));
        out[i] = prod + fp[uj];
      }
    }
  }
  return out;
}

std::vector<double> toDoubles(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
  const double* p = c.data_ptr<double>();
  return std::vector<double>(p, p + c.numel());
}

at::Tensor floatTensor(const std::vector<double>& v) {
  at::Tensor t = at::empty({static_cast<int64_t>(v.size())}, at::TensorOptions().dtype(at::kFloat));
  float* p = t.data_ptr<float>();
  for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<float>(v[i]);
  return t;
}

void checkStepIndex(const char* who, int64_t stepIndex, int64_t steps) {
  if (stepIndex < 0 || stepIndex >= steps) {
    throw std::out_of_range(std::string(who) + ": step index " + std::to_string(stepIndex) + " is outside [0, " + std::to_string(steps) +
                            ")");
  }
}

}  // namespace fc::sched

namespace fc::sched {

EulerGrid eulerGrid(const at::Tensor& alphasCumprod, const std::string& spacing, int64_t stepsOffset, int64_t n) {
  const int64_t T = alphasCumprod.size(0);
  EulerGrid g;
  if (spacing == "linspace") {
    std::vector<double> v = npLinspace(0, static_cast<double>(T - 1), n);
    for (auto it = v.rbegin(); it != v.rend(); ++it) g.timesteps.push_back(static_cast<float>(*it));
  } else if (spacing == "leading") {
    const int64_t ratio = T / n;
    for (int64_t i = n - 1; i >= 0; --i) {
      // float32 grid value plus the integer offset, added in float32.
      g.timesteps.push_back(static_cast<float>(i * ratio) + static_cast<float>(stepsOffset));
    }
  } else {
    const double ratio = static_cast<double>(T) / static_cast<double>(n);
    for (double v : npArange(static_cast<double>(T), 0, -ratio)) {
      g.timesteps.push_back(static_cast<float>(npRound(v)) - 1.0f);
    }
  }
  std::vector<double> x(g.timesteps.begin(), g.timesteps.end());
  g.sigmas = npInterpIndex(x, toDoubles(trainSigmas(alphasCumprod)));
  return g;
}

void requireTimestepsBelow(const char* scheduler, const std::vector<int64_t>& timesteps, int64_t numTrainTimesteps, int64_t steps) {
  for (int64_t t : timesteps) {
    if (t >= numTrainTimesteps || t < 0) {
      throw std::invalid_argument(std::string(scheduler) + ": " + std::to_string(steps) + " steps reach timestep " + std::to_string(t) +
                                  ", outside the model's " + std::to_string(numTrainTimesteps) +
                                  " training timesteps (steps_offset and timestep_spacing of its scheduler config); use " +
                                  "fewer steps with this scheduler");
    }
  }
}

double eulerInitNoiseSigma(const at::Tensor& sigmas, const std::string& spacing) {
  const at::Tensor maxSigma = sigmas.max();
  return (spacing == "linspace" || spacing == "trailing") ? maxSigma.item<double>() : at::pow(at::pow(maxSigma, 2) + 1, 0.5).item<double>();
}

at::Tensor eulerScaleModelInput(const at::Tensor& x, const at::Tensor& sigma) { return x / at::pow(at::pow(sigma, 2) + 1, 0.5); }

std::vector<int64_t> discreteTimesteps(const std::string& spacing, int64_t numTrainTimesteps, int64_t steps, int64_t offset) {
  const int64_t T = numTrainTimesteps;
  std::vector<int64_t> ascending;
  if (spacing == "linspace") {
    for (double v : npLinspace(0, static_cast<double>(T - 1), steps)) ascending.push_back(static_cast<int64_t>(npRound(v)));
  } else if (spacing == "leading") {
    const int64_t ratio = T / steps;
    for (int64_t i = 0; i < steps; ++i) ascending.push_back(i * ratio + offset);
  } else {
    const double ratio = static_cast<double>(T) / static_cast<double>(steps);
    std::vector<double> desc = npArange(static_cast<double>(T), 0, -ratio);
    for (auto it = desc.rbegin(); it != desc.rend(); ++it) ascending.push_back(static_cast<int64_t>(npRound(*it)) - 1);
  }
  return ascending;
}

}  // namespace fc::sched
