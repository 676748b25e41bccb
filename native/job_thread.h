// One long-lived thread per device that runs all torch work for that device. OpenMP (libgomp)
// keeps a team of worker threads per calling thread, and once it manages more threads than
// there are CPUs it stops spinning between parallel regions and sleeps instead: with torch ops
// called from several libuv pool threads (or the main thread), every small op paid for a futex
// wake-up and two threads ran 3-5x slower than one (docs/PERFORMANCE.md). One calling thread
// per device keeps one team.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace fc {

class JobThread {
 public:
  JobThread();
  ~JobThread();  // finishes the queued tasks, then joins
  JobThread(const JobThread&) = delete;
  JobThread& operator=(const JobThread&) = delete;

  // Runs `task` on this thread and waits for it; rethrows what it threw (and throws once the
  // process is exiting). For short synchronous calls (testing_exports.cc); native calls queue
  // their jobs with post() (workers.h).
  void run(const std::function<void()>& task);

  // Queues `task` without waiting (it must not throw). Safe from any thread, the job thread too.
  void post(std::function<void()> task);

  // Waits up to `timeoutMs` for the task that is running now (if any) to end; false on a
  // timeout. After beginProcessExit() no further task starts.
  bool waitCurrent(int timeoutMs);

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  bool busy_ = false;
  std::thread thread_;
};

// At process exit (process.on('exit'), addon.cc PrepareExit): job threads start no further task
// (queued tasks are dropped, leaked), and the caller waits for the running ones with
// waitForJobThreads, before C++ static objects are destroyed under a running task.
void beginProcessExit();
bool processExiting();
// Waits, at most `timeoutMs` in all, for every job thread's running task; false if one is still
// running then.
bool waitForJobThreads(int timeoutMs);

// The backstop for exits that lib/native.ts's process.on('exit') does not see (the addon loaded
// only by a worker thread, process.reallyExit): a C exit handler that stops the job threads and,
// if a task outlasts the wait, ends the process with its exit status before static destructors
// run under it. Exit handlers run in reverse order of registration, mixed with the destructors of
// statics made on first use, so it is registered at load (`abortAll`: the addon's way to abort
// every environment's jobs), by each job thread after its first tasks, and by armExitBackstop.
void installExitBackstop(void (*abortAll)());
// Registers the backstop once more, now: when an environment ends (a worker thread stopped, also
// by the process exiting) and in lib/native.ts's exit preparation, so that it runs before the
// destructors of every static made so far.
void armExitBackstop();

// The job thread of a device ("cpu", "cuda:0", ...), created on first use and kept for the
// life of the process (never joined: a job still running at exit must not hold exit up).
JobThread& deviceJobThread(const std::string& device);

}  // namespace fc
