#pragma once

// How hard a run loads its target, beyond user cycles (docs/load-models.md): ramped users
// (closed model), an arrival rate (open model), and pacing or think time between a user's
// executions. Shared by the run schema, the wire protocol, the engine and the report.

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "loads/common/status.h"

namespace loads::common {

// One stage of a ramp: over `seconds`, go linearly from the previous target to `target` (users,
// or executions per second).
struct Stage {
  double seconds = 0;
  double target = 0;
  friend bool operator==(const Stage&, const Stage&) = default;
};

struct LoadModel {
  // Closed model, ramped: the number of users follows these stages, from `users[0]` of the plan
  // (or 0). Replaces user cycles.
  std::vector<Stage> stages;
  // Open model: executions started per second, whatever the response times; with rate_stages,
  // the rate the ramp starts from (0 if absent).
  std::optional<double> rate;
  std::vector<Stage> rate_stages;
  int64_t max_users = 0;  // open model: the most users at once (0: the default, see MaxUsers)
  bool poisson = false;   // open model: exponential gaps between arrivals instead of even ones
  // Closed model: think time between a user's executions, uniform in [pause_min, pause_max]...
  std::optional<double> pause_min, pause_max;
  // ... or pacing: each execution of a user starts this many seconds after its previous one
  // started (later if that one took longer: a missed pace).
  std::optional<double> pacing;
  // This engine's share of a run spread over `share_stride` workers: it takes arrival k (and
  // ramped user u) when k % share_stride == share_offset. 0 and 1 on one machine.
  int64_t share_offset = 0;
  int64_t share_stride = 1;

  bool open() const { return rate.has_value() || !rate_stages.empty(); }
  bool ramped() const { return !stages.empty(); }
  bool paced() const { return pacing.has_value(); }
  friend bool operator==(const LoadModel&, const LoadModel&) = default;
};

// The open model's default pool: enough users for the peak rate if every response took the
// whole timeout, at most this many.
inline constexpr int64_t kMaxDefaultUsers = 10'000;

// An arrival rate that may ramp: piecewise linear, from a start rate along stages (or constant
// for `duration` seconds). Arrival k (k = 0, 1, 2...) of an even schedule is due when the
// cumulative count Λ(t) reaches k.
//
// Thread safety: immutable after construction.
class RateSchedule {
 public:
  // REQUIRES: model.open(); with no rate_stages, duration > 0.
  RateSchedule(const LoadModel& model, double duration);

  double RateAt(double seconds) const;
  double PeakRate() const { return peak_; }
  double EndSeconds() const { return end_; }
  // Λ(end): the arrivals of the whole run.
  double TotalArrivals() const;
  // Λ(t): the arrivals due by t.
  double ArrivalsBy(double seconds) const;
  // The time at which Λ reaches `count`, or nullopt if it does not before the end.
  std::optional<double> TimeOf(double count) const;

 private:
  struct Segment {
    double start = 0, seconds = 0, from = 0, to = 0, arrivals_before = 0;
  };
  std::vector<Segment> segments_;
  double end_ = 0;
  double peak_ = 0;
};

// Users over time for ramped stages: round(linear interpolation), starting from `start`.
//
// Thread safety: immutable after construction.
class UserSchedule {
 public:
  UserSchedule(double start, const std::vector<Stage>& stages);
  int64_t UsersAt(double seconds) const;
  int64_t PeakUsers() const { return peak_; }
  double EndSeconds() const { return end_; }

 private:
  double start_;
  std::vector<Stage> stages_;
  double end_ = 0;
  int64_t peak_ = 0;
};

// Of `total` users (or arrivals) numbered 0, 1, 2..., how many fall to share `offset` of
// `stride`: those u with u % stride == offset.
inline int64_t ShareOf(int64_t total, int64_t offset, int64_t stride) {
  return total > offset ? (total - offset + stride - 1) / stride : 0;
}

// Parses "30s:100,1m:100,30s:0" (durations with s, m or h, or plain seconds) into stages.
// INVALID_ARGUMENT saying which item is wrong when it is not one.
StatusOr<std::vector<Stage>> ParseStages(const std::string& text);
// Formats stages back ("30s:100,60s:100,30s:0").
std::string FormatStages(const std::vector<Stage>& stages);

}  // namespace loads::common
