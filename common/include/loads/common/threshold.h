#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loads/common/stats.h"
#include "loads/common/status.h"

namespace loads::common {

struct RunInfo;

// A threshold: a pass/fail verdict on one measure of a run, such as `p99<250ms`, `errors<1%`,
// `rps>500`, or on one hit name: `GET http://host/items p99<300ms` (docs/cli.md#thresholds).
// Evaluated on the merged statistics, so a percentile is the report's own.
struct Threshold {
  enum class Measure {
    kPercentile,  // latency percentile of the responses (`percentile`)
    kMean,        // mean latency
    kMax,         // largest latency
    kErrors,      // executions that ended as errors (the hit name's hits with an error)
    kFailures,    // executions that ended as failures
    kHitErrors,   // hits that got no response
    kDropped,     // open model: arrivals that found no free user
    kRps,         // hits per second of the run
  };
  enum class Op { kLess, kLessOrEqual, kGreater, kGreaterOrEqual, kEqual };

  std::string text;  // as written
  std::string name;  // a hit name, or empty for the whole run
  Measure measure = Measure::kPercentile;
  double percentile = 0;
  Op op = Op::kLess;
  double value = 0;      // seconds for latencies, a fraction with `percent`, else a count or rate
  bool percent = false;  // a share (of executions, hits or arrivals) rather than a count
  // ` abort` or ` abort:10s` after the expression: a local run stops as soon as the threshold
  // fails on the results so far, once `abort_after` seconds have passed.
  bool abort = false;
  double abort_after = 0;
};

// Parses a threshold. INVALID_ARGUMENT with one line naming the problem (not repeating the text).
StatusOr<Threshold> ParseThreshold(std::string_view text);

// A threshold's verdict on a run.
struct ThresholdResult {
  std::string text;
  bool passed = false;
  std::optional<double> observed;    // in the threshold's unit (seconds, fraction, count, rate)
  std::string observed_text;         // "0.812ms", "0.25%", "12", "118932.4/s", or why there is none
  std::optional<double> aborted_at;  // seconds into the run when it stopped the run (abort)
};

ThresholdResult EvaluateThreshold(const Threshold& threshold, const RunInfo& info,
                                  const RunStats& stats);

// Verdicts on a run's thresholds, in their order. `aborted_by`, the text of the `abort`
// threshold that stopped the run `aborted_at` seconds in, fails whatever the last results say.
std::vector<ThresholdResult> EvaluateThresholds(const std::vector<Threshold>& thresholds,
                                                const RunInfo& info, const RunStats& stats,
                                                const std::string& aborted_by = "",
                                                double aborted_at = 0);

// The first `abort` threshold that fails on a running run's results so far (so_far's
// duration_seconds into it); one whose abort_after has not passed yet is not judged. Null if
// none: the run goes on.
const Threshold* FirstFailedAbort(const std::vector<Threshold>& thresholds, const RunInfo& so_far,
                                  const RunStats& stats);

}  // namespace loads::common
