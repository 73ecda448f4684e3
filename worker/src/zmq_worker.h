#pragma once

#include <atomic>
#include <chrono>
#include <string>

namespace loads::worker {

struct WorkerOptions {
  std::string controller = "tcp://127.0.0.1:5555";       // the controller's ZeroMQ endpoint
  std::string id;                                        // unique per worker; default host-pid
  std::string token;                                     // shared secret sent in hello
  int threads = 1;                                       // capacity: engine threads
  std::chrono::milliseconds controller_timeout{10'000};  // silence after which a run stops
  std::string work_dir;                                  // where shipped test libraries are written
  std::string metrics;  // where to serve Prometheus /metrics (\"\" = nowhere; port 0 = any)
};

// A worker process's protocol loop (docs/wire-protocol.md): registers with the controller over a
// ZeroMQ DEALER socket, exchanges heartbeats, loads the test of an assignment, runs it with the
// engine when told to start, and sends a snapshot each second, a final one and "done". Frames it
// cannot read are dropped and counted, never fatal.
//
// Thread safety: Run() is called once; the ZeroMQ socket is used only by the thread running it
// (the engine's run thread hands snapshots over through a locked queue).
class ZmqWorker {
 public:
  explicit ZmqWorker(WorkerOptions options);
  // Runs until `stop` becomes true; returns the process exit code.
  int Run(const std::atomic<bool>& stop);

 private:
  WorkerOptions options_;
};

}  // namespace loads::worker
