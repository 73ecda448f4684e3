#pragma once

#include <atomic>
#include <chrono>
#include <string>

#include "runner/options.h"
#include "runner/progress.h"

namespace loads::runner {

// Everything loads-runner does with a loads-controller: runs on its workers (the test library's
// bytes are shipped in StartRun; WatchRun's updates are the progress; the report is printed from
// the controller's exactly merged statistics), --detach, --attach, --list-runs, --stop, --ping
// and --check-cluster. `library_path` is empty for --url and for the operations. Ctrl-C stops a
// watched run on the controller and still prints the report. Returns the exit code.
int RunRemote(const RunnerOptions& options, const std::string& library_path,
              ProgressDisplay* display, std::chrono::milliseconds interval,
              const std::atomic<bool>& stop);

}  // namespace loads::runner
