#pragma once

#include <grpcpp/security/credentials.h>

#include <atomic>
#include <memory>
#include <string>

#include "loads/common/status.h"
#include "loads/v1/controller.grpc.pb.h"
#include "runner/options.h"
#include "runner/run.h"

namespace loads::runner {

// A loads-controller as the runner's back end: StartRun (idempotent on the run id the runner
// chooses, so it is retried while the controller is unreachable), then WatchRun to the end,
// coming back with backoff when the stream breaks (a controller restart) for up to the
// options' reconnect timeout. Ctrl-C stops the run on the controller and still waits for its
// report.
class RemoteBackend : public RunBackend {
 public:
  // Reads the token file. INVALID_ARGUMENT if it cannot.
  static StatusOr<std::unique_ptr<RemoteBackend>> Connect(const RunnerOptions& options);

  StatusOr<RunOutcome> Run(const v1::RunSpec& spec, const std::atomic<bool>& stop,
                           const ProgressSink& sink) override;
  // Starts the run and returns its id without watching it (--detach).
  StatusOr<std::string> Start(const v1::RunSpec& spec);
  // Watches a run to its end (--attach).
  StatusOr<RunOutcome> Watch(const std::string& run_id, const std::atomic<bool>& stop,
                             const ProgressSink& sink);

  // The cluster operations; each prints its result and returns the exit status.
  int ListRuns();
  int StopRun(const std::string& run_id);
  int Ping();
  // Asks the controller how many workers are idle (for --check-cluster).
  StatusOr<int> IdleWorkers();

 private:
  RemoteBackend(const RunnerOptions& options, std::string token,
                std::shared_ptr<grpc::ChannelCredentials> credentials);
  std::unique_ptr<grpc::ClientContext> NewContext() const;

  RunnerOptions options_;
  std::string token_;
  std::unique_ptr<v1::Controller::Stub> stub_;
};

// A controller's Status in the runner's words: "<what> (controller HOST:PORT): <message>".
Status ControllerError(const grpc::Status& status, const std::string& what,
                       const std::string& controller);

}  // namespace loads::runner
