#pragma once

#include <atomic>
#include <chrono>
#include <string>

#include "runner/options.h"
#include "runner/progress.h"

namespace loads::runner {

// Runs the test on a loads-controller's workers: ships the test (library bytes or URL) in a
// StartRun call, shows WatchRun's updates as progress, and prints the same report as a local
// run from the controller's exactly merged statistics. `library_path` is empty for --url.
// Ctrl-C stops the run on the controller and still prints the report. Returns the exit code.
int RunRemote(const RunnerOptions& options, const std::string& library_path,
              ProgressDisplay* display, std::chrono::milliseconds interval,
              const std::atomic<bool>& stop);

}  // namespace loads::runner
