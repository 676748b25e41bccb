#include "mapping_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <mutex>

namespace fc {
namespace {

// The handler reads the table without locks (it may run on any thread, in the middle of
// anything): a slot is in use while `begin` is non-zero, and `end` and `cut` are written before
// it. A slot is only released when nothing reads its range any more (the mapping is about to go),
// so a handler never sees one change under it.
struct Slot {
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<std::atomic<bool>*> cut{nullptr};
};
static_assert(std::atomic<uintptr_t>::is_always_lock_free && std::atomic<std::atomic<bool>*>::is_always_lock_free,
              "the signal handler needs lock-free atomics");
constexpr int kSlots = 256;
Slot slots[kSlots];
std::mutex claimMutex;  // claims and frees slots

struct sigaction previousAction {};
uintptr_t pageSize = 0;

// Calls only atomics and system calls (mmap and sigaction are plain system calls on Linux, safe
// here even though POSIX does not list mmap), and keeps errno as the interrupted code had it.
void onSigbus(int sig, siginfo_t* info, void* context) {
  const int savedErrno = errno;
  const auto address = reinterpret_cast<uintptr_t>(info->si_addr);
  // si_code > 0: raised by a fault (kill(2) and the like give SI_USER and other codes <= 0).
  const bool fault = info->si_code > 0;
  if (fault) {
    for (Slot& slot : slots) {
      const uintptr_t begin = slot.begin.load(std::memory_order_acquire);
      if (begin == 0 || address < begin || address >= slot.end.load(std::memory_order_relaxed)) continue;
      // Everything past the file's new end is gone: zero pages from the faulting one to the
      // range's end, so that the rest of the read faults no more.
      const uintptr_t from = address / pageSize * pageSize;
      const uintptr_t to = (slot.end.load(std::memory_order_relaxed) + pageSize - 1) / pageSize * pageSize;
      void* zeros = ::mmap(reinterpret_cast<void*>(from), to - from, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      if (zeros == MAP_FAILED) break;  // as without the guard
      slot.cut.load(std::memory_order_relaxed)->store(true, std::memory_order_release);
      errno = savedErrno;
      return;  // the read runs again, on the zero page
    }
  }
  if (previousAction.sa_flags & SA_SIGINFO) {
    previousAction.sa_sigaction(sig, info, context);
  } else if (previousAction.sa_handler == SIG_IGN) {
    // A sent SIGBUS stays ignored. A fault cannot be: the kernel would end the process for it
    // anyway, so it gets the default action (the fault repeats when this returns).
    if (fault) {
      struct sigaction fallback {};
      fallback.sa_handler = SIG_DFL;
      sigemptyset(&fallback.sa_mask);
      ::sigaction(SIGBUS, &fallback, nullptr);
    }
  } else if (previousAction.sa_handler != SIG_DFL) {
    previousAction.sa_handler(sig);
  } else {
    // The default action, as if this handler had never been installed: a fault repeats when the
    // handler returns, a sent signal is sent again (blocked until then).
    ::sigaction(SIGBUS, &previousAction, nullptr);
    if (!fault) ::raise(sig);
  }
  errno = savedErrno;
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

MappingGuard::MappingGuard(const void* data, size_t size, std::atomic<bool>* cut) {
  if (!data || size == 0 || !cut) return;
  static std::once_flag installed;
  std::call_once(installed, install);
  std::lock_guard<std::mutex> lock(claimMutex);
  for (int i = 0; i < kSlots; ++i) {
    if (slots[i].begin.load(std::memory_order_relaxed) != 0) continue;
    const auto begin = reinterpret_cast<uintptr_t>(data);
    slots[i].cut.store(cut, std::memory_order_relaxed);
    slots[i].end.store(begin + size, std::memory_order_relaxed);
    slots[i].begin.store(begin, std::memory_order_release);
    slot_ = i;
    return;
  }
}

MappingGuard::~MappingGuard() {
  if (slot_ < 0) return;
  std::lock_guard<std::mutex> lock(claimMutex);
  slots[slot_].begin.store(0, std::memory_order_release);
}

}  // namespace fc
