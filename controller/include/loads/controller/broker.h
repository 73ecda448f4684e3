#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "loads/common/protocol.h"
#include "loads/common/stats.h"
#include "loads/controller/metrics.h"

namespace loads::controller {

enum class RunState { kAssigning, kRunning, kDone, kFailed, kStopped };
std::string_view RunStateName(RunState state);
// Done, failed or stopped: nothing more will happen to the run.
bool IsOver(RunState state);

// What a run does when one of its workers is lost: go on with the others (the report names the
// lost workers and the run is marked degraded), or stop and fail.
enum class LossPolicy { kContinue, kFail };

struct RunRequest {
  common::Assignment plan;  // the whole run; its users are split among the workers
  int workers = 1;
  LossPolicy loss_policy = LossPolicy::kContinue;
  // When fewer workers are idle (a launcher is starting more): how long the run may wait for
  // them before it fails. Zero: they must be idle now.
  std::chrono::milliseconds wait_for_workers{0};
  // Workers whose id starts with this were started for this run: it takes them first, and runs
  // waiting at the same time leave them to it.
  std::string worker_prefix = "";
};

// A run as the broker sees it: merged results so far and what happened to its workers.
struct RunView {
  std::string run_id;
  RunState state = RunState::kAssigning;
  std::vector<std::string> workers;
  std::vector<std::string> lost_workers;
  bool degraded = false;
  std::string error;       // why it failed
  common::RunStats stats;  // the sum of every snapshot received
  // What arrived during the last complete one-second window (the live rate), and the window's
  // end.
  common::RunStats last_interval;
  std::chrono::system_clock::time_point last_interval_end;
  uint64_t snapshots = 0;     // snapshots merged
  uint64_t duplicates = 0;    // snapshots ignored because their sequence number was seen
  uint64_t gaps = 0;          // sequence numbers skipped (snapshots lost)
  uint64_t active_users = 0;  // virtual users running now, summed over the run's live workers
  std::chrono::system_clock::time_point started;  // when it was assigned
  std::chrono::system_clock::time_point ended;    // when it was over (if it is)
};

// What a launcher needs to know of a run: cheap to copy, unlike RunView's statistics.
struct RunSummary {
  std::string run_id;
  RunState state = RunState::kAssigning;
  bool waiting = false;              // it waits for workers to register
  std::vector<std::string> workers;  // assigned to it
};

struct WorkerView {
  std::string id;
  int64_t threads = 0;
  std::string run_id;  // empty when idle
};

struct BrokerOptions {
  std::string bind = "tcp://127.0.0.1:*";  // the ROUTER endpoint; "*" port = any free one
  std::string token;                       // when set, only workers saying it are admitted
  std::string publish;                     // when set, a PUB endpoint republishing snapshots
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds worker_timeout{3000};  // silence after which a worker is lost
};

// The controller's side of the worker protocol (docs/wire-protocol.md): admits workers,
// watches their heartbeats, splits a run's users among idle workers, starts them together,
// merges their snapshots exactly and decides when a run is over.
//
// Thread safety: every public method may be called from any thread. One internal thread owns
// the ZeroMQ socket; the others hand it frames through a locked queue.
class Broker {
 public:
  explicit Broker(BrokerOptions options);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Before Start: where to report metrics (may stay null). Not owned; must outlive the broker.
  void SetMetrics(Metrics* metrics) { metrics_ = metrics; }
  // Binds and starts the broker's thread. Returns why it could not, or nullopt.
  std::optional<std::string> Start();
  // The endpoint workers connect to, with the port actually bound.
  std::string endpoint() const;
  // The PUB endpoint with its bound port, or "" when not publishing.
  std::string publish_endpoint() const;

  // Assigns a run to `request.workers` idle workers, or, with `wait_for_workers`, keeps it
  // assigning until that many are idle. Returns why it could not (unknown or busy run id, not
  // enough idle workers, an invalid plan), or nullopt.
  std::optional<std::string> StartRun(const std::string& run_id, RunRequest request);
  // Stops that run only. Returns false if it is unknown or already over.
  bool StopRun(const std::string& run_id);
  // Fails that run with `why` (a launcher could not start its workers): a waiting run fails at
  // once, a running one stops its workers. Returns false if it is unknown or already over.
  bool FailRun(const std::string& run_id, const std::string& why);
  std::vector<RunSummary> ListRunSummaries() const;
  // Takes an idle worker out of the pool for good (its launcher is about to delete it): true if
  // it is not registered (any more), false if it is in a run. Messages it still sends are
  // ignored for a minute.
  bool RetireWorker(const std::string& worker_id);
  std::optional<RunView> GetRun(const std::string& run_id) const;
  std::vector<WorkerView> ListWorkers() const;
  // Waits until the run is over (done, failed or stopped). Returns false on timeout.
  bool WaitForRun(const std::string& run_id, std::chrono::milliseconds timeout) const;
  // Frames dropped because they could not be read or were not expected.
  uint64_t dropped() const;
  // Number of idle workers not promised to a waiting run.
  size_t IdleWorkers() const;

 private:
  struct Worker {
    std::string id;
    int64_t threads = 0;
    std::string run_id;
    std::chrono::steady_clock::time_point last_heard;
  };
  struct WorkerInRun {
    bool ready = false;
    bool done = false;
    bool lost = false;
    uint64_t last_sequence = 0;
    uint64_t active_users = 0;  // as of its last snapshot
  };
  struct Run {
    RunView view;
    // Set while the run waits for idle workers; cleared when they are assigned.
    std::optional<RunRequest> waiting;
    std::chrono::steady_clock::time_point wait_deadline;
    common::RunStats current_interval;  // snapshots of the window in progress
    LossPolicy policy = LossPolicy::kContinue;
    bool stop_requested = false;
    std::map<std::string, WorkerInRun> workers;
  };

  void Loop();
  void Handle(const std::string& identity, std::string_view frame);
  void Send(const std::string& identity, std::string frame);  // REQUIRES: mu_ held
  // reason: a short class for metrics (malformed, unknown_run, ...); why: the log line.
  void Drop(const char* reason, const std::string& why);  // REQUIRES: mu_ held
  void Lose(const std::string& worker_id);                // REQUIRES: mu_ held
  void CountActiveUsers(Run& run);                        // REQUIRES: mu_ held
  void StopWorkers(Run& run);                             // REQUIRES: mu_ held
  void MaybeFinish(Run& run);                             // REQUIRES: mu_ held
  void Assign(Run& run, const RunRequest& request,
              const std::vector<Worker*>& workers);                      // REQUIRES: mu_ held
  void AssignWaitingRuns();                                              // REQUIRES: mu_ held
  void EndWaitingRun(Run& run, RunState state, const std::string& why);  // REQUIRES: mu_ held

  BrokerOptions options_;
  std::string endpoint_;
  std::thread thread_;
  bool stopping_ = false;

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  std::map<std::string, Worker> workers_;
  std::map<std::string, Run> runs_;
  std::vector<std::string> waiting_;  // ids of the runs waiting for workers, oldest first
  std::map<std::string, std::chrono::steady_clock::time_point> retired_;  // until when ignored
  std::deque<std::pair<std::string, std::string>> outbox_;                // (identity, frame)
  std::deque<std::pair<std::string, std::string>> published_;             // (run id, snapshot)
  std::string publish_endpoint_;
  uint64_t dropped_ = 0;
  std::chrono::steady_clock::time_point last_drop_log_{};

  struct Socket;
  std::unique_ptr<Socket> socket_;
  Metrics* metrics_ = nullptr;
};

}  // namespace loads::controller
