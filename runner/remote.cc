#include "runner/remote.h"

#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "loads/common/run_spec.h"
#include "loads/common/snapshot.h"
#include "runner/exit_codes.h"

namespace loads::runner {
namespace {

using Clock = std::chrono::steady_clock;
using google::protobuf::util::TimeUtil;

// The largest request the runner sends: a test library of up to 64 MiB and the rest of the spec
// (the controller accepts as much).
constexpr int kMaxRequestBytes = 64 * 1024 * 1024 + 1024 * 1024;

std::string RandomRunId() {
  std::random_device device;
  std::ostringstream out;
  out << std::hex;
  for (int i = 0; i < 4; ++i) out << device();
  return out.str();
}

const char* StateName(v1::RunState state) {
  switch (state) {
    case v1::RUN_STATE_ASSIGNING:
      return "assigning";
    case v1::RUN_STATE_RUNNING:
      return "running";
    case v1::RUN_STATE_DONE:
      return "done";
    case v1::RUN_STATE_FAILED:
      return "failed";
    case v1::RUN_STATE_STOPPED:
      return "stopped";
    case v1::RUN_STATE_PARTIAL:
      return "partial";
    default:
      return "unknown";
  }
}

bool IsOver(v1::RunState state) {
  return state == v1::RUN_STATE_DONE || state == v1::RUN_STATE_FAILED ||
         state == v1::RUN_STATE_STOPPED || state == v1::RUN_STATE_PARTIAL;
}

std::chrono::system_clock::time_point TimeOf(const google::protobuf::Timestamp& t) {
  return common::FromUnixNanos(TimeUtil::TimestampToNanoseconds(t));
}

// A controller that cannot be reached (or is restarting) is waited for; other refusals are
// final.
bool Transient(const grpc::Status& status) {
  // A TLS handshake that fails (an untrusted certificate) fails the same way next time.
  if (status.error_message().find("andshake failed") != std::string::npos) return false;
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         status.error_code() == grpc::StatusCode::CANCELLED;
}

// Sleeps up to `d`, returning early when `stop` turns true.
void SleepUnlessStopped(std::chrono::milliseconds d, const std::atomic<bool>& stop) {
  const auto until = Clock::now() + d;
  while (Clock::now() < until && !stop) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

// What the runner prints and returns once the run is over.
StatusOr<RunOutcome> OutcomeOf(const v1::Run& run, double unreachable_seconds) {
  common::Snapshot merged;
  if (Status read = common::DecodeSnapshot(run.stats(), &merged); !read.ok()) {
    return InternalError("the controller sent unreadable statistics: " + read.message());
  }
  RunOutcome outcome;
  const v1::RunSpec& spec = run.spec();
  common::RunInfo& info = outcome.info;
  info.test = run.test();
  info.started = TimeOf(run.started());
  info.duration_seconds = std::chrono::duration<double>(TimeOf(run.ended()) - info.started).count();
  info.interrupted = run.state() == v1::RUN_STATE_STOPPED;
  info.users.assign(spec.users().begin(), spec.users().end());
  info.hits.assign(spec.hits().begin(), spec.hits().end());
  if (spec::Seconds(spec.duration()) > 0) info.duration = spec::Seconds(spec.duration());
  info.threads = spec.threads();  // 0: each worker its own default
  info.load = spec::ToPlan(spec).load;
  common::ClusterRun cluster;
  cluster.run_id = run.run_id();
  cluster.state = StateName(run.state());
  cluster.error = run.error();
  cluster.workers.assign(run.workers().begin(), run.workers().end());
  cluster.lost_workers.assign(run.lost_workers().begin(), run.lost_workers().end());
  cluster.left_workers.assign(run.left_workers().begin(), run.left_workers().end());
  if (run.has_missing_executions()) cluster.missing_executions = run.missing_executions();
  cluster.late_snapshots = run.late_snapshots();
  cluster.controller_restarts = run.controller_restarts();
  cluster.unreachable_seconds = unreachable_seconds;
  info.cluster = std::move(cluster);
  outcome.stats = std::move(merged.stats);
  common::Series series;
  const double step = spec::Seconds(run.series_step());
  series.step_seconds = step > 0 ? step : 1;
  for (const v1::SeriesPoint& point : run.series()) {
    series.seconds.push_back(point.second());
    series.hits.push_back(point.hits());
    series.hit_errors.push_back(point.hit_errors());
    series.executions.push_back(point.executions());
    series.errors.push_back(point.errors());
    series.failures.push_back(point.failures());
    series.active_users.push_back(point.active_users());
    const auto optional = [](bool has, double value) {
      return has ? std::optional<double>(value) : std::nullopt;
    };
    series.p50.push_back(optional(point.has_p50_seconds(), point.p50_seconds()));
    series.p90.push_back(optional(point.has_p90_seconds(), point.p90_seconds()));
    series.p99.push_back(optional(point.has_p99_seconds(), point.p99_seconds()));
  }
  info.series = std::move(series);
  info.thresholds = common::EvaluateThresholds(spec::Thresholds(spec), info, outcome.stats);
  // A threshold that stopped the run is known to the controller only: its report says which.
  try {
    const auto doc = nlohmann::json::parse(run.report_json());
    const auto& judged = doc.at("thresholds");
    for (size_t i = 0; i < info.thresholds.size() && i < judged.size(); ++i) {
      if (judged[i].at("threshold") != info.thresholds[i].text) continue;
      if (!judged[i].at("aborted_at_seconds").is_null()) {
        info.thresholds[i].passed = false;
        info.thresholds[i].aborted_at = judged[i].at("aborted_at_seconds").get<double>();
        info.interrupted = true;
      }
    }
  } catch (const std::exception&) {
    // An older controller's report, or none: the verdicts above stand.
  }
  outcome.error = run.error();
  switch (run.state()) {
    case v1::RUN_STATE_FAILED:
      outcome.end = RunEnd::kFailed;
      break;
    case v1::RUN_STATE_STOPPED:
      outcome.end = RunEnd::kInterrupted;
      break;
    case v1::RUN_STATE_PARTIAL:
      outcome.end = RunEnd::kPartial;
      break;
    default:
      outcome.end = RunEnd::kDone;
  }
  outcome.report_json = run.report_json();
  if (unreachable_seconds > 0) {
    // What only the client saw goes into the controller's report too.
    try {
      auto doc = nlohmann::json::parse(outcome.report_json);
      doc["run"]["unreachable_seconds"] = unreachable_seconds;
      outcome.report_json = doc.dump(2) + "\n";
    } catch (const std::exception&) {
      outcome.report_json.clear();  // made from info and stats instead
    }
  }
  return outcome;
}

}  // namespace

Status ControllerError(const grpc::Status& status, const std::string& what,
                       const std::string& controller) {
  std::string message = what + " (controller " + controller + "): " + status.error_message();
  // The two ways a TLS mismatch shows, told in words.
  if (status.error_message().find("Socket closed") != std::string::npos) {
    message +=
        " (a controller that serves TLS closes plain-text connections: is --tls-ca "
        "missing?)";
  } else if (status.error_message().find("certificate verify failed") != std::string::npos) {
    message +=
        " (the controller's certificate is not signed by a CA of --tls-ca, or does not "
        "name the host of --controller)";
  }
  return Status(static_cast<StatusCode>(status.error_code()), message);
}

RemoteBackend::RemoteBackend(const RunnerOptions& options, std::string token,
                             std::shared_ptr<grpc::ChannelCredentials> credentials)
    : options_(options), token_(std::move(token)) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(kMaxRequestBytes);
  // A frozen or vanished controller is noticed within seconds, not after TCP's minutes.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  auto channel = grpc::CreateCustomChannel(options.controller, credentials, args);
  stub_ = v1::Controller::NewStub(channel);
}

StatusOr<std::unique_ptr<RemoteBackend>> RemoteBackend::Connect(const RunnerOptions& options) {
  std::string token;
  if (!options.token_file.empty()) {
    std::ifstream file(options.token_file);
    if (!file || !std::getline(file, token) || token.empty()) {
      return InvalidArgumentError("cannot read a token from " + options.token_file);
    }
  }
  // TLS (and mTLS) from PEM files read now: a missing or unreadable one is a usage error.
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.tls_ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    for (auto [path, out] : {std::pair{&options.tls_ca, &ssl.pem_root_certs},
                             std::pair{&options.tls_cert, &ssl.pem_cert_chain},
                             std::pair{&options.tls_key, &ssl.pem_private_key}}) {
      if (path->empty()) continue;
      std::ifstream file(*path, std::ios::binary);
      std::string pem((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
      if (!file || pem.find("-----BEGIN ") == std::string::npos) {
        return InvalidArgumentError("cannot read a PEM file from " + *path);
      }
      *out = std::move(pem);
    }
    credentials = grpc::SslCredentials(ssl);
  }
  return std::unique_ptr<RemoteBackend>(
      new RemoteBackend(options, std::move(token), std::move(credentials)));
}

std::unique_ptr<grpc::ClientContext> RemoteBackend::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  // Every call goes through here, so that none forgets the token.
  if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
  return context;
}

StatusOr<std::string> RemoteBackend::Start(const v1::RunSpec& spec) {
  v1::StartRunRequest request;
  request.set_run_id(RandomRunId());
  *request.mutable_spec() = spec;
  // StartRun is idempotent on the run id: while the controller cannot be reached (it may be
  // restarting), the same request is sent again.
  const auto give_up = Clock::now() + options_.reconnect_timeout;
  auto backoff = std::chrono::milliseconds(100);
  while (true) {
    v1::Run run;
    auto context = NewContext();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const grpc::Status status = stub_->StartRun(context.get(), request, &run);
    if (status.ok()) return run.run_id();
    if (!Transient(status) || Clock::now() + backoff > give_up) {
      return ControllerError(status, "the run was not started", options_.controller);
    }
    if (backoff == std::chrono::milliseconds(100)) {
      std::fprintf(stderr,
                   "loads-runner: the controller %s cannot be reached (%s); trying again for up "
                   "to %lld s (--reconnect-timeout)\n",
                   options_.controller.c_str(), status.error_message().c_str(),
                   static_cast<long long>(options_.reconnect_timeout.count()));
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
  }
}

StatusOr<RunOutcome> RemoteBackend::Run(const v1::RunSpec& spec, const std::atomic<bool>& stop,
                                        const ProgressSink& sink) {
  auto run_id = Start(spec);
  if (!run_id.ok()) return run_id.status();
  return Watch(*run_id, stop, sink);
}

StatusOr<RunOutcome> RemoteBackend::Watch(const std::string& run_id, const std::atomic<bool>& stop,
                                          const ProgressSink& sink) {
  const auto start = Clock::now();
  v1::Run latest;
  bool got_any = false;
  bool stop_sent = false;
  // Set while the controller cannot be reached (a time_point and a flag: GCC 12 warns falsely on
  // an optional time_point).
  bool unreachable = false;
  Clock::time_point unreachable_since{};
  double unreachable_seconds = 0;
  auto backoff = std::chrono::milliseconds(100);
  auto last_shown = Clock::now();
  const auto try_stop = [&] {
    auto context = NewContext();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    v1::StopRunRequest request;
    request.set_run_id(run_id);
    v1::Run ignored;
    stop_sent = stub_->StopRun(context.get(), request, &ignored).ok();
  };
  while (true) {
    auto context = NewContext();
    v1::WatchRunRequest watch;
    watch.set_run_id(run_id);
    auto reader = stub_->WatchRun(context.get(), watch);
    // The stream is read on another thread so that Ctrl-C and the progress go on between
    // updates.
    std::atomic<bool> finished{false};
    std::mutex mu;
    std::optional<v1::Run> fresh;
    std::thread receiver([&] {
      v1::Run update;
      while (reader->Read(&update)) {
        std::lock_guard lock(mu);
        fresh = update;
      }
      finished = true;
    });
    const auto take_fresh = [&] {
      std::lock_guard lock(mu);
      if (!fresh) return;
      latest = std::move(*fresh);
      fresh.reset();
      got_any = true;
      if (unreachable) {
        unreachable_seconds +=
            std::chrono::duration<double>(Clock::now() - unreachable_since).count();
        unreachable = false;
        backoff = std::chrono::milliseconds(100);
        std::fprintf(stderr, "loads-runner: the controller is back; watching run %s again\n",
                     run_id.c_str());
      }
    };
    while (!finished) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      take_fresh();
      if (stop && !stop_sent) try_stop();
      if (!sink.progress || Clock::now() - last_shown < sink.interval || !got_any) continue;
      last_shown = Clock::now();
      const v1::RunSpec& spec = latest.spec();
      const std::vector<int64_t> users(spec.users().begin(), spec.users().end());
      const std::vector<int64_t> hits(spec.hits().begin(), spec.hits().end());
      worker::Progress p;
      p.executions = latest.executions();
      p.hits = latest.hits();
      p.planned_executions = common::PlannedExecutions(users, hits);
      p.elapsed_seconds = std::chrono::duration<double>(Clock::now() - start).count();
      const double planned_seconds =
          spec::Seconds(spec.duration()) * static_cast<double>(users.size());
      p.fraction =
          p.planned_executions
              ? static_cast<double>(p.executions) / static_cast<double>(p.planned_executions)
              : std::min(1.0, p.elapsed_seconds / std::max(planned_seconds, 1e-9));
      p.cycles = std::max<size_t>(1, users.size());
      p.cycle = 1;
      p.target_rate = latest.target_rate();
      p.active_users = static_cast<int64_t>(latest.active_users());
      p.ramped = !spec.stages().empty();
      if (spec.rate() != 0 || !spec.rate_stages().empty() || p.ramped) {
        // The load model's own length: stages, or the rate's duration.
        double length = spec::Seconds(spec.duration());
        for (const auto& stage : spec.rate_stages()) length += spec::Seconds(stage.duration());
        for (const auto& stage : spec.stages()) length += spec::Seconds(stage.duration());
        p.fraction = std::min(1.0, p.elapsed_seconds / std::max(length, 1e-9));
      }
      sink.progress(p);
    }
    receiver.join();
    take_fresh();
    const grpc::Status status = reader->Finish();
    if (got_any && IsOver(latest.state())) break;
    if (status.error_code() == grpc::StatusCode::NOT_FOUND && got_any) {
      return Status(StatusCode::kNotFound, "the controller " + options_.controller +
                                               " no longer knows run " + run_id +
                                               " (it restarted without its state folder?)");
    }
    if (!status.ok() && !Transient(status)) {
      return ControllerError(status, "cannot watch run " + run_id, options_.controller);
    }
    // The stream broke (the controller stopped, restarted or cannot be reached): come back.
    const auto now = Clock::now();
    if (!unreachable) {
      unreachable = true;
      unreachable_since = now;
      std::fprintf(stderr,
                   "loads-runner: lost the controller %s (%s); trying again for up to %lld s\n",
                   options_.controller.c_str(), status.error_message().c_str(),
                   static_cast<long long>(options_.reconnect_timeout.count()));
    }
    if (now - unreachable_since > options_.reconnect_timeout) {
      return UnavailableError("the controller " + options_.controller + " was unreachable for " +
                              std::to_string(options_.reconnect_timeout.count()) + " s; run " +
                              run_id + " may still be running (--attach " + run_id + " to see it)");
    }
    SleepUnlessStopped(backoff, stop);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
  }
  // The last update, once the run is over, carries every series point (series_from 0): the
  // updates before it, which carry only new points, are read for progress alone.
  return OutcomeOf(latest, unreachable_seconds);
}

int RemoteBackend::ListRuns() {
  std::printf("%-34s %-10s %8s %12s %12s  %s\n", "RUN", "STATE", "WORKERS", "EXECUTIONS", "HITS",
              "TEST");
  std::string token;
  do {
    auto context = NewContext();
    v1::ListRunsRequest request;
    request.set_page_token(token);
    v1::ListRunsResponse response;
    const grpc::Status status = stub_->ListRuns(context.get(), request, &response);
    if (!status.ok()) {
      std::fprintf(
          stderr, "loads-runner: %s\n",
          ControllerError(status, "cannot list runs", options_.controller).message().c_str());
      return kExitController;
    }
    for (const auto& run : response.runs()) {
      std::printf("%-34s %-10s %8d %12llu %12llu  %s%s\n", run.run_id().c_str(),
                  StateName(run.state()), run.workers_size(),
                  static_cast<unsigned long long>(run.executions()),
                  static_cast<unsigned long long>(run.hits()), run.test().c_str(),
                  run.degraded() ? " (degraded)" : "");
    }
    token = response.next_page_token();
  } while (!token.empty());
  return kExitOk;
}

int RemoteBackend::StopRun(const std::string& run_id) {
  auto context = NewContext();
  v1::StopRunRequest request;
  request.set_run_id(run_id);
  v1::Run run;
  const grpc::Status status = stub_->StopRun(context.get(), request, &run);
  if (!status.ok()) {
    std::fprintf(stderr, "loads-runner: %s\n",
                 ControllerError(status, "cannot stop run " + run_id, options_.controller)
                     .message()
                     .c_str());
    return status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? kExitUsage : kExitController;
  }
  std::printf("run %s: %s\n", run.run_id().c_str(),
              IsOver(run.state()) ? StateName(run.state()) : "stopping");
  return kExitOk;
}

int RemoteBackend::Ping() {
  auto context = NewContext();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ControllerInfo info;
  const grpc::Status status =
      stub_->GetController(context.get(), v1::GetControllerRequest(), &info);
  if (!status.ok()) {
    std::fprintf(stderr, "loads-runner: %s\n",
                 ControllerError(status, "no answer", options_.controller).message().c_str());
    return kExitController;
  }
  std::printf("controller %s: loads %s\nworkers connect to %s\n%d worker(s)\n",
              options_.controller.c_str(), info.version().c_str(), info.zmq_endpoint().c_str(),
              info.workers_size());
  for (const auto& worker : info.workers()) {
    std::printf("  %s  threads %lld  %s\n", worker.worker_id().c_str(),
                static_cast<long long>(worker.threads()),
                worker.run_id().empty() ? "idle" : ("in run " + worker.run_id()).c_str());
  }
  return kExitOk;
}

StatusOr<int> RemoteBackend::IdleWorkers() {
  auto context = NewContext();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ControllerInfo info;
  const grpc::Status status =
      stub_->GetController(context.get(), v1::GetControllerRequest(), &info);
  if (!status.ok()) return ControllerError(status, "no answer", options_.controller);
  int idle = 0;
  for (const auto& worker : info.workers()) idle += worker.run_id().empty();
  return idle;
}

}  // namespace loads::runner
