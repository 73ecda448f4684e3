#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <string>

#include "loads/common/protocol.h"

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace loads::worker {

struct WorkerOptions {
  std::string controller = "tcp://127.0.0.1:5555";  // the controller's ZeroMQ endpoint
  std::string id;                                   // unique per worker; default host-pid
  std::string token;                                // shared secret sent in hello
  int threads = 1;                                  // capacity: engine threads
  // Silence after which the controller is taken for gone: the run goes on, results wait, and
  // the worker says hello again (with backoff) until a controller answers.
  std::chrono::milliseconds controller_timeout{10'000};
  // Gone for this long, a run is stopped (its results still wait for a controller).
  std::chrono::milliseconds orphan_timeout{300'000};
  // A test library that takes longer to load fails the run, and the worker exits.
  std::chrono::milliseconds load_timeout{30'000};
  // After SIGTERM: how long the worker may take to stop its run and see its results
  // acknowledged before it exits anyway (Kubernetes' default grace period is 30 s).
  std::chrono::milliseconds shutdown_timeout{20'000};
  std::string work_dir;       // where shipped test libraries are written
  std::string metrics;        // where to serve Prometheus /metrics ("" = nowhere; port 0 = any)
  std::string metrics_token;  // /metrics only for "Authorization: Bearer TOKEN" ("" = anyone)
  // CurveZMQ: the controller's public key (Z85; empty: plain text), and this worker's key pair
  // (empty: one made at start, for a controller that takes any worker with its key).
  std::string curve_server_key, curve_public_key, curve_secret_key;
  // Where curve_server_key was read from (--curve-server-key-file), "" if given as is. While
  // the worker is not registered and has no run, a change of that file makes it exit (1), so
  // that its restart uses the controller's new key.
  std::string curve_server_key_file;
};

// loads-worker's exit statuses.
inline constexpr int kWorkerExitOk = 0;             // shut down (signal) or told to leave
inline constexpr int kWorkerExitFailure = 1;        // cannot serve (metrics port, a stuck library)
inline constexpr int kWorkerExitUsage = 2;          // bad command line
inline constexpr int kWorkerExitRefused = 3;        // the controller refused it (token, SDK)
inline constexpr int kWorkerExitInterrupted = 130;  // a second signal: left at once

// A worker process's side of the wire protocol (docs/wire-protocol.md): registers with the
// controller over a ZeroMQ DEALER socket, exchanges heartbeats, loads the test of an assignment
// on a thread of its own, runs it with the engine when told to start, and sends its results as
// numbered snapshots that it keeps until the controller acknowledges them. While the controller
// is away the run goes on, the results of the intervals not yet sent are merged into one, and
// the worker says hello again, naming its run, until a controller takes it back. On SIGTERM it
// stops its users, sends its final results and `done`, and leaves.
//
// Thread safety: Run() is called once; the ZeroMQ socket is used only by the thread running it
// (the engine's run thread hands its intervals over under a mutex).
class ZmqWorker {
 public:
  explicit ZmqWorker(WorkerOptions options);
  ~ZmqWorker();
  // Runs until told to leave. `signals` counts SIGTERM/SIGINT: the first is a graceful
  // shutdown, the second leaves at once. Returns the process's exit status.
  int Run(const std::atomic<int>& signals);

 private:
  struct Metrics;
  struct Assigned;

  // Run()'s steps. Connect and ServeMetrics return an exit status on failure, else -1.
  int Connect();
  int ServeMetrics();
  // Acts on the signals counted so far; true when the loop must end now.
  bool OnSignals(int signaled);
  // Every frame waiting on the socket.
  void Receive();
  // Deadlines: the controller's silence, hellos, heartbeats, a changed key file, an orphaned
  // run, the drain time.
  void OnTimers(std::chrono::steady_clock::time_point now);
  // Sends again what the controller has not acknowledged in time.
  void ResendOverdue(std::chrono::steady_clock::time_point now);
  void ExportMetrics();

  // Messages from the controller.
  void OnFrame(std::string_view bytes);
  void OnWelcome(const common::ControlMessage& m);
  void OnAssign(const common::Assignment& a);
  void OnStart(const common::ControlMessage& m);
  void OnStop(const common::ControlMessage& m);
  void OnAck(const common::ControlMessage& m);

  // The run's life.
  void LoadTest();
  void CheckLoading();
  // drain: let the executions in progress end (a graceful shutdown) instead of cancelling them.
  void StopRun(const std::string& why, bool drain = false);
  // Sends whatever results the run has that the window allows, then `done` once the final
  // snapshot is out.
  void Pump();
  // Sends again every unacknowledged snapshot (and `done`).
  void Resend(const char* why);
  void Discard(const std::string& why);

  void SayHello();
  void Send(const common::ControlMessage& m);
  void SendFrame(const std::string& frame);
  void Log(const std::string& line);
  // Counts a dropped message and logs it at most once a second.
  void Dropped(const std::string& why);
  bool Connected() const;

  WorkerOptions options_;
  std::unique_ptr<zmq::context_t> context_;
  std::unique_ptr<zmq::socket_t> socket_;
  std::unique_ptr<Metrics> metrics_;
  std::chrono::steady_clock::time_point next_key_check_{};  // of curve_server_key_file
  std::unique_ptr<Assigned> run_;
  uint64_t run_counter_ = 0;
  bool welcomed_ = false;
  bool leaving_ = false;  // a signal came: finish the run, then leave
  std::chrono::steady_clock::time_point leave_by_ = std::chrono::steady_clock::time_point::max();
  int exit_code_ = -1;  // set when the loop must end
  std::chrono::milliseconds heartbeat_{1000};
  std::chrono::steady_clock::time_point last_heard_{};
  std::chrono::steady_clock::time_point next_hello_{};
  std::chrono::steady_clock::time_point next_heartbeat_{};
  std::chrono::steady_clock::time_point disconnected_since_{};
  std::chrono::milliseconds hello_backoff_{0};
  uint64_t dropped_ = 0;
  std::chrono::steady_clock::time_point last_drop_log_{};
};

}  // namespace loads::worker
