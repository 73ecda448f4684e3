#pragma once

// What the controller knows of a run: the types shared by the broker's state machine
// (broker_core.h), its persistence (state_store.h) and the gRPC service.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loads/common/series.h"
#include "loads/common/stats.h"

namespace loads::controller {

// kPartial: the run ended, but a worker was lost on the way (loss policy continue), so its
// results from then on are missing. Done, failed, stopped and partial runs are over: nothing
// changes them any more.
enum class RunState { kAssigning, kRunning, kDone, kFailed, kStopped, kPartial };
std::string_view RunStateName(RunState state);
bool IsOver(RunState state);
std::optional<RunState> RunStateFromName(std::string_view name);

// What a run does when one of its workers is lost: go on with the others (the run ends partial,
// naming the lost workers), or stop and fail.
enum class LossPolicy { kContinue, kFail };

// One worker's part in a run, as the broker tracks it (and persists it, so that a restarted
// controller knows which results it already has).
struct RunMember {
  uint64_t merged_seq = 0;          // every snapshot up to this one is merged
  uint64_t planned_executions = 0;  // its share of the plan in hits mode; 0 in duration mode
  uint64_t executions = 0;          // executions in its merged snapshots
  uint64_t active_users = 0;        // as of its last snapshot
  double target_rate = 0;           // open model: its target rate as of its last snapshot
  bool ready = false;               // it loaded the test
  bool done = false;                // its `done` arrived
  bool ok = true;                   // ... saying ok
  bool left = false;                // ... because the worker was shutting down
  uint64_t done_seq = 0;            // the sequence number of its final snapshot (0: none)
  std::string message;              // its `done` message
  bool lost = false;                // declared lost: nothing more of it is merged
  std::string lost_why;
  // After a controller restart, until the worker says hello again naming this run.
  bool attached = true;

  // Nothing more is expected of it: lost, or done with every snapshot merged.
  bool Settled() const { return lost || (done && merged_seq >= done_seq); }
};

// A run as the broker sees it: merged results so far and what happened to its workers.
struct RunView {
  std::string run_id;
  RunState state = RunState::kAssigning;
  std::string test;           // as its report names it
  int64_t planned_users = 0;  // the largest user cycle of its plan
  // The client's request, opaque to the broker (the service's serialized RunSpec without the
  // test library), and a digest of the library, so that a retried StartRun can be compared.
  std::string spec;
  std::string library_digest;
  std::vector<std::string> workers;
  std::vector<std::string> lost_workers;
  std::vector<std::string> left_workers;  // shut down cleanly mid-run: not lost, not missing
  bool degraded = false;                  // a worker was lost
  std::string error;                      // why it failed
  common::RunStats stats;                 // the sum of every snapshot merged
  // What arrived during the last complete one-second window (the live rate), and the window's
  // end. Not persisted.
  common::RunStats last_interval;
  std::chrono::system_clock::time_point last_interval_end;
  uint64_t snapshots = 0;       // snapshots merged
  uint64_t duplicates = 0;      // snapshots ignored because their sequence number was merged
  uint64_t late_snapshots = 0;  // arrived after the run (or their worker) was over: not merged
  uint64_t active_users = 0;    // virtual users running now, summed over the run's live workers
  double target_rate = 0;       // open model: the arrival rate asked now, summed likewise
  uint32_t restarts = 0;        // times the controller restarted while the run was running
  // Executions the lost workers were planned to run and did not report (hits mode only).
  std::optional<uint64_t> missing_executions;
  // The run second by second, from its workers' common start (load_start): each snapshot
  // counts in the second that holds its middle.
  common::SeriesBuilder series;
  std::chrono::system_clock::time_point load_start;  // the start time given to its workers
  // The `abort` threshold that stopped it, and when (seconds from load_start).
  std::string aborted_by;
  double aborted_at = 0;
  std::chrono::system_clock::time_point started;  // when it was assigned
  std::chrono::system_clock::time_point ended;    // when it was over (if it is)
  std::string report_json;                        // the final report, once over
};

// Everything a restarted controller needs to carry on with a run.
struct RunRecord {
  RunView view;
  LossPolicy policy = LossPolicy::kContinue;
  bool stop_requested = false;
  bool waiting = false;  // it waited for workers (a restart fails it)
  std::map<std::string, RunMember> members;
};

}  // namespace loads::controller
