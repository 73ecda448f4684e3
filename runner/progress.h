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
  // The request rate of the last completed interval, shown from then on.
  void SetRate(double hits_per_second) { rate_ = hits_per_second; }
  // Ends the bar's line (on a terminal) before the report is printed.
  void Finish();

 private:
  std::FILE* out_;
  bool terminal_;
  bool drawn_ = false;
  double rate_ = -1;  // unknown until the first interval
};

}  // namespace loads::runner
