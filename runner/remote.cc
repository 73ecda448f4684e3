#include "runner/remote.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "loads/common/report.h"
#include "loads/common/snapshot.h"
#include "loads/v1/controller.grpc.pb.h"

namespace loads::runner {
namespace {

constexpr int kExitTestProblems = 1;
constexpr int kExitUsage = 2;
constexpr int kExitReportNotWritten = 6;
constexpr int kExitController = 7;
constexpr int kExitInterrupted = 130;

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "loads-runner: %s\n", message.c_str());
  return code;
}

std::string RandomRunId() {
  std::random_device device;
  std::ostringstream out;
  out << std::hex;
  for (int i = 0; i < 4; ++i) out << device();
  return out.str();
}

}  // namespace

int RunRemote(const RunnerOptions& options, const std::string& library_path,
              ProgressDisplay* display, std::chrono::milliseconds interval,
              const std::atomic<bool>& stop) {
  v1::StartRunRequest request;
  request.set_run_id(RandomRunId());
  v1::RunSpec& spec = *request.mutable_spec();
  if (options.url.empty()) {
    std::ifstream file(library_path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    if (!file.good() && !file.eof()) return Fail(kExitUsage, "cannot read " + library_path);
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

  auto channel = grpc::CreateChannel(options.controller, grpc::InsecureChannelCredentials());
  auto stub = v1::Controller::NewStub(channel);
  v1::Run run;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const grpc::Status status = stub->StartRun(&context, request, &run);
    if (!status.ok()) {
      return Fail(
          status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? kExitUsage : kExitController,
          "the controller at " + options.controller +
              " did not start the run: " + status.error_message());
    }
  }
  const auto started = std::chrono::system_clock::now();
  const auto start = std::chrono::steady_clock::now();
  const uint64_t planned = common::PlannedExecutions(options.users, options.hits);
  const double planned_seconds =
      options.duration ? *options.duration * static_cast<double>(options.users.size()) : 0;

  // The stream is read on another thread so that Ctrl-C is noticed between updates.
  grpc::ClientContext watch_context;
  v1::WatchRunRequest watch;
  watch.set_run_id(request.run_id());
  auto reader = stub->WatchRun(&watch_context, watch);
  bool stop_sent = false;
  std::atomic<bool> finished{false};
  std::mutex mu;
  v1::Run latest = run;
  std::thread receiver([&] {
    v1::Run update;
    while (reader->Read(&update)) {
      std::lock_guard lock(mu);
      latest = update;
    }
    finished = true;
  });
  auto last_shown = std::chrono::steady_clock::now();
  while (!finished) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (stop && !stop_sent) {
      stop_sent = true;
      grpc::ClientContext context;
      v1::StopRunRequest stop_request;
      stop_request.set_run_id(request.run_id());
      v1::Run ignored;
      stub->StopRun(&context, stop_request, &ignored);
    }
    if (!options.quiet && std::chrono::steady_clock::now() - last_shown >= interval) {
      last_shown = std::chrono::steady_clock::now();
      std::lock_guard lock(mu);
      worker::Progress p;
      p.executions = latest.executions();
      p.hits = latest.hits();
      p.planned_executions = planned;
      p.elapsed_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      p.fraction = planned ? static_cast<double>(p.executions) / static_cast<double>(planned)
                           : std::min(1.0, p.elapsed_seconds / std::max(planned_seconds, 1e-9));
      p.cycles = options.users.size();
      p.cycle = 1;
      display->Update(p);
    }
  }
  receiver.join();
  const grpc::Status status = reader->Finish();
  if (!status.ok()) {
    return Fail(kExitController,
                "lost the run's stream from " + options.controller + ": " + status.error_message());
  }
  common::Snapshot merged;
  std::string error;
  if (!common::DecodeSnapshot(latest.stats(), &merged, &error)) {
    return Fail(kExitController, "the controller sent unreadable statistics: " + error);
  }
  common::RunInfo info;
  info.test = options.url.empty() ? options.test : "GET " + options.url;
  info.started = started;
  info.duration_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  info.interrupted = latest.state() == v1::RUN_STATE_STOPPED;
  info.users = options.users;
  info.hits = options.hits;
  info.duration = options.duration;
  info.threads = options.threads.value_or(1);
  if (!options.quiet) {
    display->Finish();
    std::fputs(common::FormatTextReport(info, merged.stats).c_str(), stdout);
    std::string workers;
    for (const auto& w : latest.workers()) workers += (workers.empty() ? "" : ", ") + w;
    std::printf("\nRun %s on %d worker(s): %s\n", latest.run_id().c_str(), latest.workers_size(),
                workers.c_str());
    if (latest.degraded()) {
      std::string lost;
      for (const auto& w : latest.lost_workers()) lost += (lost.empty() ? "" : ", ") + w;
      std::printf("Degraded: lost worker(s) %s; their results until then are included\n",
                  lost.c_str());
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
  return merged.stats.failures + merged.stats.errors > 0 ? kExitTestProblems : 0;
}

}  // namespace loads::runner
