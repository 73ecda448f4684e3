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
#include "runner/options.h"

namespace loads::runner {

// How a run ended, whichever back end ran it.
enum class RunEnd {
  kDone,         // ran to its end, every result in
  kInterrupted,  // stopped (Ctrl-C, or StopRun on the controller)
  kPartial,      // ended, but a lost worker's results from its loss on are missing
  kFailed,       // the run itself failed (see error)
};

struct RunOutcome {
  RunEnd end = RunEnd::kDone;
  std::string error;     // kFailed: why
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

// The engine in this process. The test was resolved already (a loaded library, a scenario, a
// URL or an external command).
std::unique_ptr<RunBackend> MakeLocalBackend(worker::TestSpec test);

}  // namespace loads::runner
