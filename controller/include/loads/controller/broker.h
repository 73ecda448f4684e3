#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "loads/common/status.h"
#include "loads/common/thread_annotations.h"
#include "loads/controller/broker_core.h"
#include "loads/controller/clock.h"
#include "loads/controller/metrics.h"
#include "loads/controller/state_store.h"

namespace loads::controller {

// One page of ListRuns: runs newest first, and the token of the next page ("" = last page).
struct RunPage {
  std::vector<RunView> runs;
  std::string next_page_token;
};

// The controller's side of the worker protocol, live: a BrokerCore (the state machine) driven by
// one thread that owns the ZeroMQ ROUTER (workers) and PUB (the results stream) sockets, writes
// what changed to the state store about ten times a second, and sends acknowledgements only once
// the results they acknowledge are stored.
//
// Lock order: callers' locks (the service's) before mu_; mu_ is never held during a store write
// or a socket call. Methods that take mu_ (it is not reentrant), write to the store or use a
// socket are LOADS_EXCLUDES(mu_); what mu_ guards is LOADS_GUARDED_BY it (thread_annotations.h).
// Thread safety: every public method may be called from any thread.
class Broker {
 public:
  // store may be null: nothing is kept across restarts. clock is not owned.
  explicit Broker(BrokerOptions options, std::unique_ptr<StateStore> store = nullptr,
                  Clock* clock = RealClock());
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Before Start: where to report metrics (may stay null; not owned, must outlive the broker),
  // and how to write a run's final report.
  void SetMetrics(Metrics* metrics) { metrics_ = metrics; }
  void SetReportFormatter(std::function<std::string(const RunView&)> formatter) {
    formatter_ = std::move(formatter);
  }
  // How a running run's `abort` thresholds are judged (BrokerCore::SetAbortJudges).
  void SetAbortJudges(BrokerCore::AbortJudges judges) { judges_ = std::move(judges); }
  // Loads the state store, binds and starts the broker's thread.
  Status Start() LOADS_EXCLUDES(mu_);
  // The endpoint workers connect to, with the port actually bound.
  std::string endpoint() const;
  // The PUB endpoint with its bound port, or "" when not publishing.
  std::string publish_endpoint() const;

  // Assigns a run to `request.workers` idle workers, or, with `wait_for_workers`, keeps it
  // assigning until that many are idle. ALREADY_EXISTS for a known id, RESOURCE_EXHAUSTED
  // without enough workers, INVALID_ARGUMENT for an unusable plan.
  Status StartRun(const std::string& run_id, RunRequest request) LOADS_EXCLUDES(mu_);
  // Stops that run only, in any state. NOT_FOUND if unknown; OK (nothing to do) if over.
  Status StopRun(const std::string& run_id) LOADS_EXCLUDES(mu_);
  // Fails that run with `why` (a launcher could not start its workers).
  Status FailRun(const std::string& run_id, const std::string& why) LOADS_EXCLUDES(mu_);
  std::vector<RunSummary> ListRunSummaries() const LOADS_EXCLUDES(mu_);
  // Takes an idle worker out of the pool for good (its launcher is about to delete it): true if
  // it is not registered (any more), false if it is in a run. Messages it still sends are
  // ignored for a minute.
  bool RetireWorker(const std::string& worker_id) LOADS_EXCLUDES(mu_);
  std::optional<RunView> GetRun(const std::string& run_id) const LOADS_EXCLUDES(mu_);
  // Runs newest first, optionally only those in `state`, from page_token on (INVALID_ARGUMENT
  // for a token this controller did not give).
  StatusOr<RunPage> ListRuns(std::optional<RunState> state, const std::string& page_token,
                             size_t page_size) const LOADS_EXCLUDES(mu_);
  std::vector<WorkerView> ListWorkers() const LOADS_EXCLUDES(mu_);
  // Waits until the run is over (done, failed, stopped or partial). Returns false on timeout.
  bool WaitForRun(const std::string& run_id, std::chrono::milliseconds timeout) const
      LOADS_EXCLUDES(mu_);
  // Waits until anything changed since `seen` (a value it returned before; 0 at first), or the
  // timeout. Returns the current change count.
  uint64_t WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) const
      LOADS_EXCLUDES(mu_);
  // Frames dropped because they could not be read, were not expected or not authenticated.
  uint64_t dropped() const LOADS_EXCLUDES(mu_);
  // Number of idle workers not promised to a waiting run.
  size_t IdleWorkers() const LOADS_EXCLUDES(mu_);

 private:
  class Transport;
  void Loop() LOADS_EXCLUDES(mu_);
  void HandleZap() LOADS_EXCLUDES(mu_);
  // Writes a batch to the store (outside mu_), then lets the core send its acknowledgements.
  void Commit(CommitBatch batch) LOADS_EXCLUDES(mu_);

  BrokerOptions options_;
  std::unique_ptr<StateStore> store_;
  Clock* clock_;
  Metrics* metrics_ = nullptr;
  std::function<std::string(const RunView&)> formatter_;
  BrokerCore::AbortJudges judges_;
  std::string endpoint_;
  std::string publish_endpoint_;
  std::thread thread_;

  mutable Mutex mu_;
  mutable std::condition_variable changed_;  // with mu_: the core may have changed
  bool stopping_ LOADS_GUARDED_BY(mu_) = false;
  // Its queues are mu_'s; the pointer itself is set once, in the constructor.
  std::unique_ptr<Transport> transport_ LOADS_PT_GUARDED_BY(mu_);
  // Set by Start; null before.
  std::unique_ptr<BrokerCore> core_ LOADS_GUARDED_BY(mu_) LOADS_PT_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point last_store_error_{};
  uint64_t curve_refused_ = 0;  // the broker thread's only
  std::chrono::steady_clock::time_point last_refusal_log_{};

  struct Sockets;
  std::unique_ptr<Sockets> sockets_;  // used by the broker's thread only (after Start)
};

}  // namespace loads::controller
