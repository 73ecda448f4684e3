#include "runner/remote.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "loads/common/report.h"
#include "loads/common/snapshot.h"
#include "loads/v1/controller.grpc.pb.h"
#include "runner/exit_codes.h"

namespace loads::runner {
namespace {

using Stub = v1::Controller::Stub;

// The API token sent with every call ("" when none), set once from --token-file.
std::string& ApiToken() {
  static std::string token;
  return token;
}

// Every call goes through a context made here, so that none forgets the token.
std::unique_ptr<grpc::ClientContext> NewContext() {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!ApiToken().empty()) context->AddMetadata("authorization", "Bearer " + ApiToken());
  return context;
}

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "loads-runner: %s\n", message.c_str());
  return code;
}

int FailRpc(const grpc::Status& status, const std::string& what, const std::string& controller) {
  const int code =
      status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? kExitUsage : kExitController;
  return Fail(code, what + " (controller " + controller + "): " + status.error_message());
}

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
    default:
      return "unknown";
  }
}

std::string JoinNames(const google::protobuf::RepeatedPtrField<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// Watches a run to its end: progress while it runs, then the report. Ctrl-C stops the run.
int Watch(Stub& stub, const std::string& run_id, const RunnerOptions& options,
          ProgressDisplay* display, std::chrono::milliseconds interval,
          const std::atomic<bool>& stop) {
  const auto start = std::chrono::steady_clock::now();
  auto watch_context = NewContext();
  v1::WatchRunRequest watch;
  watch.set_run_id(run_id);
  auto reader = stub.WatchRun(watch_context.get(), watch);
  // The stream is read on another thread so that Ctrl-C is noticed between updates.
  std::atomic<bool> finished{false};
  std::mutex mu;
  v1::Run latest;
  bool got_any = false;
  std::thread receiver([&] {
    v1::Run update;
    while (reader->Read(&update)) {
      std::lock_guard lock(mu);
      latest = update;
      got_any = true;
    }
    finished = true;
  });
  bool stop_sent = false;
  auto last_shown = std::chrono::steady_clock::now();
  while (!finished) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (stop && !stop_sent) {
      stop_sent = true;
      auto context = NewContext();
      v1::StopRunRequest stop_request;
      stop_request.set_run_id(run_id);
      v1::Run ignored;
      stub.StopRun(context.get(), stop_request, &ignored);
    }
    if (options.quiet || std::chrono::steady_clock::now() - last_shown < interval) continue;
    last_shown = std::chrono::steady_clock::now();
    std::lock_guard lock(mu);
    if (!got_any) continue;
    const v1::RunSpec& spec = latest.spec();
    const std::vector<int64_t> users(spec.users().begin(), spec.users().end());
    const std::vector<int64_t> hits(spec.hits().begin(), spec.hits().end());
    worker::Progress p;
    p.executions = latest.executions();
    p.hits = latest.hits();
    p.planned_executions = common::PlannedExecutions(users, hits);
    p.elapsed_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double planned_seconds = spec.duration() * static_cast<double>(users.size());
    p.fraction = p.planned_executions
                     ? static_cast<double>(p.executions) / static_cast<double>(p.planned_executions)
                     : std::min(1.0, p.elapsed_seconds / std::max(planned_seconds, 1e-9));
    p.cycles = users.size();
    p.cycle = 1;
    display->Update(p);
  }
  receiver.join();
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return FailRpc(status, "lost the stream of run " + run_id, options.controller);
  common::Snapshot merged;
  std::string error;
  if (!common::DecodeSnapshot(latest.stats(), &merged, &error)) {
    return Fail(kExitController, "the controller sent unreadable statistics: " + error);
  }
  // The report's header comes from the controller's own JSON report (start time, duration).
  common::RunInfo info;
  const v1::RunSpec& spec = latest.spec();
  info.test = latest.test();
  info.started = std::chrono::system_clock::now();
  try {
    const auto doc = nlohmann::json::parse(latest.report_json());
    info.duration_seconds = doc.at("duration_seconds").get<double>();
    std::tm tm{};
    const std::string iso = doc.at("started").get<std::string>();
    if (strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) {
      const auto micros = std::stoll(iso.substr(20, 6));
      info.started =
          std::chrono::system_clock::from_time_t(timegm(&tm)) + std::chrono::microseconds(micros);
    }
  } catch (const std::exception&) {
    info.duration_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  info.interrupted = latest.state() == v1::RUN_STATE_STOPPED;
  info.users.assign(spec.users().begin(), spec.users().end());
  info.hits.assign(spec.hits().begin(), spec.hits().end());
  if (spec.duration() > 0) info.duration = spec.duration();
  info.threads = spec.threads() ? spec.threads() : 1;
  if (!options.quiet) {
    display->Finish();
    std::fputs(common::FormatTextReport(info, merged.stats).c_str(), stdout);
    std::printf("\nRun %s on %d worker(s): %s\n", latest.run_id().c_str(), latest.workers_size(),
                JoinNames(latest.workers()).c_str());
    if (latest.missing_snapshots() > 0) {
      std::printf("Missing: %llu snapshot(s) never arrived (their results are not included)\n",
                  static_cast<unsigned long long>(latest.missing_snapshots()));
    }
    if (latest.degraded()) {
      std::printf("Degraded: lost worker(s) %s; their results until then are included\n",
                  JoinNames(latest.lost_workers()).c_str());
    }
    std::fflush(stdout);
  }
  for (const auto& path : options.json_outputs) {
    std::ofstream file(path, std::ios::trunc);
    file << latest.report_json();
    file.close();
    if (!file) return Fail(kExitReportNotWritten, "could not write the report to " + path);
  }
  if (latest.state() == v1::RUN_STATE_FAILED) {
    return Fail(kExitTestProblems, "run " + latest.run_id() + " failed: " + latest.error());
  }
  if (info.interrupted) return kExitInterrupted;
  return merged.stats.failures + merged.stats.errors > 0 ? kExitTestProblems : kExitOk;
}

int ListRuns(Stub& stub, const RunnerOptions& options) {
  auto context = NewContext();
  v1::ListRunsResponse response;
  const grpc::Status status = stub.ListRuns(context.get(), v1::ListRunsRequest(), &response);
  if (!status.ok()) return FailRpc(status, "cannot list runs", options.controller);
  std::printf("%-34s %-10s %8s %12s %12s  %s\n", "RUN", "STATE", "WORKERS", "EXECUTIONS", "HITS",
              "TEST");
  for (const auto& run : response.runs()) {
    const std::string& test = run.test();
    std::printf("%-34s %-10s %8d %12llu %12llu  %s%s\n", run.run_id().c_str(),
                StateName(run.state()), run.workers_size(),
                static_cast<unsigned long long>(run.executions()),
                static_cast<unsigned long long>(run.hits()), test.c_str(),
                run.degraded() ? " (degraded)" : "");
  }
  return kExitOk;
}

int StopRun(Stub& stub, const RunnerOptions& options) {
  auto context = NewContext();
  v1::StopRunRequest request;
  request.set_run_id(options.stop_run);
  v1::Run run;
  const grpc::Status status = stub.StopRun(context.get(), request, &run);
  if (!status.ok())
    return FailRpc(status, "cannot stop run " + options.stop_run, options.controller);
  std::printf("run %s: %s\n", run.run_id().c_str(),
              run.state() == v1::RUN_STATE_RUNNING || run.state() == v1::RUN_STATE_ASSIGNING
                  ? "stopping"
                  : StateName(run.state()));
  return kExitOk;
}

int Ping(Stub& stub, const RunnerOptions& options) {
  auto context = NewContext();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ControllerInfo info;
  const grpc::Status status = stub.GetController(context.get(), v1::GetControllerRequest(), &info);
  if (!status.ok()) return FailRpc(status, "no answer", options.controller);
  std::printf("controller %s: loads %s\nworkers connect to %s\n%d worker(s)\n",
              options.controller.c_str(), info.version().c_str(), info.zmq_endpoint().c_str(),
              info.workers_size());
  for (const auto& worker : info.workers()) {
    std::printf("  %s  threads %lld  %s\n", worker.worker_id().c_str(),
                static_cast<long long>(worker.threads()),
                worker.run_id().empty() ? "idle" : ("in run " + worker.run_id()).c_str());
  }
  return kExitOk;
}

v1::RunSpec SpecFrom(const RunnerOptions& options, const std::string& library_path,
                     std::string* error) {
  v1::RunSpec spec;
  if (!options.test_runner.empty()) {
    spec.set_external_command(options.test_runner);
  } else if (options.test.ends_with(".json")) {
    std::ifstream file(options.test);
    spec.set_test(options.test);
    spec.set_scenario(
        std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>()));
  } else if (options.url.empty()) {
    std::ifstream file(library_path, std::ios::binary);
    if (!file) *error = "cannot read " + library_path;
    std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    spec.set_test(options.test);
    spec.set_test_library(std::move(bytes));
  } else {
    spec.set_url(options.url);
  }
  for (int64_t u : options.users) spec.add_users(u);
  for (int64_t h : options.hits) spec.add_hits(h);
  if (options.duration) spec.set_duration(*options.duration);
  spec.set_workers(options.workers);
  spec.set_threads(options.threads.value_or(1));
  spec.set_server_url(options.server_url);
  spec.set_connect_timeout_ms(static_cast<int64_t>(options.connect_timeout * 1000));
  spec.set_timeout_ms(static_cast<int64_t>(options.timeout * 1000));
  spec.set_insecure(options.insecure);
  spec.set_worker_cpu(options.worker_cpu);
  spec.set_worker_memory(options.worker_memory);
  for (const auto& [key, value] : options.metadata) (*spec.mutable_metadata())[key] = value;
  spec.set_loss_policy(options.fail_on_worker_loss ? v1::LOSS_POLICY_FAIL
                                                   : v1::LOSS_POLICY_CONTINUE);
  return spec;
}

}  // namespace

int RunRemote(const RunnerOptions& options, const std::string& library_path,
              ProgressDisplay* display, std::chrono::milliseconds interval,
              const std::atomic<bool>& stop) {
  if (!options.token_file.empty()) {
    std::ifstream file(options.token_file);
    if (!file || !std::getline(file, ApiToken()) || ApiToken().empty()) {
      return Fail(kExitUsage, "cannot read a token from " + options.token_file);
    }
  }
  auto channel = grpc::CreateChannel(options.controller, grpc::InsecureChannelCredentials());
  auto stub = v1::Controller::NewStub(channel);
  if (options.list_runs) return ListRuns(*stub, options);
  if (!options.stop_run.empty()) return StopRun(*stub, options);
  if (options.ping) return Ping(*stub, options);
  if (!options.attach.empty()) {
    return Watch(*stub, options.attach, options, display, interval, stop);
  }

  std::string error;
  v1::StartRunRequest request;
  request.set_run_id(RandomRunId());
  *request.mutable_spec() = SpecFrom(options, library_path, &error);
  if (!error.empty()) return Fail(kExitUsage, error);
  if (options.check_cluster) {
    // One execution of the URL on every idle worker.
    auto context = NewContext();
    v1::ControllerInfo info;
    const grpc::Status status =
        stub->GetController(context.get(), v1::GetControllerRequest(), &info);
    if (!status.ok()) return FailRpc(status, "no answer", options.controller);
    int idle = 0;
    for (const auto& worker : info.workers()) idle += worker.run_id().empty();
    if (idle == 0) return Fail(kExitController, "no idle worker to check");
    v1::RunSpec& spec = *request.mutable_spec();
    spec.clear_users();
    spec.add_users(idle);
    spec.clear_hits();
    spec.add_hits(1);
    spec.set_duration(0);
    spec.set_workers(idle);
  }
  v1::Run run;
  auto context = NewContext();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  const grpc::Status status = stub->StartRun(context.get(), request, &run);
  if (!status.ok()) return FailRpc(status, "the run was not started", options.controller);
  if (options.detach) {
    std::printf("%s\n", run.run_id().c_str());
    std::fprintf(stderr, "loads-runner: run %s started on %d worker(s); attach with --attach %s\n",
                 run.run_id().c_str(), run.workers_size(), run.run_id().c_str());
    return kExitOk;
  }
  return Watch(*stub, run.run_id(), options, display, interval, stop);
}

}  // namespace loads::runner
