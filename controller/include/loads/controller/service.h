#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "loads/controller/broker.h"
#include "loads/controller/launcher.h"
#include "loads/v1/controller.grpc.pb.h"

namespace loads::controller {

// The gRPC API (proto/loads/v1/controller.proto) over a Broker: validates run specs, launches
// workers when too few are idle, and turns the broker's merged results into Run messages and
// the final JSON report.
//
// Thread safety: gRPC calls it from its own threads; state is the broker's (thread-safe) plus the
// specs of runs under mu_.
class ControllerService final : public loads::v1::Controller::Service {
 public:
  // launcher may be null (no worker is ever started by the controller). With an api_token,
  // every call must carry the metadata "authorization: Bearer <api_token>" or gets
  // UNAUTHENTICATED.
  // Launched workers connect to `advertise` ("" = the broker's bound endpoint). With a
  // launcher, a thread supervises launched workers every second.
  ControllerService(Broker* broker, Launcher* launcher, std::string api_token = "",
                    std::string advertise = "");
  ~ControllerService() override;

  grpc::Status StartRun(grpc::ServerContext* context, const v1::StartRunRequest* request,
                        v1::Run* response) override;
  grpc::Status GetRun(grpc::ServerContext* context, const v1::GetRunRequest* request,
                      v1::Run* response) override;
  grpc::Status ListRuns(grpc::ServerContext* context, const v1::ListRunsRequest* request,
                        v1::ListRunsResponse* response) override;
  grpc::Status StopRun(grpc::ServerContext* context, const v1::StopRunRequest* request,
                       v1::Run* response) override;
  grpc::Status WatchRun(grpc::ServerContext* context, const v1::WatchRunRequest* request,
                        grpc::ServerWriter<v1::Run>* writer) override;
  grpc::Status ListWorkers(grpc::ServerContext* context, const v1::ListWorkersRequest* request,
                           v1::ListWorkersResponse* response) override;
  grpc::Status GetController(grpc::ServerContext* context, const v1::GetControllerRequest* request,
                             v1::ControllerInfo* response) override;

 private:
  grpc::Status Authorize(const grpc::ServerContext& context) const;
  // Fills *out from the broker's view of run_id; false if unknown.
  bool Describe(const std::string& run_id, v1::Run* out);

  // Reports launch failures to the broker and lets the launcher release workers.
  void Supervise();

  Broker* broker_;
  Launcher* launcher_;
  std::string api_token_;
  std::string advertise_;
  std::mutex start_mu_;  // one StartRun at a time: idle workers are counted, then taken
  std::mutex mu_;        // guards specs_ and stopping_
  std::map<std::string, v1::RunSpec> specs_;
  bool stopping_ = false;
  std::condition_variable stop_;
  std::thread supervisor_;
};

// Checks a run spec; returns "" or the message of an INVALID_ARGUMENT naming the field.
std::string ValidateRunSpec(const v1::RunSpec& spec);

}  // namespace loads::controller
