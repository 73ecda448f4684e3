#pragma once

#include <memory>
#include <string>

namespace loads::controller {

// Starts workers when a run asks for more than are connected. The local implementation spawns
// loads-worker processes on this machine; a Kubernetes one will create pods behind the same
// interface.
//
// Thread safety: Launch may be called from several threads.
class Launcher {
 public:
  virtual ~Launcher() = default;
  // Starts n more workers that will connect to `endpoint`. Returns why it could not, or "".
  virtual std::string Launch(int n, const std::string& endpoint) = 0;
};
using LauncherPtr = std::unique_ptr<Launcher>;

// Spawns up to `max_workers` loads-worker processes in all (from `worker_binary`), passing the
// token file if any; they are killed when the launcher is destroyed.
LauncherPtr MakeLocalLauncher(std::string worker_binary, int max_workers, std::string token_file);

}  // namespace loads::controller
