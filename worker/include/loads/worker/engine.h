#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "loads/common/load_model.h"
#include "loads/common/protocol.h"
#include "loads/common/report.h"
#include "loads/common/stats.h"
#include "loads/common/target_allow.h"
#include "loads/loads.h"

// Exported from libloads.so, which hides everything else (see loads/loads.h).
#pragma GCC visibility push(default)

namespace loads::worker {

// What to run and how hard. By default the seed's closed model: user cycles run one after the
// other; in each, every user runs sum(hits) executions, or loops until the cycle's duration is
// over. `load` ramps the users instead (stages), or starts executions at a rate (the open model),
// and may pace or pause users between executions (docs/load-models.md).
struct EngineOptions {
  std::vector<int64_t> users{1};
  std::vector<int64_t> hits{1};    // empty in duration mode
  std::optional<double> duration;  // seconds per user cycle; the open model's length
  common::LoadModel load;
  int threads = 1;               // engine threads; users are spread round-robin over them
  std::string server_url;        // TestCase::server_url()
  std::string run_id = "local";  // given to external runners (LOADS_RUN_ID)
  std::chrono::milliseconds connect_timeout{common::kDefaultConnectTimeoutMs};
  // The read timeout of a request or WebSocket read.
  std::chrono::milliseconds timeout{common::kDefaultTimeoutMs};
  bool verify_tls = true;
  // Hosts requests may go to (checked before each connection, every redirect hop and WebSocket
  // included); null: any. A refused request is a hit with the error forbidden_target.
  std::shared_ptr<const common::TargetAllowList> allow_targets;
  size_t stack_size = 256 * 1024;  // per virtual user (committed lazily by the OS)
  // A user that holds its engine thread longer than this without yielding (a busy loop, a
  // blocking call) is reported through Engine::OnStuck. Zero: never.
  std::chrono::milliseconds stuck_limit{2000};
  // When it turns true, no new execution starts and the run ends once those in progress have
  // ended normally (nothing cancelled, unlike Run's `stop`). Not owned; may be null.
  const std::atomic<bool>* finish = nullptr;
};

// A test method and how to make its test case.
struct TestSpec {
  std::string name;  // "module.Class.method"
  internal::TestFactory factory;
  internal::TestMethod method;
  // The method runs all of a user's executions itself and records them (an external runner),
  // instead of being called once per execution.
  bool once_per_user = false;
};

// A live view of a run, for progress bars.
struct Progress {
  uint64_t executions = 0;          // finished executions
  uint64_t planned_executions = 0;  // 0 in duration mode
  uint64_t hits = 0;
  uint64_t dropped = 0;      // open model: arrivals that found no free user
  double target_rate = 0;    // open model: executions per second asked for now
  int64_t active_users = 0;  // users alive now
  bool ramped = false;       // the users follow stages
  double elapsed_seconds = 0;
  double fraction = 0;  // 0..1 of the whole plan
  size_t cycle = 0;     // 1-based user cycle being run
  size_t cycles = 0;
};

// An engine thread that stopped yielding: its users are frozen, and its statistics wait with it.
struct StuckUser {
  int thread = 0;        // the engine thread, 0-based
  int64_t user = -1;     // the user whose coroutine ran last on it (-1: none known)
  double seconds = 0;    // how long the thread has not yielded
  bool resumed = false;  // the thread yields again, after a report that it was stuck
};

struct RunResult {
  common::RunInfo info;
  common::RunStats stats;
};

// What happened during one interval of a run (a delta, not a running total), for a worker that
// reports while it runs. The run's result is exactly the sum of its intervals.
struct Interval {
  common::RunStats stats;
  std::chrono::system_clock::time_point start;
  std::chrono::system_clock::time_point end;
  bool final = false;      // the last interval of the run
  double target_rate = 0;  // open model: this engine's target rate at `end` (0 when final)
};

// The load engine: runs one test with many virtual users on a few threads, each virtual user on
// its own stackful coroutine pinned to one thread (one io_context per thread, so the hot path
// needs no locks; statistics are per thread and merged at the end).
//
// Thread safety: Run() is called once, from one thread, which it blocks until the run is over.
class Engine {
 public:
  explicit Engine(EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Runs the plan to its end, or until `stop` becomes true (then no new execution starts,
  // requests in flight are cancelled, and the result says interrupted). Calls on_progress from
  // the calling thread every `interval`. Never throws for anything a target or a test does.
  RunResult Run(const TestSpec& test, const std::atomic<bool>& stop,
                const std::function<void(const Progress&)>& on_progress,
                std::chrono::milliseconds interval);

  // Before Run: calls on_interval from Run's thread about every `period` with the statistics of
  // the interval since the previous call, and once more when the run is over (final). Taking an
  // interval swaps each engine thread's statistics out on that thread, so nothing is counted
  // twice or lost, and the threads never wait for a lock.
  void OnInterval(std::function<void(const Interval&)> on_interval,
                  std::chrono::milliseconds period);

  // Before Run: calls on_stuck from Run's thread once when an engine thread has not yielded for
  // options.stuck_limit, and once more if it resumes. The run goes on meanwhile: progress and
  // intervals keep coming from the other threads (an interval never waits long for a stuck one;
  // its statistics come later), and a stop still ends every other user. Run itself returns only
  // once the stuck user yields: a process that must end anyway (loads-runner's engine process)
  // is ended from outside.
  void OnStuck(std::function<void(const StuckUser&)> on_stuck);

 private:
  EngineOptions options_;
  std::function<void(const Interval&)> on_interval_;
  std::function<void(const StuckUser&)> on_stuck_;
  std::chrono::milliseconds interval_period_{1000};
};

// The engine's options for a plan (a worker's assignment, or a local run's whole plan). A plan
// with threads 0 gets the CPUs of this machine, at most its largest user cycle.
EngineOptions EngineOptionsFor(const common::Assignment& plan);

// Virtual users alive in this process now, across every engine (for metrics). Thread-safe.
int64_t ActiveUsers();

// The built-in test of `loads-runner --url`: one GET of `url` per execution, no assertion.
TestSpec MakeUrlTest(const std::string& url);

// An external runner (docs/external-runners.md): `command` runs under /bin/sh once per virtual
// user, with LOADS_* variables saying what to do, and reports on its stdout one JSON event per
// line (hits, executions, counters, WebSocket counts), which are counted like the engine's own.
TestSpec MakeExternalTest(const std::string& command);

}  // namespace loads::worker

#pragma GCC visibility pop
