#include "process_exit.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "addon_data.h"
#include "job_thread.h"

namespace fc {
namespace {

std::atomic<bool> exiting{false};
std::atomic<bool> installed{false};  // the backstop: set by the addon's first load

// Every environment's jobs, for the exit paths, which must stop the jobs of all of them. Never
// destroyed: used at exit.
std::mutex& environmentsMutex() {
  static auto* m = new std::mutex();
  return *m;
}
std::vector<std::weak_ptr<EnvJobs>>& environments() {
  static auto* all = new std::vector<std::weak_ptr<EnvJobs>>();
  return *all;
}

void abortEveryEnvironment() {
  std::lock_guard<std::mutex> lock(environmentsMutex());
  for (const auto& weak : environments())
    if (auto jobs = weak.lock()) jobs->abortAll();
}

void exitBackstop(int status, void*) {
  beginProcessExit();
  abortEveryEnvironment();
  if (!waitForJobThreads(kBackstopWaitMs)) {
    std::fflush(nullptr);
    std::_Exit(status);
  }
}

void registerExitBackstop() {
#ifdef __GLIBC__
  on_exit(exitBackstop, nullptr);  // glibc: the handler gets the exit status
#else
  std::atexit([] { exitBackstop(0, nullptr); });
#endif
}

}  // namespace

void beginProcessExit() { exiting.store(true); }
bool processExiting() { return exiting.load(); }

bool armExitBackstop() {
  if (!installed.load()) return false;
  registerExitBackstop();
  return true;
}

void registerEnvironment(const std::shared_ptr<EnvJobs>& jobs) {
  static std::once_flag once;
  std::call_once(once, [] {
    installed.store(true);
    registerExitBackstop();
  });
  std::lock_guard<std::mutex> lock(environmentsMutex());
  auto& all = environments();
  all.erase(std::remove_if(all.begin(), all.end(), [](const auto& w) { return w.expired(); }), all.end());
  all.push_back(jobs);
}

void endEnvironment(const std::shared_ptr<EnvJobs>& jobs) {
  try {
    // If the process is exiting (it stops worker threads first), the exit handlers run next:
    // the backstop must come before the destructors of the statics made so far.
    armExitBackstop();
    jobs->abortAll();
    jobs->waitFinished(kEnvironmentEndWaitMs, [] { return processExiting(); });
  } catch (...) {
  }
  jobs->markGone();
}

void prepareProcessExit() {
  beginProcessExit();
  abortEveryEnvironment();
  armExitBackstop();
  waitForJobThreads(kExitWaitMs);
}

}  // namespace fc
