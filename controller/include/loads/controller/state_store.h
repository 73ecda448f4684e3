#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "loads/common/status.h"
#include "loads/controller/run.h"

namespace loads::controller {

// Where the controller keeps its runs across restarts: runs, their specs, merged results, the
// last merged sequence number of each worker and final reports. The broker acknowledges a
// snapshot to its worker only after Save has returned OK for the run that merged it.
//
// Thread safety: one caller at a time (the broker's thread, and its constructor).
class StateStore {
 public:
  virtual ~StateStore() = default;
  // Every run kept, in no particular order.
  virtual StatusOr<std::vector<RunRecord>> Load() = 0;
  // Writes (inserts or replaces) these runs, all or none.
  virtual Status Save(const std::vector<RunRecord>& runs) = 0;
  virtual Status Delete(const std::vector<std::string>& run_ids) = 0;
  // Where the state lives, for messages.
  virtual std::string Describe() const = 0;
};

// An SQLite database (WAL) in `dir`, created if needed, with a lock file that keeps a second
// controller out of the same folder.
StatusOr<std::unique_ptr<StateStore>> OpenSqliteStore(const std::string& dir);

// The default --state-dir: $XDG_DATA_HOME/loads/controller, else ~/.local/share/loads/controller.
std::string DefaultStateDir();

}  // namespace loads::controller
