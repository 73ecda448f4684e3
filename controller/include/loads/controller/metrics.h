#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "loads/common/stats.h"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace loads::controller {

// The controller's Prometheus metrics (docs/metrics.md): per-run hits, errors, executions,
// latency (a classic histogram that sums across series, and the exact merged quantiles as
// gauges), WebSocket counts, custom counters and URL names (both capped), plus the state of
// workers and runs and the controller's own health. Series of finished runs are removed after
// `retention`.
//
// Thread safety: every method may be called from any thread (prometheus-cpp metrics are
// thread-safe; the per-run bookkeeping is under a mutex).
class Metrics {
 public:
  // Serves /metrics on `address` ("127.0.0.1:9464"; port 0 = any), to requests carrying
  // `Authorization: Bearer token` when a token is given. Throws when it cannot listen.
  Metrics(const std::string& address, std::chrono::seconds retention,
          const std::string& token = "");
  ~Metrics();

  int port() const;

  // A snapshot's interval was merged into run_id.
  void OnSnapshot(const std::string& run_id, const common::RunStats& delta, double merge_delay);
  // The run's merged latencies (from the send, and from the intended start), for the exact
  // quantile gauges.
  void SetQuantiles(const std::string& run_id, const common::RunStats& stats);
  // The open model's arrival rate asked now, summed over the run's workers.
  void SetTargetRate(const std::string& run_id, double rate);
  // A run was assigned: its test (the `test` label of its hits) and its planned users.
  void RunStarted(const std::string& run_id, const std::string& test, int64_t planned_users);
  // Virtual users running now, summed over the run's workers.
  void SetActiveUsers(const std::string& run_id, int64_t users);
  // The run is over: its series are removed `retention` from now.
  void RunEnded(const std::string& run_id);
  void SetWorkers(int64_t idle, int64_t busy);
  void SetRuns(const std::map<std::string, int64_t>& by_state);
  // A worker message dropped; reason is one of kDropReasons (docs/metrics.md lists them).
  void Dropped(const std::string& reason);
  // Removes expired runs' series; call periodically.
  void Expire();

  static constexpr size_t kMaxNamesPerRun = 100;
  // The reasons of loads_messages_dropped_total, exported at 0 from the start.
  static constexpr const char* kDropReasons[] = {
      "malformed",    "multipart",   "unregistered", "spoofed", "bad_token",
      "incompatible", "unknown_run", "not_in_run",   "late",    "out_of_order",
      "overflow",     "unexpected",  "curve_refused"};

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loads::controller
