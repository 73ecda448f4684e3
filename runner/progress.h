#pragma once

#include <cstdio>

#include "loads/worker/engine.h"

namespace loads::runner {

// Shows a run's progress: a redrawn bar on a terminal, or a plain line per update otherwise
// (logs and CI output stay readable).
//
// Thread safety: call from one thread.
class ProgressDisplay {
 public:
  ProgressDisplay(std::FILE* out, bool terminal) : out_(out), terminal_(terminal) {}

  void Update(const worker::Progress& progress);
  // Ends the bar's line (on a terminal) before the report is printed.
  void Finish();

 private:
  std::FILE* out_;
  bool terminal_;
  bool drawn_ = false;
};

}  // namespace loads::runner
