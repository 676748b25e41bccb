// Shared pieces of the schedulers: reading the config with a class's own defaults, the noise
// schedule (betas, alphas_cumprod), and small host-side helpers that reproduce NumPy's
// float64 arithmetic where diffusers builds a schedule with NumPy.
//
// Precision policy (see README.md): every schedule table diffusers builds with torch float32
// ops is built here with the same ATen ops on the CPU; every value diffusers builds with NumPy
// float64 is built here in double with the same operation order, then rounded to float32 where
// diffusers does. Per-step coefficients are 0-dim float32 CPU tensors combined with the same
// ops as diffusers (which also keeps its sigmas / alphas_cumprod on the CPU); they enter the
// device math as CPU scalars, which never forces a device-to-host copy.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "scheduler.h"

namespace fc::sched {

// ---- config ---------------------------------------------------------------------------------

// Throws std::invalid_argument("scheduler config: <key> = <value> is not supported (...)").
[[noreturn]] void unsupported(const std::string& key, const std::string& value, const std::string& why);

// Checks `value` is one of `allowed`, else throws unsupported(key, value, "expected one of ...").
// Euler-family helpers, shared by "euler" and "euler-ancestral": the initial noise sigma
// (max sigma, or sqrt(max^2 + 1) for "leading" spacing) and the model-input scaling
// x / sqrt(sigma^2 + 1), both in float32 tensor arithmetic as diffusers computes them.
double eulerInitNoiseSigma(const at::Tensor& sigmas, const std::string& spacing);
at::Tensor eulerScaleModelInput(const at::Tensor& x, const at::Tensor& sigma);

// The integer timestep grid of PNDM and DDIM, ascending: "linspace" (rounded linspace over
// [0, T-1]), "leading" (i * (T / n) + offset) or "trailing" (rounded arange from T down, minus 1),
// computed as diffusers does with NumPy float64.
std::vector<int64_t> discreteTimesteps(const std::string& spacing, int64_t numTrainTimesteps, int64_t steps, int64_t offset);

// Leading spacing with a steps offset can ask for timestep T itself (e.g. 1000 steps with
// steps_offset 1): diffusers then fails on an index; this names the limit instead.
void requireTimestepsBelow(const char* scheduler, const std::vector<int64_t>& timesteps, int64_t numTrainTimesteps, int64_t steps);

void requireOneOf(const std::string& key, const std::string& value, const std::vector<std::string>& allowed);

// The keys every beta-based scheduler shares, with one class's defaults applied.
struct NoiseScheduleConfig {
  int64_t numTrainTimesteps = 1000;
  double betaStart = 0.0001;
  double betaEnd = 0.02;
  std::string betaSchedule = "linear";
  std::optional<std::vector<double>> trainedBetas;
  bool rescaleBetasZeroSnr = false;
};

// Resolves the shared keys. `rescaleKnown`: whether the class has the rescale_betas_zero_snr
// key at all (PNDM does not; from_config would drop it).
NoiseScheduleConfig resolveNoiseSchedule(const SchedulerConfig& cfg, bool rescaleKnown);

// Throws if `thresholding` is set to true (dynamic thresholding is not implemented).
void rejectThresholding(const SchedulerConfig& cfg);

// ---- noise schedule (float32, CPU, built with the same torch ops as diffusers) --------------

at::Tensor makeBetas(const NoiseScheduleConfig& c);  // [T] float32
// cumprod(1 - betas) [T] float32. `pinLastForZeroSnr`: the Euler / DPM classes replace the last
// entry by 2^-24 when rescaling to zero terminal SNR (DDIM does not).
at::Tensor makeAlphasCumprod(const NoiseScheduleConfig& c, bool pinLastForZeroSnr);

// ((1 - ac) / ac) ** 0.5, float32 [T], the "Karras" sigma of every training timestep.
at::Tensor trainSigmas(const at::Tensor& alphasCumprod);

// ---- NumPy-compatible float64 helpers -------------------------------------------------------

// np.linspace(start, stop, num) (endpoint=True), float64.
std::vector<double> npLinspace(double start, double stop, int64_t num);
// np.arange(start, stop, step) for float arguments, float64 (NumPy fills start + i * delta with
// delta = (start + step) - start).
std::vector<double> npArange(double start, double stop, double step);
// np.round (half to even) of one value.
double npRound(double v);
// np.interp(x, arange(len(fp)), fp) for float64 x and fp.
std::vector<double> npInterpIndex(const std::vector<double>& x, const std::vector<double>& fp);

// float32 [T] CPU tensor -> doubles (exact).
std::vector<double> toDoubles(const at::Tensor& t);
// doubles -> float32 CPU tensor (each value rounded to nearest float, as numpy's astype).
at::Tensor floatTensor(const std::vector<double>& v);

// ---- the Euler family's grid ---------------------------------------------------------------

// Timesteps (float32 values) and sigmas (float64, before the final sigma is appended and the
// float32 cast) of EulerDiscrete / EulerAncestralDiscrete for the "linspace" / "leading" /
// "trailing" spacings: sigma at a (possibly fractional) timestep is the linear interpolation
// of trainSigmas, computed in float64 as NumPy does.
struct EulerGrid {
  std::vector<float> timesteps;
  std::vector<double> sigmas;
};
EulerGrid eulerGrid(const at::Tensor& alphasCumprod, const std::string& spacing, int64_t stepsOffset, int64_t n);

// ---- scheduler constructors (one per file) --------------------------------------------------

std::unique_ptr<Scheduler> makePndm(const SchedulerConfig& cfg);
std::unique_ptr<Scheduler> makeDdim(const SchedulerConfig& cfg);
std::unique_ptr<Scheduler> makeEuler(const SchedulerConfig& cfg);
std::unique_ptr<Scheduler> makeEulerAncestral(const SchedulerConfig& cfg);
std::unique_ptr<Scheduler> makeDpmpp2m(const SchedulerConfig& cfg);

// Checks a step index and throws std::out_of_range with the scheduler's name otherwise.
void checkStepIndex(const char* who, int64_t stepIndex, int64_t steps);

}  // namespace fc::sched
