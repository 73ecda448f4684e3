#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "loads/common/report.h"
#include "loads/common/stats.h"
#include "loads/common/status.h"
#include "loads/v1/controller.pb.h"
#include "loads/worker/engine.h"
#include "loads/worker/test_loader.h"
#include "runner/options.h"

namespace loads::runner {

// How a run ended, whichever back end ran it.
enum class RunEnd {
  kDone,         // ran to its end, every result in
  kInterrupted,  // stopped (Ctrl-C, or StopRun on the controller)
  kPartial,      // ended, but a lost worker's results from its loss on are missing
  kFailed,       // the run itself failed (see error)
  // The local engine process crashed, or test code kept the run from ending and the runner ended
  // it: results from then on may be missing.
  kEngineFault,
  kNotLoaded,  // the local engine could not load the test (load_error, error); nothing ran
};

struct RunOutcome {
  RunEnd end = RunEnd::kDone;
  std::string error;  // kFailed, kEngineFault, kNotLoaded: why
  worker::LoadError load_error = worker::LoadError::kNone;  // kNotLoaded
  common::RunInfo info;  // what ran, when; info.cluster for a controller's run
  common::RunStats stats;
  // The JSON report when the back end wrote it (a controller's, with its `run` section); empty:
  // made from info and stats.
  std::string report_json;
};

// Called with the progress while the run goes (from the thread that called Run), and the
// requests per second of the last second.
struct ProgressSink {
  std::function<void(const worker::Progress&)> progress;
  std::function<void(double rate)> rate;
  std::chrono::milliseconds interval{1000};  // how often progress is called
  // A local run's results so far after each interval of the engine (loads-runner --web): the
  // run's description with its duration so far, the merged results, the complete seconds.
  std::function<void(const common::RunInfo& info, const common::RunStats& so_far,
                     const common::Series& closed, uint64_t active_users)>
      results;
};

// Runs one RunSpec to its end: the same interface for the engine in this process and for a
// controller's workers, so that the runner validates, shows and reports both the same way.
// Thread safety: one Run at a time.
class RunBackend {
 public:
  virtual ~RunBackend() = default;
  // spec has passed spec::ValidateRunSpec. Stops early (and still returns the outcome) when
  // `stop` becomes true. A non-OK Status means the run could not be started or followed (the
  // controller refused or vanished); its code picks the exit status (ExitCodeFor).
  virtual StatusOr<RunOutcome> Run(const v1::RunSpec& spec, const std::atomic<bool>& stop,
                                   const ProgressSink& sink) = 0;
};

// The test of a local run. `load` runs in the engine process: it loads a test library there (so
// that its initializers cannot take the runner down), or returns a test made already (a scenario,
// a URL, an external command).
struct LocalTest {
  std::string name;
  std::function<worker::LoadResult()> load;
};

struct LocalOptions {
  // A user that holds its engine thread this long is reported (--stuck-limit; zero: never).
  std::chrono::milliseconds stuck_limit{2000};
  // After a stop, how long the engine process has to send its report before it is killed; also
  // how long past its planned end a run with a stuck user may go (--stop-timeout).
  std::chrono::milliseconds stop_timeout{5000};
  // When it turns true (a second Ctrl-C), the engine process is killed at once. May be null.
  const std::atomic<bool>* kill_now = nullptr;
  // --allow-target: the hosts the run may send requests to; null: any.
  std::shared_ptr<const common::TargetAllowList> allow_targets;
};

// The engine in a child process of this one (runner/engine_process.h).
std::unique_ptr<RunBackend> MakeLocalBackend(LocalTest test, LocalOptions options);

}  // namespace loads::runner
