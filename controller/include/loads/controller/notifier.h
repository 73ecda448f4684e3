#pragma once

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "loads/common/notify.h"
#include "loads/controller/broker.h"

namespace loads::controller {

// Tells each run's end to the controller's --notify targets and the run's own (RunSpec.notify),
// once, from a thread of its own: a slow or dead webhook delays other notices, never a run.
// Runs already over when it starts are not told (a restarted controller does not tell again).
// At most once: a notice in flight when the controller dies is lost.
//
// Thread safety: Start and Stop from one thread. The broker must outlive Stop.
class RunNotifier {
 public:
  RunNotifier(Broker* broker, std::vector<common::NotifyTarget> defaults,
              common::NotifySettings settings);
  ~RunNotifier() { Stop(); }
  void Start();
  // Waits for the notice being sent, if any (at most its targets' attempts × timeout).
  void Stop();

 private:
  void Loop();
  void Tell(const RunView& view);

  Broker* broker_;
  std::vector<common::NotifyTarget> defaults_;
  common::NotifySettings settings_;
  std::set<std::string> told_;  // runs over and told (or not to tell); the loop's only
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace loads::controller
