// Process exit and environment teardown: what must happen, and in which order, when a worker
// thread's environment ends or the process exits while job threads (job_thread.h) still run torch
// work. C++ static objects (libtorch's, oneDNN's) are destroyed after the exit listeners, so a
// task still running then crashes the process; an ended environment's memory and thread-safe
// functions must not be touched by its jobs. docs/ARCHITECTURE.md "Threads, lifetimes and
// shutdown" tells the whole story.
#pragma once

#include <memory>

namespace fc {

class EnvJobs;

// How long an ending environment waits for its own running jobs before it is marked gone.
constexpr int kEnvironmentEndWaitMs = 5000;
// How long the exit preparation (process.on('exit')) waits for the running tasks of every job
// thread.
constexpr int kExitWaitMs = 5000;
// How long the C exit handler waits again before it ends the process itself with its status.
constexpr int kBackstopWaitMs = 3000;
// How many times each job thread registers the exit handler again after its tasks: its first
// tasks (a load, a first generation) make the statics whose destructors the handler must precede.
constexpr int kBackstopsPerJobThread = 3;

// Set once the process is exiting: job threads then start no further task (queued tasks are
// dropped, leaked), and JobThread::run refuses new ones.
void beginProcessExit();
bool processExiting();

// The addon's load (module init, once per environment): installs the exit backstop (first time)
// and lists this environment's jobs among those every exit path must abort.
void registerEnvironment(const std::shared_ptr<EnvJobs>& jobs);

// The environment's cleanup hook (a worker thread terminated, or the main one at a normal exit):
// its queued jobs are skipped, its generations stop at their next step, it waits up to
// kEnvironmentEndWaitMs for the running ones (less once the process is exiting), then it is
// marked gone.
void endEnvironment(const std::shared_ptr<EnvJobs>& jobs);

// lib/native.ts's process.on('exit') (also for process.exit(), which runs no cleanup hooks):
// job threads start nothing more, every environment's jobs are aborted, and the exit waits up to
// kExitWaitMs for the running tasks. A task that outlasts it is left to the backstop.
void prepareProcessExit();

// The backstop for exits that process.on('exit') does not see (the addon loaded only by a worker
// thread, process.reallyExit): a C exit handler that stops the job threads and, if a task
// outlasts kBackstopWaitMs, ends the process with its exit status before static destructors run
// under it. Exit handlers run in reverse order of registration, mixed with the destructors of
// statics made on first use, so it is registered again, now, whenever one of those may have been
// made: when an environment ends, at exit preparation, and by each job thread after its first
// tasks. Returns false (and registers nothing) before the addon's first load.
bool armExitBackstop();

}  // namespace fc
