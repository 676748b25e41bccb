// One interface for every denoising scheduler. Each implementation reproduces the numbers of the
// diffusers class of the same name built `from_config(scheduler_config.json)`.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fc {

// The SD folder's scheduler_config.json, as read by TypeScript and handed over as a plain
// struct. Absent keys stay empty: each scheduler applies its own class's default, as diffusers'
// from_config does (DDIM's defaults differ from PNDM's, for example).
struct SchedulerConfig {
  std::optional<int64_t> numTrainTimesteps;         // num_train_timesteps
  std::optional<double> betaStart;                  // beta_start
  std::optional<double> betaEnd;                    // beta_end
  std::optional<std::string> betaSchedule;          // beta_schedule
  std::optional<std::vector<double>> trainedBetas;  // trained_betas (null = absent)
  std::optional<bool> setAlphaToOne;                // set_alpha_to_one
  std::optional<bool> skipPrkSteps;                 // skip_prk_steps
  std::optional<int64_t> stepsOffset;               // steps_offset
  std::optional<bool> clipSample;                   // clip_sample
  std::optional<double> clipSampleRange;            // clip_sample_range
  std::optional<std::string> predictionType;        // prediction_type
  std::optional<std::string> timestepSpacing;       // timestep_spacing
  std::optional<std::string> timestepType;          // timestep_type (euler)
  std::optional<std::string> interpolationType;     // interpolation_type (euler)
  std::optional<bool> useKarrasSigmas;              // use_karras_sigmas
  std::optional<int64_t> solverOrder;               // solver_order (dpm++)
  std::optional<std::string> algorithmType;         // algorithm_type (dpm++)
  std::optional<std::string> solverType;            // solver_type (dpm++)
  std::optional<bool> lowerOrderFinal;              // lower_order_final (dpm++)
  std::optional<bool> eulerAtFinal;                 // euler_at_final (dpm++)
  std::optional<std::string> finalSigmasType;       // final_sigmas_type (dpm++)
  std::optional<bool> thresholding;                 // thresholding (must be false: unsupported)
  std::optional<bool> rescaleBetasZeroSnr;          // rescale_betas_zero_snr
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // Prepares `numInferenceSteps` steps and resets any multistep state. Timesteps and sigmas live
  // on `device` so the loop never round-trips to the host.
  virtual void setTimesteps(int64_t numInferenceSteps, const at::Device& device) = 0;

  // The timesteps the UNet is called with, one per step (float32, on the device). PNDM's list
  // may hold more entries than numInferenceSteps (it repeats one); steps() tells how many.
  virtual const at::Tensor& timesteps() const = 0;
  virtual int64_t steps() const { return timesteps().size(0); }

  // The factor the initial N(0, 1) latents are multiplied by.
  virtual double initNoiseSigma() const = 0;

  // The UNet's input for step `stepIndex` (Euler divides by sqrt(sigma^2 + 1); others return x).
  virtual at::Tensor scaleModelInput(const at::Tensor& x, int64_t stepIndex) = 0;

  // One denoising step: eps is the (guided) model output for x at step `stepIndex`; returns the
  // latents for the next step. `generator` (CPU) feeds the ancestral noise; others ignore it.
  virtual at::Tensor step(const at::Tensor& eps, int64_t stepIndex, const at::Tensor& x, std::optional<at::Generator> generator) = 0;
};

// name: "pndm" | "ddim" | "euler" | "euler-ancestral" | "dpmpp-2m". Throws std::invalid_argument
// for an unknown name or an unsupported config value (the message names the key and value).
std::unique_ptr<Scheduler> makeScheduler(const std::string& name, const SchedulerConfig& config);

}  // namespace fc
