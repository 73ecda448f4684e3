#pragma once

#include <cstddef>

// Crash reports of an engine process. When test code brings the process down (SIGSEGV, SIGBUS,
// SIGFPE, SIGILL, SIGABRT), a one-line description is handed to a writer before the process dies
// of that same signal: the signal, whether the fault looks like a stack overflow (a user's stack
// is 256 KiB, with a guard page below it), and the virtual user that was running on the crashing
// thread. loads-runner runs its engine in a child process and sends that line to the parent,
// which still reports the results it received.
//
// Thread safety: InstallCrashReport once, before any engine thread starts. The writer is called
// from a signal handler: it must be async-signal-safe (write(2), nothing that allocates or
// locks).
// Exported from libloads.so, which hides everything else (see loads/loads.h).
#pragma GCC visibility push(default)

namespace loads::worker {

using CrashWriter = void (*)(const char* text, size_t size);

// `test` must stay valid for the life of the process.
void InstallCrashReport(CrashWriter writer, const char* test);

// Gives the calling thread an alternate signal stack while it lives, so that a stack overflow
// can still be reported. A no-op unless InstallCrashReport was called. The engine makes one on
// each of its threads.
class CrashReportStack {
 public:
  CrashReportStack();
  ~CrashReportStack();
  CrashReportStack(const CrashReportStack&) = delete;
  CrashReportStack& operator=(const CrashReportStack&) = delete;

 private:
  void* memory_ = nullptr;
};

}  // namespace loads::worker

#pragma GCC visibility pop
