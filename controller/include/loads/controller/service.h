#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "loads/common/report.h"
#include "loads/common/status.h"
#include "loads/common/target_allow.h"
#include "loads/common/thread_annotations.h"
#include "loads/controller/broker.h"
#include "loads/controller/launcher.h"
#include "loads/v1/controller.grpc.pb.h"

namespace loads::controller {

// The largest StartRun request: the wire protocol carries test libraries of up to 64 MiB, plus
// room for the rest of the spec. loads-controller and loads-runner set their gRPC limits to it.
inline constexpr int kMaxRequestBytes = 64 * 1024 * 1024 + 1024 * 1024;

// A Status as gRPC's: the codes are the same.
grpc::Status ToGrpc(const Status& status);

// The gRPC API (proto/loads/v1/controller.proto) over a Broker: validates run specs, launches
// workers when too few are idle, and turns the broker's merged results into Run messages and
// the final JSON report.
//
// Ownership: broker and launcher are not owned and must outlive the service; launcher may be
// null (no worker is ever started by the controller).
// Lock order: start_mu_, then mu_, then the broker's.
// Thread safety: gRPC calls it from its own threads; every method is thread-safe.
class ControllerService final : public loads::v1::Controller::Service {
 public:
  // With an api_token, every call must carry the metadata "authorization: Bearer <api_token>"
  // or gets UNAUTHENTICATED. Launched workers connect to `advertise` ("" = the broker's bound
  // endpoint). With a launcher, a thread supervises launched workers every second.
  ControllerService(Broker* broker, Launcher* launcher, std::string api_token = "",
                    std::string advertise = "");
  ~ControllerService() override;

  // The final JSON report of a run (docs/report.md), with its `run` section: what the broker
  // stores with a run when it ends (Broker::SetReportFormatter).
  static std::string FinalReport(const RunView& view);
  // The report of a run as it stands: the final one once it is over; while it runs, its results
  // so far (duration up to now, the complete seconds of its series, thresholds judged so far).
  static std::string LiveReport(const RunView& view);
  // What a report of the run says, before it is formatted (final: every point of its series).
  static common::RunInfo ReportInfo(const RunView& view, bool final);
  // Before serving: whether email targets can be sent (loads-controller --smtp).
  void SetMailServer(bool configured) { mail_server_ = configured; }
  // Before serving: a second token that may only read (--read-token-file).
  void SetReadToken(std::string token) { read_token_ = std::move(token); }
  // Before serving: the only hosts runs may target (--allow-target); null: any.
  void SetAllowTargets(std::shared_ptr<const common::TargetAllowList> list) {
    allow_targets_ = std::move(list);
  }
  // The judge of a run's `abort` thresholds, parsed from its spec once (Broker::SetAbortJudges);
  // null when it has none.
  static BrokerCore::AbortJudge MakeAbortJudge(const RunView& view);

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

  // Ends every WatchRun stream (UNAVAILABLE, so that clients come back), before a shutdown.
  void Shutdown() LOADS_EXCLUDES(mu_);

 private:
  static std::string ReportJson(const RunView& view, bool final);
  bool mail_server_ = false;
  std::string read_token_;
  std::shared_ptr<const common::TargetAllowList> allow_targets_;
  enum class Access { kRead, kWrite };
  // OK for the API token; for the read-only token, only when `access` is kRead.
  grpc::Status Authorize(const grpc::ServerContext& context, Access access) const;

  // Reports launch failures to the broker and lets the launcher release workers.
  void Supervise() LOADS_EXCLUDES(start_mu_, mu_);

  Broker* broker_;
  Launcher* launcher_;
  std::string api_token_;
  std::string advertise_;
  Mutex start_mu_;  // one StartRun at a time: idle workers are counted, then taken
  Mutex mu_ LOADS_ACQUIRED_AFTER(start_mu_);
  bool stopping_ LOADS_GUARDED_BY(mu_) = false;
  std::condition_variable stop_;  // with mu_: stopping_ was set
  std::thread supervisor_;
};

// What a WatchRun stream has sent of a run's series: how many points, at what step.
struct SeriesSent {
  size_t points = 0;
  double step_seconds = 0;
};

// Fills *out from the broker's view of a run. With `sent` (a WatchRun stream's), the series
// starts after the points already sent (Run.series_from), unless the step has changed or the run
// is over; *sent is then updated.
void DescribeRun(const RunView& view, v1::Run* out, SeriesSent* sent = nullptr);

}  // namespace loads::controller
