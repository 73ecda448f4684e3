#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loads/common/load_model.h"
#include "loads/common/series.h"
#include "loads/common/stats.h"
#include "loads/common/threshold.h"

namespace loads::common {

// How a run on a controller's workers ended, for its report (absent for a local run).
struct ClusterRun {
  std::string run_id;
  std::string state;  // "done", "failed", "stopped", "partial"
  std::string error;  // why it failed
  std::vector<std::string> workers;
  std::vector<std::string> lost_workers;  // their results from their loss on are missing
  std::vector<std::string> left_workers;  // shut down cleanly: users stopped early, nothing missing
  std::optional<uint64_t> missing_executions;  // planned for the lost workers, not reported
  uint64_t late_snapshots = 0;                 // arrived after the end: not counted
  uint32_t controller_restarts = 0;
  // Measured by the client: how long the controller could not be reached while it watched.
  double unreachable_seconds = 0;
};

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
  LoadModel load;  // ramps, arrival rate, pacing (max_users as the engine used it)
  std::optional<ClusterRun> cluster;
  // What went wrong with the engine itself, one line each (a crashed engine process, a user
  // that held its thread): printed as "Engine:" lines and the JSON report's `incidents`.
  std::vector<std::string> incidents;
  // The run's thresholds with their verdicts (EvaluateThresholds), in the order given.
  std::vector<ThresholdResult> thresholds;
  // The run second by second (a local run's; a controller's runs do not keep one yet).
  std::optional<Series> series;
};

// Version of the JSON report document; bumped on any incompatible change.
inline constexpr int kJsonReportVersion = 1;

// The end-of-run report as plain text: the seed's fields with their exact labels, then the
// executions, latency percentiles, status codes, per-URL stats (slowest first), custom counters
// and the most common errors.
std::string FormatTextReport(const RunInfo& info, const RunStats& stats);

// The same report as a versioned JSON document (see docs/report.md).
std::string FormatJsonReport(const RunInfo& info, const RunStats& stats);

// The verdicts as JUnit XML, for CI systems: one test suite named after the test, one test case
// per threshold (a failure when it failed), one for the executions (a failure when some failed
// or errored, with the most common messages), and one error test case for each thing that went
// wrong with the run itself (an engine incident, a failed or partial cluster run).
std::string FormatJUnitReport(const RunInfo& info, const RunStats& stats);

// The series as CSV: a header line, then one line per point (docs/report.md#csv).
std::string FormatCsvSeries(const Series& series);

// Executions that are known to be planned: sum(users) * sum(hits), or 0 in duration mode.
uint64_t PlannedExecutions(const std::vector<int64_t>& users, const std::vector<int64_t>& hits);

}  // namespace loads::common
