#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loads/common/stats.h"

namespace loads::common {

// What was asked for and when it ran: the parts of a report that are not measurements.
struct RunInfo {
  std::string test;  // "module.Class.method", or "GET <url>" for --url runs
  std::chrono::system_clock::time_point started;
  double duration_seconds = 0;
  bool interrupted = false;
  std::vector<int64_t> users;      // user cycles
  std::vector<int64_t> hits;       // hits cycles (empty in duration mode)
  std::optional<double> duration;  // seconds per user cycle, in duration mode
  int threads = 1;
};

// Version of the JSON report document; bumped on any incompatible change.
inline constexpr int kJsonReportVersion = 1;

// The end-of-run report as plain text: the seed's fields with their exact labels, then the
// executions, latency percentiles, status codes, per-URL stats (slowest first), custom counters
// and the most common errors.
std::string FormatTextReport(const RunInfo& info, const RunStats& stats);

// The same report as a versioned JSON document (see docs/report.md).
std::string FormatJsonReport(const RunInfo& info, const RunStats& stats);

// Executions that are known to be planned: sum(users) * sum(hits), or 0 in duration mode.
uint64_t PlannedExecutions(const std::vector<int64_t>& users, const std::vector<int64_t>& hits);

}  // namespace loads::common
