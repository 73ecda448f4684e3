#include "loads/common/series.h"

#include <algorithm>
#include <cmath>

namespace loads::common {
namespace {

std::optional<double> Larger(std::optional<double> a, std::optional<double> b) {
  if (!a) return b;
  if (!b) return a;
  return std::max(*a, *b);
}

}  // namespace

void SeriesBuilder::Add(double at, const RunStats& interval, int64_t active_users) {
  if (open_ < 0) open_ = 0;  // the series starts with the run
  // Close the points before the one `at` falls in (the step may double while doing so). An
  // interval that falls before the open point (clocks are not perfectly ordered) counts in it.
  while (static_cast<int64_t>(std::floor(std::max(0.0, at) / series_.step_seconds)) > open_) {
    Close();
  }
  hits_ += interval.hits;
  for (uint64_t n : interval.hit_errors) hit_errors_ += n;
  executions_ += interval.Executions();
  errors_ += interval.errors;
  failures_ += interval.failures;
  active_users_ = active_users;
  latency_.Merge(interval.latency);
}

void SeriesBuilder::Close() {
  Series& s = series_;
  s.seconds.push_back(static_cast<double>(open_) * s.step_seconds);
  s.hits.push_back(hits_);
  s.hit_errors.push_back(hit_errors_);
  s.executions.push_back(executions_);
  s.errors.push_back(errors_);
  s.failures.push_back(failures_);
  s.active_users.push_back(active_users_);
  const auto percentile = [&](double p) -> std::optional<double> {
    if (latency_.Count() == 0) return std::nullopt;
    return static_cast<double>(latency_.Percentile(p)) / 1e9;
  };
  s.p50.push_back(percentile(50));
  s.p90.push_back(percentile(90));
  s.p99.push_back(percentile(99));
  hits_ = hit_errors_ = executions_ = errors_ = failures_ = 0;  // users carry over
  latency_.Clear();
  ++open_;
  if (s.size() == kMaxSeriesPoints) Downsample();
}

void SeriesBuilder::Downsample() {
  // Called when the closed points are exactly 0 .. kMaxSeriesPoints - 1 (an even count) and the
  // open point is empty: point k of the doubled step merges old points 2k and 2k + 1.
  Series& s = series_;
  Series half;
  half.step_seconds = s.step_seconds * 2;
  for (size_t i = 0; i + 1 < s.size(); i += 2) {
    half.seconds.push_back(s.seconds[i]);
    half.hits.push_back(s.hits[i] + s.hits[i + 1]);
    half.hit_errors.push_back(s.hit_errors[i] + s.hit_errors[i + 1]);
    half.executions.push_back(s.executions[i] + s.executions[i + 1]);
    half.errors.push_back(s.errors[i] + s.errors[i + 1]);
    half.failures.push_back(s.failures[i] + s.failures[i + 1]);
    half.active_users.push_back(s.active_users[i + 1]);
    half.p50.push_back(Larger(s.p50[i], s.p50[i + 1]));
    half.p90.push_back(Larger(s.p90[i], s.p90[i + 1]));
    half.p99.push_back(Larger(s.p99[i], s.p99[i + 1]));
  }
  series_ = std::move(half);
  open_ /= 2;
}

Series SeriesBuilder::Peek() const {
  SeriesBuilder copy = *this;
  return copy.Finish();
}

SeriesBuilder::Saved SeriesBuilder::Save() const {
  return Saved{series_, open_, hits_, hit_errors_, executions_, errors_, failures_, active_users_};
}

void SeriesBuilder::Restore(Saved saved) {
  series_ = std::move(saved.closed);
  open_ = saved.open;
  hits_ = saved.hits;
  hit_errors_ = saved.hit_errors;
  executions_ = saved.executions;
  errors_ = saved.errors;
  failures_ = saved.failures;
  active_users_ = saved.active_users;
  latency_.Clear();
}

Series SeriesBuilder::Finish() {
  if (open_ >= 0) Close();
  open_ = -1;
  return std::move(series_);
}

}  // namespace loads::common
