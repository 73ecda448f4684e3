#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "loads/common/protocol.h"
#include "loads/common/status.h"
#include "loads/controller/clock.h"
#include "loads/controller/metrics.h"
#include "loads/controller/run.h"

namespace loads::controller {

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
  // Kept with the run, opaque to the broker (RunView::spec, RunView::library_digest).
  std::string spec;
  std::string library_digest;
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
  std::string sdk_version;                 // workers of another major.minor are refused
  // CurveZMQ on the worker and results sockets (docs/security.md): the controller's key pair;
  // empty: plain text. Then only peers whose public key is in `curve_allowed` may connect,
  // unless `curve_any_peer` (any peer speaking CURVE to this key; the token decides).
  std::string curve_public_key, curve_secret_key;
  std::set<std::string> curve_allowed;
  bool curve_any_peer = false;
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds worker_timeout{3000};  // silence after which a worker is lost
  // Assigned to every worker ready (test loaded): past it the run fails.
  std::chrono::milliseconds ready_timeout{60'000};
  // A stop sent (StopRun, a failure) to every worker settled: past it the rest are lost.
  std::chrono::milliseconds stop_timeout{10'000};
  // After a restart: how long a running run waits for its workers to come back.
  std::chrono::milliseconds restart_grace{15'000};
  // Over runs kept (in memory and in the state store): at most this many, none older.
  size_t max_runs = 1000;
  std::chrono::seconds max_run_age{7 * 24 * 3600};
};

// Where the broker's frames go: the ZeroMQ ROUTER and PUB sockets (broker.cc), or a recorder in
// tests (tests/fakes/fake_transport.h).
class BrokerTransport {
 public:
  virtual ~BrokerTransport() = default;
  // One frame to the worker behind this ZeroMQ routing id (dropped if it is gone).
  virtual void Send(const std::string& route, std::string frame) = 0;
  // One snapshot to the subscribers of topic (the run id).
  virtual void Publish(const std::string& topic, std::string frame) = 0;
};

// What the broker writes to its state store in one transaction, and the acknowledgements it may
// send once that is done.
struct CommitBatch {
  std::vector<RunRecord> runs;
  std::vector<std::string> deleted;  // pruned run ids
  struct Ack {
    std::string route;
    common::ControlMessage message;
  };
  std::vector<Ack> acks;
  bool empty() const { return runs.empty() && deleted.empty() && acks.empty(); }
};

// The controller's side of the worker protocol (docs/wire-protocol.md) as a state machine: it
// admits workers, watches their liveness, splits a run's users among idle workers, starts them
// together, merges their snapshots exactly (each worker's in sequence order, each once) and
// decides when a run is over and what it ended as. Over runs never change again. It reads the
// time from a Clock, sends through a BrokerTransport and hands what must be persisted to its
// caller in CommitBatches, so that tests drive it frame by frame with fakes.
//
// Thread safety: none. The Broker (broker.h) serializes every call under its mutex.
class BrokerCore {
 public:
  // clock and transport are not owned and must outlive the core; metrics may be null.
  BrokerCore(BrokerOptions options, Clock* clock, BrokerTransport* transport, Metrics* metrics);

  // Before anything else: the runs a previous controller left in its state store. Running runs
  // wait restart_grace for their workers to say hello again; runs that were being assigned fail.
  void Restore(std::vector<RunRecord> runs);
  // Judges a running run on its results so far (`seconds` from its workers' start): the text
  // of an `abort` threshold that has failed, or nothing. Called at most every 250 ms per run.
  using AbortJudge =
      std::function<std::optional<std::string>(const common::RunStats&, double seconds)>;
  // Makes a run's judge once, when it starts running (or is restored running); a null judge:
  // the run has nothing to judge.
  using AbortJudges = std::function<AbortJudge(const RunView&)>;
  void SetAbortJudges(AbortJudges judges) { judges_ = std::move(judges); }
  // Called with each run as it ends, to fill RunView::report_json.
  void SetReportFormatter(std::function<std::string(const RunView&)> formatter) {
    format_report_ = std::move(formatter);
  }

  // One frame from the worker behind `route`. Never throws: anything unreadable, unexpected or
  // unauthenticated is dropped and counted.
  void OnFrame(const std::string& route, std::string_view frame);
  // A message of more than one frame from `route`: dropped and counted.
  void OnMultipart(size_t frames);
  // Liveness, deadlines, heartbeats, the one-second windows and pruning. Call often (the
  // broker's thread does every 10 ms); it acts only on what is due.
  void Tick();

  // What changed since the last call and must be stored before the acknowledgements in it are
  // sent. Without a store (records false) only the runs that ended are listed, by id and state:
  // the caller passes the batch to Committed at once.
  CommitBatch TakeCommit(bool records = true);
  // The batch was stored (ok) or not: on failure its runs are written again with the next
  // batch and its acknowledgements wait for it.
  void Committed(CommitBatch batch, bool ok);

  Status StartRun(const std::string& run_id, RunRequest request);
  // Stops the run, in any state: a waiting run at once, others when their workers have sent
  // their final results (or stop_timeout has passed).
  Status StopRun(const std::string& run_id);
  // Fails the run with `why` (a launcher could not start its workers).
  Status FailRun(const std::string& run_id, const std::string& why);
  bool RetireWorker(const std::string& worker_id);

  std::optional<RunView> GetRun(const std::string& run_id) const;
  // Every run, newest first (by start time, then id).
  std::vector<const RunView*> Runs() const;
  std::vector<RunSummary> ListRunSummaries() const;
  std::vector<WorkerView> ListWorkers() const;
  size_t IdleWorkers() const;
  bool IsRunOver(const std::string& run_id) const;
  uint64_t dropped() const { return dropped_; }
  // Bumped by every change a watcher may want to see.
  uint64_t generation() const { return generation_; }

 private:
  struct Worker {
    std::string id;     // its name (hello's `worker`)
    std::string route;  // its ZeroMQ routing id: messages must come from it
    int64_t threads = 0;
    std::string run_id;  // busy in this run, or empty
    std::chrono::steady_clock::time_point last_heard;
  };
  struct Run {
    RunView view;
    std::optional<RunRequest> waiting;  // set while it waits for idle workers
    std::chrono::steady_clock::time_point wait_deadline;
    LossPolicy policy = LossPolicy::kContinue;
    bool stop_requested = false;
    std::optional<std::chrono::steady_clock::time_point> ready_deadline;
    std::optional<std::chrono::steady_clock::time_point> stop_deadline;
    std::optional<std::chrono::steady_clock::time_point> grace_deadline;
    std::map<std::string, std::chrono::steady_clock::time_point> done_at;
    std::map<std::string, RunMember> members;
    common::RunStats current_interval;                       // snapshots of the window in progress
    std::chrono::steady_clock::time_point next_judgement{};  // of its abort thresholds
    std::optional<AbortJudge> judge;                         // made at its first judgement
    bool dirty = true;                                       // to be written with the next commit
    // How it ended, until that is stored; then it becomes view.state.
    std::optional<RunState> ending;
  };
  // Over, or ending (not yet stored): nothing of it is merged any more.
  static bool Ended(const Run& run) { return IsOver(run.view.state) || run.ending.has_value(); }

  // One handler per message a worker sends.
  void OnHello(const std::string& route, const common::ControlMessage& m);
  void OnReady(Worker& worker, const common::ControlMessage& m);
  void OnDone(Worker& worker, const common::ControlMessage& m);
  void OnBye(Worker& worker);
  void OnSnapshot(Worker& worker, const common::Snapshot& snapshot, std::string_view frame);

  Worker* WorkerByRoute(const std::string& route);
  void Send(const std::string& route, const common::ControlMessage& m);
  // An acknowledgement, sent once the run's state is committed.
  void QueueAck(const std::string& route, const std::string& run_id, uint64_t seq, bool closed);
  // Tells an unknown route to say hello (at most once a second per route).
  void AskToRejoin(const std::string& route);
  void Refuse(const std::string& route, const std::string& why);
  // reason: a short class for metrics (malformed, unknown_run, ...); why: the log line.
  void Drop(const char* reason, const std::string& why);

  void Assign(Run& run, const RunRequest& request, const std::vector<Worker*>& workers);
  void AssignWaitingRuns();
  void EndWaitingRun(Run& run, RunState state, const std::string& why);
  // Starts the run when every worker is ready (or lost).
  void MaybeStart(Run& run);
  // Ends the run when nothing more is expected of any worker: its end is seen once stored.
  void MaybeFinish(Run& run);
  void StopWorkers(Run& run);
  // Stops the run when one of its `abort` thresholds has failed (its judge).
  void Judge(Run& run);
  void Fail(Run& run, const std::string& why);
  // The worker leaves the registry (silent, restarted, left).
  void Forget(const std::string& worker_id, const std::string& why);
  // The member is lost for its run: nothing more of it is merged.
  void MarkLost(Run& run, const std::string& worker_id, const std::string& why);
  // The worker's part is settled: it is idle again and told to forget the run.
  void Release(Run& run, const std::string& worker_id);
  void CountActiveUsers(Run& run);
  void Changed(Run& run);
  void Prune();

  BrokerOptions options_;
  Clock* clock_;
  BrokerTransport* transport_;
  Metrics* metrics_;
  std::function<std::string(const RunView&)> format_report_;
  AbortJudges judges_;

  std::map<std::string, Worker> workers_;      // by name
  std::map<std::string, std::string> routes_;  // route -> name
  std::map<std::string, Run> runs_;            // by id
  std::vector<std::string> waiting_;           // runs waiting for workers, oldest first
  std::map<std::string, std::chrono::steady_clock::time_point> retired_;  // route -> until when
  std::map<std::string, std::chrono::steady_clock::time_point> rejoins_;  // route -> last asked
  std::vector<CommitBatch::Ack> pending_acks_;
  std::vector<std::string> pruned_;
  uint64_t dropped_ = 0;
  uint64_t generation_ = 0;
  std::chrono::steady_clock::time_point last_drop_log_{};
  std::chrono::steady_clock::time_point next_heartbeat_{};
  std::chrono::steady_clock::time_point next_interval_{};
  std::chrono::steady_clock::time_point next_prune_{};
};

}  // namespace loads::controller
