// replayScheduler: runs one scheduler over a fixed sequence of model outputs, for the tests that
// compare the C++ schedulers with golden numbers from diffusers
// (test/fixtures/schedulers/*.safetensors, written by scripts/dev/make_scheduler_fixtures.py).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "scheduler.h"

namespace fc {

// Builds makeScheduler(name, cfg), calls setTimesteps(steps, x0.device()), then for every step i
// (0 <= i < scheduler.steps()): s_i = scaleModelInput(x_i, i); x_{i+1} = step(eps[i], i, x_i, gen).
// The model outputs do not depend on x: eps[i] is used as given (moved to x0's device); eps
// must hold at least steps() tensors (PNDM takes one more than `steps`).
//
// Initial latents:
//  - seed given: a CPU generator is seeded with it and x_0 = randn(x0.sizes(), gen, float32)
//    moved to x0's device, times initNoiseSigma(); exactly what a pipeline (and the fixture
//    script) does. x0's values are ignored, only its shape, dtype-free, and device are used.
//    The same generator then feeds the scheduler's noise (euler-ancestral), so its stream is
//    the pipeline's: first the initial latents, then one draw per step.
//  - no seed: x_0 = x0 as given and no generator is passed (euler-ancestral then draws from
//    the global generator, so only the deterministic schedulers are reproducible that way).
//
// Returns, with N = steps():
//   [0]            timesteps, float32 [N], on the CPU
//   [1 + i]        x_i for i = 0..N (x_0 the initial latents, x_N the result), on the CPU
//   [N + 2 + i]    s_i = scaleModelInput(x_i, i) for i = 0..N-1, on the CPU
//   [2N + 2]       initNoiseSigma(), float64 [1]
// so the result holds 2N + 3 tensors.
std::vector<at::Tensor> replayScheduler(const std::string& name, const SchedulerConfig& cfg, int64_t steps, const at::Tensor& x0,
                                        const std::vector<at::Tensor>& eps, std::optional<int64_t> seed);

}  // namespace fc
