#include "loads/controller/service.h"

#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "loads/common/report.h"
#include "loads/common/snapshot.h"
#include "loads/common/url.h"
#include "loads/version.h"
#include "loads/worker/scenario.h"

namespace loads::controller {
namespace {

using grpc::Status;
using grpc::StatusCode;

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
  }
  return v1::RUN_STATE_UNSPECIFIED;
}

// The run's test as a worker names it (its report's Test, its hits' `test` label).
std::string TestName(const v1::RunSpec& spec) {
  if (!spec.url().empty()) return "GET " + spec.url();
  if (!spec.external_command().empty()) return "external: " + spec.external_command();
  if (!spec.scenario().empty()) {
    std::string error;
    const auto scenario = worker::ParseScenario(spec.scenario(), &error);
    if (scenario) return worker::MakeScenarioName(*scenario);
  }
  return spec.test();
}

common::Assignment ToPlan(const v1::RunSpec& spec) {
  common::Assignment plan;
  plan.test = TestName(spec);
  plan.url = spec.url();
  plan.library = spec.test_library();
  plan.scenario = spec.scenario();
  plan.external_command = spec.external_command();
  plan.users.assign(spec.users().begin(), spec.users().end());
  plan.hits.assign(spec.hits().begin(), spec.hits().end());
  if (spec.duration() > 0) plan.duration = spec.duration();
  plan.threads = spec.threads() ? spec.threads() : 1;
  plan.server_url = spec.server_url();
  plan.connect_timeout_ms = spec.connect_timeout_ms() ? spec.connect_timeout_ms() : 10'000;
  plan.timeout_ms = spec.timeout_ms() ? spec.timeout_ms() : 30'000;
  plan.insecure = spec.insecure();
  return plan;
}

}  // namespace

std::string ValidateRunSpec(const v1::RunSpec& spec) {
  if (spec.users().empty()) return "spec.users: at least one user cycle is required";
  for (int64_t u : spec.users()) {
    if (u < 1 || u > 10'000'000) return "spec.users: each cycle must be 1..10000000";
  }
  for (int64_t h : spec.hits()) {
    if (h < 1) return "spec.hits: each cycle must be at least 1";
  }
  if (spec.duration() < 0 || !std::isfinite(spec.duration())) return "spec.duration: must be >= 0";
  if (spec.hits().empty() == (spec.duration() == 0)) {
    return "spec.hits, spec.duration: give exactly one of them";
  }
  if (!spec.url().empty() + !spec.test_library().empty() + !spec.scenario().empty() +
          !spec.external_command().empty() !=
      1) {
    return "spec.url, spec.test_library, spec.scenario, spec.external_command: give exactly one "
           "of them";
  }
  if (!spec.external_command().empty()) {
    // Run as given by /bin/sh on the workers.
  } else if (!spec.scenario().empty()) {
    std::string error;
    if (!worker::ParseScenario(spec.scenario(), &error)) return "spec.scenario: " + error;
  } else if (!spec.url().empty()) {
    std::string why;
    auto url = common::ParseUrl(spec.url(), &why);
    if (!url) return "spec.url: " + why;
    if (url->scheme != "http" && url->scheme != "https") return "spec.url: expected http or https";
  } else if (std::count(spec.test().begin(), spec.test().end(), '.') < 2) {
    return "spec.test: expected module.Class.method";
  }
  if (spec.workers() < 0 || spec.workers() > 1000) return "spec.workers: must be 1..1000";
  if (spec.threads() < 0 || spec.threads() > 1024) return "spec.threads: must be 1..1024";
  if (spec.connect_timeout_ms() < 0) return "spec.connect_timeout_ms: must be >= 0";
  if (spec.timeout_ms() < 0) return "spec.timeout_ms: must be >= 0";
  if (!spec.server_url().empty() && !common::ParseUrl(spec.server_url())) {
    return "spec.server_url: not an absolute http, https, ws or wss URL";
  }
  if (!spec.worker_cpu().empty() && !IsResourceQuantity(spec.worker_cpu())) {
    return "spec.worker_cpu: not a Kubernetes quantity (such as 500m or 2)";
  }
  if (!spec.worker_memory().empty() && !IsResourceQuantity(spec.worker_memory())) {
    return "spec.worker_memory: not a Kubernetes quantity (such as 256Mi or 1Gi)";
  }
  return "";
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
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  stop_.notify_all();
  if (supervisor_.joinable()) supervisor_.join();
}

void ControllerService::Supervise() {
  std::unique_lock lock(mu_);
  while (!stop_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; })) {
    lock.unlock();
    try {
      // Under start_mu_: a StartRun between launching pods and registering its run would
      // otherwise see its fresh pods taken for leftovers of an unknown run.
      std::lock_guard start(start_mu_);
      const auto retire = [this](const std::string& id) { return broker_->RetireWorker(id); };
      for (const auto& failure : launcher_->Supervise(broker_->ListRunSummaries(), retire)) {
        std::fprintf(stderr, "loads-controller: run %s failed: %s\n", failure.run_id.c_str(),
                     failure.message.c_str());
        broker_->FailRun(failure.run_id, failure.message);
      }
    } catch (const std::exception& e) {
      // A boundary: the next round tries again.
      std::fprintf(stderr, "loads-controller: supervising launched workers: %s\n", e.what());
    }
    lock.lock();
  }
}

Status ControllerService::Authorize(const grpc::ServerContext& context) const {
  if (api_token_.empty()) return Status::OK;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  const std::string expected = "Bearer " + api_token_;
  if (it == metadata.end() || std::string(it->second.data(), it->second.size()) != expected) {
    return Status(StatusCode::UNAUTHENTICATED,
                  "this controller needs a token: send the metadata \"authorization: Bearer "
                  "TOKEN\" (loads-runner --token-file FILE)");
  }
  return Status::OK;
}

bool ControllerService::Describe(const std::string& run_id, v1::Run* out) {
  auto view = broker_->GetRun(run_id);
  if (!view) return false;
  v1::RunSpec spec;
  {
    std::lock_guard lock(mu_);
    spec = specs_[run_id];
  }
  out->Clear();
  out->set_run_id(run_id);
  out->set_state(ToProto(view->state));
  spec.clear_test_library();
  *out->mutable_spec() = spec;
  for (const auto& w : view->workers) out->add_workers(w);
  for (const auto& w : view->lost_workers) out->add_lost_workers(w);
  out->set_degraded(view->degraded);
  out->set_error(view->error);
  out->set_executions(view->stats.Executions());
  out->set_hits(view->stats.hits);
  out->set_snapshots(view->snapshots);
  out->set_duplicate_snapshots(view->duplicates);
  out->set_missing_snapshots(view->gaps);
  out->set_active_users(view->active_users);
  out->set_test(TestName(spec));
  common::Snapshot merged;
  merged.run_id = run_id;
  merged.worker_id = "controller";
  merged.sequence = 1;
  merged.final = IsOver(view->state);
  merged.active_users = view->active_users;
  merged.stats = view->stats;
  out->set_stats(common::EncodeSnapshot(merged));
  common::Snapshot interval;
  interval.run_id = run_id;
  interval.worker_id = "controller";
  interval.sequence = 1;
  interval.interval_end = common::UnixNanos(view->last_interval_end);
  interval.interval_start =
      interval.interval_end >= 1'000'000'000 ? interval.interval_end - 1'000'000'000 : 0;
  interval.stats = view->last_interval;
  out->set_interval_stats(common::EncodeSnapshot(interval));
  if (IsOver(view->state)) {
    common::RunInfo info;
    info.test = TestName(spec);
    info.started = view->started;
    info.duration_seconds = std::chrono::duration<double>(view->ended - view->started).count();
    info.interrupted = view->state == RunState::kStopped;
    info.users.assign(spec.users().begin(), spec.users().end());
    info.hits.assign(spec.hits().begin(), spec.hits().end());
    if (spec.duration() > 0) info.duration = spec.duration();
    info.threads = spec.threads() ? spec.threads() : 1;
    out->set_report_json(common::FormatJsonReport(info, view->stats));
  }
  return true;
}

Status ControllerService::StartRun(grpc::ServerContext* context, const v1::StartRunRequest* request,
                                   v1::Run* response) {
  if (Status auth = Authorize(*context); !auth.ok()) return auth;
  const std::string& run_id = request->run_id();
  if (run_id.empty() || run_id.size() > 200) {
    return Status(StatusCode::INVALID_ARGUMENT, "run_id: required, at most 200 characters");
  }
  if (const std::string error = ValidateRunSpec(request->spec()); !error.empty()) {
    return Status(StatusCode::INVALID_ARGUMENT, error);
  }
  std::lock_guard start_lock(start_mu_);
  {
    std::lock_guard lock(mu_);
    auto it = specs_.find(run_id);
    if (it != specs_.end()) {
      if (!google::protobuf::util::MessageDifferencer::Equals(it->second, request->spec())) {
        return Status(StatusCode::FAILED_PRECONDITION,
                      "run " + run_id + " exists with another spec");
      }
    }
  }
  if (broker_->GetRun(run_id)) {
    Describe(run_id, response);
    return Status::OK;
  }
  const int workers = request->spec().workers() ? request->spec().workers() : 1;
  const size_t idle = broker_->IdleWorkers();
  RunRequest run;
  if (idle < static_cast<size_t>(workers)) {
    if (!launcher_) {
      return Status(StatusCode::RESOURCE_EXHAUSTED,
                    "run " + run_id + " needs " + std::to_string(workers) + " workers, " +
                        std::to_string(idle) + " idle, and no launcher is configured");
    }
    LaunchRequest launch;
    launch.run_id = run_id;
    launch.workers = workers - static_cast<int>(idle);
    launch.endpoint = advertise_.empty() ? broker_->endpoint() : advertise_;
    launch.cpu = request->spec().worker_cpu();
    launch.memory = request->spec().worker_memory();
    if (const std::string error = launcher_->Launch(launch); !error.empty()) {
      return Status(StatusCode::RESOURCE_EXHAUSTED, error);
    }
    // The run is accepted now and assigned when its workers have registered (pods can take
    // minutes to be scheduled and pull their image); it fails if they do not come.
    run.wait_for_workers = launcher_->RegistrationTimeout();
    run.worker_prefix = launcher_->WorkerPrefix(run_id);
  }
  run.plan = ToPlan(request->spec());
  run.workers = workers;
  run.loss_policy = request->spec().loss_policy() == v1::LOSS_POLICY_FAIL ? LossPolicy::kFail
                                                                          : LossPolicy::kContinue;
  {
    std::lock_guard lock(mu_);
    specs_[run_id] = request->spec();
  }
  if (auto error = broker_->StartRun(run_id, std::move(run))) {
    std::lock_guard lock(mu_);
    specs_.erase(run_id);
    return Status(StatusCode::RESOURCE_EXHAUSTED, *error);
  }
  Describe(run_id, response);
  return Status::OK;
}

Status ControllerService::GetRun(grpc::ServerContext* context, const v1::GetRunRequest* request,
                                 v1::Run* response) {
  if (Status auth = Authorize(*context); !auth.ok()) return auth;
  if (!Describe(request->run_id(), response)) {
    return Status(StatusCode::NOT_FOUND, "no run " + request->run_id());
  }
  return Status::OK;
}

Status ControllerService::ListRuns(grpc::ServerContext* context, const v1::ListRunsRequest*,
                                   v1::ListRunsResponse* response) {
  if (Status auth = Authorize(*context); !auth.ok()) return auth;
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, spec] : specs_) ids.push_back(id);
  }
  std::vector<v1::Run> runs;
  for (const auto& id : ids) {
    v1::Run run;
    if (Describe(id, &run)) runs.push_back(std::move(run));
  }
  for (auto& run : runs) *response->add_runs() = std::move(run);
  return Status::OK;
}

Status ControllerService::StopRun(grpc::ServerContext* context, const v1::StopRunRequest* request,
                                  v1::Run* response) {
  if (Status auth = Authorize(*context); !auth.ok()) return auth;
  if (!broker_->GetRun(request->run_id())) {
    return Status(StatusCode::NOT_FOUND, "no run " + request->run_id());
  }
  broker_->StopRun(request->run_id());
  Describe(request->run_id(), response);
  return Status::OK;
}

Status ControllerService::WatchRun(grpc::ServerContext* context, const v1::WatchRunRequest* request,
                                   grpc::ServerWriter<v1::Run>* writer) {
  if (Status auth = Authorize(*context); !auth.ok()) return auth;
  while (true) {
    v1::Run run;
    if (!Describe(request->run_id(), &run)) {
      return Status(StatusCode::NOT_FOUND, "no run " + request->run_id());
    }
    const bool over = run.state() == v1::RUN_STATE_DONE || run.state() == v1::RUN_STATE_FAILED ||
                      run.state() == v1::RUN_STATE_STOPPED;
    if (!writer->Write(run)) return Status(StatusCode::CANCELLED, "the client went away");
    if (over) return Status::OK;
    if (context->IsCancelled()) return Status(StatusCode::CANCELLED, "cancelled");
    broker_->WaitForRun(request->run_id(), std::chrono::milliseconds(500));
  }
}

Status ControllerService::ListWorkers(grpc::ServerContext* context, const v1::ListWorkersRequest*,
                                      v1::ListWorkersResponse* response) {
  if (Status auth = Authorize(*context); !auth.ok()) return auth;
  for (const auto& worker : broker_->ListWorkers()) {
    auto* out = response->add_workers();
    out->set_worker_id(worker.id);
    out->set_threads(worker.threads);
    out->set_run_id(worker.run_id);
  }
  return Status::OK;
}

Status ControllerService::GetController(grpc::ServerContext* context,
                                        const v1::GetControllerRequest*,
                                        v1::ControllerInfo* response) {
  if (Status auth = Authorize(*context); !auth.ok()) return auth;
  response->set_version(LOADS_SDK_VERSION);
  response->set_zmq_endpoint(broker_->endpoint());
  v1::ListWorkersResponse workers;
  ListWorkers(context, nullptr, &workers);
  *response->mutable_workers() = workers.workers();
  return Status::OK;
}

}  // namespace loads::controller
