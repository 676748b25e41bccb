#include "libtorch_log.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/util/Logging.h>

#include <algorithm>
#include <deque>
#include <mutex>

namespace fc {
namespace {

constexpr size_t kMaxKept = 100;

std::mutex warningsMutex;
std::deque<std::string>& collected() {
  static auto* warnings = new std::deque<std::string>();  // never destroyed: job threads outlive statics
  return *warnings;
}

class CollectingHandler : public c10::WarningHandler {
 public:
  void process(const c10::Warning& warning) override {
    std::lock_guard<std::mutex> lock(warningsMutex);
    auto& warnings = collected();
    if (warnings.size() < kMaxKept) warnings.push_back(warning.msg());
  }
};

}  // namespace

void quietNnpack() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (!at::globalContext().userEnabledNNPACK()) return;
    // c10's log level (FLAGS_caffe2_log_level) decides which log lines print; raised for the one
    // probe. The addon loads before any job thread exists, so no other thread's line is lost.
    const int level = FLAGS_caffe2_log_level;
    FLAGS_caffe2_log_level = std::max(level, c10::GLOG_ERROR);
    bool available = false;
    try {
      available = at::_nnpack_available();
    } catch (...) {
    }
    FLAGS_caffe2_log_level = level;
    if (!available) at::globalContext().setUserEnabledNNPACK(false);
  });
}

void collectWarningsOnThisThread() {
  static auto* handler = new CollectingHandler();  // never destroyed, as above
  c10::WarningUtils::set_warning_handler(handler);
}

std::vector<std::string> takeWarnings() {
  std::lock_guard<std::mutex> lock(warningsMutex);
  auto& warnings = collected();
  std::vector<std::string> out(warnings.begin(), warnings.end());
  warnings.clear();
  return out;
}

}  // namespace fc
