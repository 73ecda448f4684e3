#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "loads/common/report.h"
#include "loads/common/stats.h"
#include "loads/common/status.h"
#include "loads/worker/engine.h"
#include "loads/worker/test_loader.h"

namespace loads::runner {

// The engine of a local run, in a child process of loads-runner: test code that crashes (a
// segfault, an abort, a stack overflow) or never yields takes down only that process, and the
// runner still reports what the engine had sent. The child streams what the engine reports
// (progress, one interval of statistics every 250 ms, stuck users) to the parent over a pipe,
// and a crash line over a second one (written from its signal handler). The parent asks it to
// stop with SIGUSR1 and ends it with SIGKILL when it does not. docs/architecture.md has the
// frames; they never leave this machine, so both ends are this same binary.
//
// Thread safety: an EngineProcess is used from one thread.
class EngineProcess {
 public:
  // What the child runs. `load` is called in the child, so that a test library's initializers
  // (which may throw or crash) run there; it returns the test or why it could not be loaded.
  struct Job {
    worker::EngineOptions engine;
    std::function<worker::LoadResult()> load;
    std::string test;  // the test's name, for crash lines
    std::chrono::milliseconds progress_interval{1000};
  };

  // One thing the engine said, in the order it said it.
  struct Event {
    enum class Kind {
      kProgress,    // progress
      kInterval,    // interval
      kStuck,       // stuck
      kCrash,       // text: one line from the crash handler (the process is about to die)
      kLoadFailed,  // load_error, text: the test could not be loaded; the child exits
      kEnd,         // end: the engine's run is over (the last interval came before it)
    };
    Kind kind = Kind::kProgress;
    worker::Progress progress;
    worker::Interval interval;
    int64_t active_users = 0;  // kInterval: users alive at the interval's end
    worker::StuckUser stuck;
    worker::LoadError load_error = worker::LoadError::kNone;
    std::string text;
    struct End {
      std::chrono::system_clock::time_point started;
      double duration_seconds = 0;
      bool interrupted = false;
      int threads = 0;
      int64_t max_users = 0;
    } end;
  };

  // How the child process ended.
  struct Exit {
    bool signaled = false;  // died of a signal (then `signal`), else exited with `status`
    int signal = 0;
    int status = 0;
  };

  // Forks the child and starts its job. INTERNAL saying why when it cannot.
  Status Start(const Job& job);

  // Waits up to `timeout` for what the engine says and returns it; empty when nothing came.
  // After the child has gone and everything it sent was read, Finished() is true.
  std::vector<Event> Poll(std::chrono::milliseconds timeout);
  bool Finished() const { return finished_; }
  const Exit& exit() const { return exit_; }

  void RequestStop();  // SIGUSR1: stop as after Ctrl-C (users cancelled, report sent)
  void Kill();         // SIGKILL, at once

  EngineProcess() = default;
  ~EngineProcess();  // kills a child that is still running
  EngineProcess(const EngineProcess&) = delete;
  EngineProcess& operator=(const EngineProcess&) = delete;

 private:
  void Parse(std::vector<Event>* events);

  pid_t pid_ = -1;
  int data_fd_ = -1;   // frames: [u32 size][u8 kind][payload]
  int crash_fd_ = -1;  // lines from the crash handler, each written whole
  std::string data_;
  std::string crash_;
  bool finished_ = false;
  Exit exit_;
};

// A signal's name and what it usually means ("SIGKILL (killed)").
std::string DescribeSignal(int sig);

}  // namespace loads::runner
