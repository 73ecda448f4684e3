#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "loads/common/histogram.h"
#include "loads/common/stats.h"

namespace loads::common {

// A run over time: one point per second (per `step_seconds` once downsampled), columns of equal
// length, for the JSON report, CSV files and charts.
struct Series {
  double step_seconds = 1;
  std::vector<double> seconds;  // start of each point, seconds into the run
  std::vector<uint64_t> hits;
  std::vector<uint64_t> hit_errors;   // hits that got no response
  std::vector<uint64_t> executions;   // finished in the point
  std::vector<uint64_t> errors;       // executions that ended as errors
  std::vector<uint64_t> failures;     // executions that ended as failures
  std::vector<int64_t> active_users;  // at the end of the point
  // Latency percentiles of the point's responses, seconds; none without a response. A
  // downsampled point keeps the larger of the two it merged.
  std::vector<std::optional<double>> p50, p90, p99;

  size_t size() const { return seconds.size(); }
};

// At most this many points: when it is reached, neighbouring points are merged two by two and
// the step doubles (a 10-hour run has 16-second points).
inline constexpr size_t kMaxSeriesPoints = 3600;

// Builds a Series from a run's intervals, in order. Each interval counts in the point of the
// second that holds `at` (the runner passes the interval's middle); seconds without an interval
// are points of zeros.
//
// Thread safety: none.
class SeriesBuilder {
 public:
  // `at`: seconds into the run.
  void Add(double at, const RunStats& interval, int64_t active_users);
  // The points closed so far (not the one being filled).
  const Series& closed() const { return series_; }
  // The points so far and the one being filled (the builder is unchanged).
  Series Peek() const;
  Series Finish();

  // What a restarted controller needs to go on: the closed points and the counts of the open
  // one. Its latency is not kept, so a restart loses that one point's percentiles, never a
  // count.
  struct Saved {
    Series closed;
    int64_t open = -1;
    uint64_t hits = 0, hit_errors = 0, executions = 0, errors = 0, failures = 0;
    int64_t active_users = 0;
  };
  Saved Save() const;
  void Restore(Saved saved);

 private:
  void Close();
  void Downsample();

  Series series_;
  int64_t open_ = -1;  // index (in steps) of the point being filled
  uint64_t hits_ = 0, hit_errors_ = 0, executions_ = 0, errors_ = 0, failures_ = 0;
  int64_t active_users_ = 0;
  Histogram latency_;
};

}  // namespace loads::common
