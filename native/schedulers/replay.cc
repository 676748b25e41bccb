#include "replay.h"

#include <ATen/CPUGeneratorImpl.h>

#include <stdexcept>

namespace fc {

std::vector<at::Tensor> replayScheduler(const std::string& name, const SchedulerConfig& cfg, int64_t steps, const at::Tensor& x0,
                                        const std::vector<at::Tensor>& eps, std::optional<int64_t> seed) {
  if (!x0.defined()) throw std::invalid_argument("replayScheduler: x0 is undefined");
  std::unique_ptr<Scheduler> s = makeScheduler(name, cfg);
  const at::Device device = x0.device();
  s->setTimesteps(steps, device);
  const int64_t n = s->steps();
  if (static_cast<int64_t>(eps.size()) < n) {
    throw std::invalid_argument("replayScheduler: " + name + " with " + std::to_string(steps) + " steps needs " + std::to_string(n) +
                                " model outputs, got " + std::to_string(eps.size()));
  }

  std::optional<at::Generator> gen;
  at::Tensor x;
  if (seed) {
    gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(*seed));
    x = at::randn(x0.sizes(), *gen, at::TensorOptions().dtype(at::kFloat)).to(device) * s->initNoiseSigma();
  } else {
    x = x0;
  }

  std::vector<at::Tensor> xs{x.cpu()};
  std::vector<at::Tensor> scaled;
  for (int64_t i = 0; i < n; ++i) {
    scaled.push_back(s->scaleModelInput(x, i).cpu());
    x = s->step(eps[static_cast<size_t>(i)].to(device), i, x, gen);
    xs.push_back(x.cpu());
  }

  std::vector<at::Tensor> out;
  out.reserve(static_cast<size_t>(2 * n + 3));
  out.push_back(s->timesteps().cpu());
  out.insert(out.end(), xs.begin(), xs.end());
  out.insert(out.end(), scaled.begin(), scaled.end());
  out.push_back(at::full({1}, s->initNoiseSigma(), at::TensorOptions().dtype(at::kDouble)));
  return out;
}

}  // namespace fc
