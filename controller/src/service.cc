#include "loads/controller/service.h"

#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "loads/common/report.h"
#include "loads/common/run_spec.h"
#include "loads/common/secret.h"
#include "loads/common/snapshot.h"
#include "loads/common/url.h"
#include "loads/version.h"

namespace loads::controller {
namespace {

v1::RunState ToProto(RunState state) {
  switch (state) {
    case RunState::kAssigning:
      return v1::RUN_STATE_ASSIGNING;
    case RunState::kRunning:
      return v1::RUN_STATE_RUNNING;
    case RunState::kDone:
      return v1::RUN_STATE_DONE;
    case RunState::kFailed:
      return v1::RUN_STATE_FAILED;
    case RunState::kStopped:
      return v1::RUN_STATE_STOPPED;
    case RunState::kPartial:
      return v1::RUN_STATE_PARTIAL;
  }
  return v1::RUN_STATE_UNSPECIFIED;
}

std::optional<RunState> FromProto(v1::RunState state) {
  switch (state) {
    case v1::RUN_STATE_ASSIGNING:
      return RunState::kAssigning;
    case v1::RUN_STATE_RUNNING:
      return RunState::kRunning;
    case v1::RUN_STATE_DONE:
      return RunState::kDone;
    case v1::RUN_STATE_FAILED:
      return RunState::kFailed;
    case v1::RUN_STATE_STOPPED:
      return RunState::kStopped;
    case v1::RUN_STATE_PARTIAL:
      return RunState::kPartial;
    default:
      return std::nullopt;
  }
}

std::string Sha256Hex(const std::string& bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : digest) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

// The spec as the run keeps it: everything but the library's bytes.
std::string StoredSpec(const v1::RunSpec& spec) {
  v1::RunSpec copy = spec;
  copy.clear_test_library();
  return copy.SerializeAsString();
}

}  // namespace

grpc::Status ToGrpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), status.message());
}

void DescribeRun(const RunView& view, v1::Run* out, SeriesSent* sent) {
  out->Clear();
  out->set_run_id(view.run_id);
  out->set_state(ToProto(view.state));
  *out->mutable_spec() = spec::FromStored(view.spec);
  for (const auto& w : view.workers) out->add_workers(w);
  for (const auto& w : view.lost_workers) out->add_lost_workers(w);
  for (const auto& w : view.left_workers) out->add_left_workers(w);
  out->set_degraded(view.degraded);
  out->set_error(view.error);
  out->set_executions(view.stats.Executions());
  out->set_hits(view.stats.hits);
  out->set_snapshots(view.snapshots);
  out->set_duplicate_snapshots(view.duplicates);
  out->set_late_snapshots(view.late_snapshots);
  out->set_controller_restarts(view.restarts);
  if (view.missing_executions) out->set_missing_executions(*view.missing_executions);
  out->set_active_users(view.active_users);
  out->set_target_rate(view.target_rate);
  out->set_test(view.test);
  const auto timestamp = [](std::chrono::system_clock::time_point t,
                            google::protobuf::Timestamp* to) {
    *to = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
  };
  timestamp(view.started, out->mutable_started());
  if (IsOver(view.state)) timestamp(view.ended, out->mutable_ended());
  common::Snapshot merged;
  merged.run_id = view.run_id;
  merged.worker_id = "controller";
  merged.sequence = 1;
  merged.final = IsOver(view.state);
  merged.active_users = view.active_users;
  merged.target_rate = view.target_rate;
  merged.stats = view.stats;
  out->set_stats(common::EncodeSnapshot(merged));
  common::Snapshot interval;
  interval.run_id = view.run_id;
  interval.worker_id = "controller";
  interval.sequence = 1;
  interval.interval_end = common::UnixNanos(view.last_interval_end);
  interval.interval_start =
      interval.interval_end >= 1'000'000'000 ? interval.interval_end - 1'000'000'000 : 0;
  interval.stats = view.last_interval;
  out->set_interval_stats(common::EncodeSnapshot(interval));
  if (IsOver(view.state)) out->set_report_json(view.report_json);
  const common::Series series =
      IsOver(view.state) ? common::SeriesBuilder(view.series).Finish() : view.series.closed();
  *out->mutable_series_step() = spec::ToDuration(series.step_seconds);
  size_t from = 0;
  if (sent) {
    if (!IsOver(view.state) && sent->points <= series.size() &&
        sent->step_seconds == series.step_seconds) {
      from = sent->points;
    }
    *sent = {series.size(), series.step_seconds};
  }
  out->set_series_from(static_cast<uint32_t>(from));
  for (size_t i = from; i < series.size(); ++i) {
    v1::SeriesPoint* point = out->add_series();
    point->set_second(series.seconds[i]);
    point->set_hits(series.hits[i]);
    point->set_hit_errors(series.hit_errors[i]);
    point->set_executions(series.executions[i]);
    point->set_errors(series.errors[i]);
    point->set_failures(series.failures[i]);
    point->set_active_users(series.active_users[i]);
    if (series.p50[i]) point->set_p50_seconds(*series.p50[i]);
    if (series.p90[i]) point->set_p90_seconds(*series.p90[i]);
    if (series.p99[i]) point->set_p99_seconds(*series.p99[i]);
  }
}

std::string ControllerService::FinalReport(const RunView& view) { return ReportJson(view, true); }

std::string ControllerService::LiveReport(const RunView& view) {
  if (IsOver(view.state)) return view.report_json;
  RunView now = view;
  now.ended = std::chrono::system_clock::now();
  return ReportJson(now, false);
}

std::string ControllerService::ReportJson(const RunView& view, bool final) {
  return common::FormatJsonReport(ReportInfo(view, final), view.stats);
}

common::RunInfo ControllerService::ReportInfo(const RunView& view, bool final) {
  const v1::RunSpec spec = ::loads::spec::FromStored(view.spec);
  common::RunInfo info;
  info.test = view.test;
  info.started = view.started;
  info.duration_seconds = std::chrono::duration<double>(view.ended - view.started).count();
  info.interrupted = view.state == RunState::kStopped;
  info.users.assign(spec.users().begin(), spec.users().end());
  info.hits.assign(spec.hits().begin(), spec.hits().end());
  if (spec::Seconds(spec.duration()) > 0) info.duration = spec::Seconds(spec.duration());
  info.threads = spec.threads();  // 0: each worker its own default
  info.load = spec::ToPlan(spec).load;
  common::ClusterRun cluster;
  cluster.run_id = view.run_id;
  cluster.state = std::string(RunStateName(view.state));
  cluster.error = view.error;
  cluster.workers = view.workers;
  cluster.lost_workers = view.lost_workers;
  cluster.left_workers = view.left_workers;
  cluster.missing_executions = view.missing_executions;
  cluster.late_snapshots = view.late_snapshots;
  cluster.controller_restarts = view.restarts;
  info.cluster = std::move(cluster);
  // While it runs, the seconds complete so far.
  info.series = final ? common::SeriesBuilder(view.series).Finish() : view.series.closed();
  info.thresholds = common::EvaluateThresholds(spec::Thresholds(spec), info, view.stats,
                                               view.aborted_by, view.aborted_at);
  // Stopped by its threshold: failed, whatever the last results say (as in a local run).
  if (!view.aborted_by.empty()) info.interrupted = true;
  return info;
}

BrokerCore::AbortJudge ControllerService::MakeAbortJudge(const RunView& view) {
  const v1::RunSpec spec = ::loads::spec::FromStored(view.spec);
  std::vector<common::Threshold> thresholds = spec::Thresholds(spec);
  if (std::none_of(thresholds.begin(), thresholds.end(),
                   [](const common::Threshold& t) { return t.abort; })) {
    return nullptr;
  }
  return [thresholds = std::move(thresholds)](const common::RunStats& stats,
                                              double seconds) -> std::optional<std::string> {
    common::RunInfo so_far;
    so_far.duration_seconds = seconds;
    const common::Threshold* failed = common::FirstFailedAbort(thresholds, so_far, stats);
    if (!failed) return std::nullopt;
    return failed->text;
  };
}

ControllerService::ControllerService(Broker* broker, Launcher* launcher, std::string api_token,
                                     std::string advertise)
    : broker_(broker),
      launcher_(launcher),
      api_token_(std::move(api_token)),
      advertise_(std::move(advertise)) {
  if (launcher_) supervisor_ = std::thread([this] { Supervise(); });
}

ControllerService::~ControllerService() {
  Shutdown();
  if (supervisor_.joinable()) supervisor_.join();
}

void ControllerService::Shutdown() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  stop_.notify_all();
}

void ControllerService::Supervise() {
  MutexLock lock(mu_);
  while (true) {
    // Up to a second, or until Shutdown: a loop, not wait_for with a lambda, which the
    // thread-safety analysis could not know runs under mu_.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!stopping_) {
      if (stop_.wait_until(lock.native(), deadline) == std::cv_status::timeout) break;
    }
    if (stopping_) return;
    lock.Unlock();
    try {
      // Under start_mu_: a StartRun between launching pods and registering its run would
      // otherwise see its fresh pods taken for leftovers of an unknown run.
      MutexLock start(start_mu_);
      const auto retire = [this](const std::string& id) { return broker_->RetireWorker(id); };
      for (const auto& failure : launcher_->Supervise(broker_->ListRunSummaries(), retire)) {
        std::fprintf(stderr, "loads-controller: run %s failed: %s\n", failure.run_id.c_str(),
                     failure.message.c_str());
        broker_->FailRun(failure.run_id, failure.message).IgnoreError();
      }
    } catch (const std::exception& e) {
      // A boundary: the next round tries again.
      std::fprintf(stderr, "loads-controller: supervising launched workers: %s\n", e.what());
    }
    lock.Lock();
  }
}

grpc::Status ControllerService::Authorize(const grpc::ServerContext& context, Access access) const {
  if (api_token_.empty()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  const std::string_view sent = it == metadata.end()
                                    ? std::string_view()
                                    : std::string_view(it->second.data(), it->second.size());
  if (common::SameSecret(sent, "Bearer " + api_token_)) return grpc::Status::OK;
  if (!read_token_.empty() && common::SameSecret(sent, "Bearer " + read_token_)) {
    if (access == Access::kRead) return grpc::Status::OK;
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        "this token may only list, get and watch runs; starting and stopping "
                        "them needs the API token");
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "this controller needs a token: send the metadata \"authorization: "
                      "Bearer TOKEN\" (loads-runner --token-file FILE)");
}

grpc::Status ControllerService::StartRun(grpc::ServerContext* context,
                                         const v1::StartRunRequest* request, v1::Run* response) {
  if (grpc::Status auth = Authorize(*context, Access::kWrite); !auth.ok()) return auth;
  const std::string& run_id = request->run_id();
  if (Status valid = spec::ValidateRunId(run_id, "run_id"); !valid.ok()) return ToGrpc(valid);
  // A scenario's `load` object fills what the spec does not say, as on the command line.
  v1::RunSpec asked_spec = request->spec();
  if (Status upgraded = spec::UpgradeLegacyFields(&asked_spec); !upgraded.ok()) {
    return ToGrpc(upgraded);
  }
  if (Status applied = spec::ApplyScenarioLoad(&asked_spec, nullptr); !applied.ok()) {
    return ToGrpc(Status(StatusCode::kInvalidArgument, "spec." + applied.message()));
  }
  if (Status valid = spec::ValidateRunSpec(asked_spec); !valid.ok()) return ToGrpc(valid);
  for (const std::string& target : asked_spec.notify()) {
    if (target.starts_with("email:") && !mail_server_) {
      return ToGrpc(FailedPreconditionError("spec.notify: '" + target +
                                            "': this controller has no mail server (--smtp)"));
    }
  }
  if (allow_targets_) {
    // The URLs the request names are checked here; every other one (a test library computes
    // its own, a server redirects) by the workers, on every request.
    for (const auto& [field, text] : {std::pair{"spec.url", &asked_spec.url()},
                                      std::pair{"spec.server_url", &asked_spec.server_url()}}) {
      if (text->empty()) continue;
      auto url = common::ParseUrl(*text);
      if (url.ok() && !allow_targets_->Allows(url->host, url->port)) {
        return ToGrpc(PermissionDeniedError(std::string(field) + ": " + *text +
                                            " is not an allowed target of this controller "
                                            "(--allow-target)"));
      }
    }
  }
  const std::string spec = StoredSpec(asked_spec);
  const std::string digest =
      asked_spec.test_library().empty() ? "" : Sha256Hex(asked_spec.test_library());
  MutexLock start_lock(start_mu_);
  if (auto existing = broker_->GetRun(run_id)) {
    // A retry of the same StartRun gets the run as it is; another spec under the id is refused.
    const v1::RunSpec stored = spec::FromStored(existing->spec);
    const v1::RunSpec asked = spec::FromStored(spec);
    if (!google::protobuf::util::MessageDifferencer::Equals(stored, asked) ||
        existing->library_digest != digest) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "run " + run_id + " exists with another spec");
    }
    DescribeRun(*existing, response);
    return grpc::Status::OK;
  }
  const int workers = asked_spec.workers() ? asked_spec.workers() : 1;
  const size_t idle = broker_->IdleWorkers();
  RunRequest run;
  if (idle < static_cast<size_t>(workers)) {
    if (!launcher_) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "run " + run_id + " needs " + std::to_string(workers) + " workers, " +
                              std::to_string(idle) + " idle, and no launcher is configured");
    }
    LaunchRequest launch;
    launch.run_id = run_id;
    launch.workers = workers - static_cast<int>(idle);
    launch.endpoint = advertise_.empty() ? broker_->endpoint() : advertise_;
    launch.cpu = asked_spec.worker_cpu();
    launch.memory = asked_spec.worker_memory();
    if (const std::string error = launcher_->Launch(launch); !error.empty()) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, error);
    }
    // The run is accepted now and assigned when its workers have registered (pods can take
    // minutes to be scheduled and pull their image); it fails if they do not come.
    run.wait_for_workers = launcher_->RegistrationTimeout();
    run.worker_prefix = launcher_->WorkerPrefix(run_id);
  }
  run.plan = spec::ToPlan(asked_spec);
  if (allow_targets_) run.plan.allow_targets = allow_targets_->patterns();
  run.workers = workers;
  run.loss_policy =
      asked_spec.loss_policy() == v1::LOSS_POLICY_FAIL ? LossPolicy::kFail : LossPolicy::kContinue;
  run.spec = spec;
  run.library_digest = digest;
  if (Status started = broker_->StartRun(run_id, std::move(run)); !started.ok()) {
    return ToGrpc(started);
  }
  DescribeRun(*broker_->GetRun(run_id), response);
  return grpc::Status::OK;
}

grpc::Status ControllerService::GetRun(grpc::ServerContext* context,
                                       const v1::GetRunRequest* request, v1::Run* response) {
  if (grpc::Status auth = Authorize(*context, Access::kRead); !auth.ok()) return auth;
  auto view = broker_->GetRun(request->run_id());
  if (!view) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no run " + request->run_id());
  DescribeRun(*view, response);
  return grpc::Status::OK;
}

grpc::Status ControllerService::ListRuns(grpc::ServerContext* context,
                                         const v1::ListRunsRequest* request,
                                         v1::ListRunsResponse* response) {
  if (grpc::Status auth = Authorize(*context, Access::kRead); !auth.ok()) return auth;
  if (request->page_size() < 0 || request->page_size() > 1000) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_size: must be 0..1000");
  }
  std::optional<RunState> state;
  if (request->state() != v1::RUN_STATE_UNSPECIFIED) {
    state = FromProto(request->state());
    if (!state) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "state: unknown state");
  }
  auto page = broker_->ListRuns(state, request->page_token(),
                                request->page_size() ? request->page_size() : 100);
  if (!page.ok()) return ToGrpc(page.status());
  for (const RunView& view : page->runs) DescribeRun(view, response->add_runs());
  response->set_next_page_token(page->next_page_token);
  return grpc::Status::OK;
}

grpc::Status ControllerService::StopRun(grpc::ServerContext* context,
                                        const v1::StopRunRequest* request, v1::Run* response) {
  if (grpc::Status auth = Authorize(*context, Access::kWrite); !auth.ok()) return auth;
  if (Status stopped = broker_->StopRun(request->run_id()); !stopped.ok()) return ToGrpc(stopped);
  auto view = broker_->GetRun(request->run_id());
  if (!view) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no run " + request->run_id());
  DescribeRun(*view, response);
  return grpc::Status::OK;
}

grpc::Status ControllerService::WatchRun(grpc::ServerContext* context,
                                         const v1::WatchRunRequest* request,
                                         grpc::ServerWriter<v1::Run>* writer) {
  if (grpc::Status auth = Authorize(*context, Access::kRead); !auth.ok()) return auth;
  // An update carries only the series points after those this stream has sent, not up to 3,600
  // points twice a second.
  SeriesSent sent;
  while (true) {
    auto view = broker_->GetRun(request->run_id());
    if (!view) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no run " + request->run_id());
    v1::Run run;
    DescribeRun(*view, &run, &sent);
    if (!writer->Write(run))
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    if (IsOver(view->state)) return grpc::Status::OK;
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    {
      MutexLock lock(mu_);
      if (stopping_) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "the controller is shutting down; watch again after its restart");
      }
    }
    broker_->WaitForRun(request->run_id(), std::chrono::milliseconds(500));
  }
}

grpc::Status ControllerService::ListWorkers(grpc::ServerContext* context,
                                            const v1::ListWorkersRequest*,
                                            v1::ListWorkersResponse* response) {
  if (grpc::Status auth = Authorize(*context, Access::kRead); !auth.ok()) return auth;
  for (const auto& worker : broker_->ListWorkers()) {
    auto* out = response->add_workers();
    out->set_worker_id(worker.id);
    out->set_threads(worker.threads);
    out->set_run_id(worker.run_id);
  }
  return grpc::Status::OK;
}

grpc::Status ControllerService::GetController(grpc::ServerContext* context,
                                              const v1::GetControllerRequest*,
                                              v1::ControllerInfo* response) {
  if (grpc::Status auth = Authorize(*context, Access::kRead); !auth.ok()) return auth;
  response->set_version(LOADS_SDK_VERSION);
  response->set_zmq_endpoint(broker_->endpoint());
  v1::ListWorkersResponse workers;
  ListWorkers(context, nullptr, &workers);
  *response->mutable_workers() = workers.workers();
  return grpc::Status::OK;
}

}  // namespace loads::controller
