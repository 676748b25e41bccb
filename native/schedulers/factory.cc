// makeScheduler: the scheduler names the addon accepts, mapped to their implementations.
#include <stdexcept>

#include "common.h"
#include "scheduler.h"

namespace fc {

std::unique_ptr<Scheduler> makeScheduler(const std::string& name, const SchedulerConfig& config) {
  if (name == "pndm") return sched::makePndm(config);
  if (name == "ddim") return sched::makeDdim(config);
  if (name == "euler") return sched::makeEuler(config);
  if (name == "euler-ancestral") return sched::makeEulerAncestral(config);
  if (name == "dpmpp-2m") return sched::makeDpmpp2m(config);
  throw std::invalid_argument("unknown scheduler \"" + name + "\" (expected pndm, ddim, euler, euler-ancestral or dpmpp-2m)");
}

}  // namespace fc
