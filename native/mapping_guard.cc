#include "mapping_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>

namespace fc {
namespace {

// The handler reads the table without locks (it may run on any thread, in the middle of
// anything): a slot is in use while `begin` is non-zero, and `end` is written before it.
struct Slot {
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<std::atomic<bool>*> cut{nullptr};  // the guard's flag, alive while the slot is
};
constexpr int kSlots = 256;
Slot slots[kSlots];
std::mutex claimMutex;  // claims and frees slots

struct sigaction previousAction {};
uintptr_t pageSize = 0;

// Only what is safe in a signal handler: atomics, mmap, sigaction, raise.
void onSigbus(int sig, siginfo_t* info, void* context) {
  const auto address = reinterpret_cast<uintptr_t>(info->si_addr);
  // si_code > 0: raised by a fault (kill(2) and the like give SI_USER and other codes <= 0).
  if (info->si_code > 0) {
    for (Slot& slot : slots) {
      const uintptr_t begin = slot.begin.load(std::memory_order_acquire);
      const uintptr_t end = slot.end.load(std::memory_order_acquire);
      if (begin == 0 || address < begin || address >= end) continue;
      // Everything past the file's new end is gone: zero pages from the faulting one to the
      // range's end, so that the rest of the read faults no more.
      const uintptr_t from = address / pageSize * pageSize;
      const uintptr_t to = (end + pageSize - 1) / pageSize * pageSize;
      void* zeros = ::mmap(reinterpret_cast<void*>(from), to - from, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      if (zeros == MAP_FAILED) break;  // as without the guard
      slot.cut.load(std::memory_order_acquire)->store(true, std::memory_order_release);
      return;  // the read runs again, on the zero page
    }
  }
  if (previousAction.sa_flags & SA_SIGINFO) {
    previousAction.sa_sigaction(sig, info, context);
  } else if (previousAction.sa_handler != SIG_DFL && previousAction.sa_handler != SIG_IGN) {
    previousAction.sa_handler(sig);
  } else {
    // The default action, as if this handler had never been installed: a fault repeats when the
    // handler returns, a sent signal is sent again (blocked until then).
    ::sigaction(SIGBUS, &previousAction, nullptr);
    if (info->si_code <= 0) ::raise(sig);
  }
}

void install() {
  pageSize = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  struct sigaction action {};
  action.sa_sigaction = &onSigbus;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  ::sigaction(SIGBUS, &action, &previousAction);
}

}  // namespace

MappingGuard::MappingGuard(const void* data, size_t size) {
  if (!data || size == 0) return;
  static std::once_flag installed;
  std::call_once(installed, install);
  std::lock_guard<std::mutex> lock(claimMutex);
  for (int i = 0; i < kSlots; ++i) {
    if (slots[i].begin.load(std::memory_order_relaxed) != 0) continue;
    const auto begin = reinterpret_cast<uintptr_t>(data);
    slots[i].cut.store(cut_.get(), std::memory_order_relaxed);
    slots[i].end.store(begin + size, std::memory_order_release);
    slots[i].begin.store(begin, std::memory_order_release);
    slot_ = i;
    return;
  }
}

MappingGuard::~MappingGuard() {
  if (slot_ < 0) return;
  std::lock_guard<std::mutex> lock(claimMutex);
  slots[slot_].begin.store(0, std::memory_order_release);
  slots[slot_].end.store(0, std::memory_order_release);
}

}  // namespace fc
