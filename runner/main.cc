// loads-runner: runs a load test (on this machine, or on a controller's workers) and prints the
// report.

#include <grpc/support/log.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "loads/common/html_report.h"
#include "loads/common/live_page.h"
#include "loads/common/notify.h"
#include "loads/common/report.h"
#include "loads/common/run_spec.h"
#include "loads/worker/engine.h"
#include "loads/worker/scenario.h"
#include "loads/worker/test_loader.h"
#include "runner/exit_codes.h"
#include "runner/live.h"
#include "runner/options.h"
#include "runner/progress.h"
#include "runner/remote.h"
#include "runner/run.h"

namespace {

using namespace loads::runner;  // the exit codes
using loads::Status;
using loads::StatusCode;
using loads::StatusOr;

std::atomic<bool> g_stop{false};
std::atomic<bool> g_kill_engine{false};
std::atomic<int> g_interrupts{0};
std::atomic<bool> g_local{false};

// First Ctrl-C: stop the run and still print the report. Second: a local run's engine is killed
// at once and the report printed with what it sent; otherwise (or at the third) leave at once.
void OnSignal(int) {
  const int count = g_interrupts.fetch_add(1) + 1;
  if (count == 1) {
    g_stop = true;
  } else if (count == 2 && g_local.load()) {
    g_kill_engine = true;
  } else {
    _exit(kExitInterrupted);
  }
}

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "loads-runner: %s\n", message.c_str());
  return code;
}

// The exit status of a run that could not be started or followed.
int ExitCodeFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
      return kExitUsage;
    case StatusCode::kInternal:
      return kExitInternal;
    default:
      return kExitController;
  }
}

std::vector<std::string> SearchPath(const std::vector<std::string>& from_cli) {
  std::vector<std::string> path = from_cli;
  if (const char* env = std::getenv("LOADS_TEST_PATH")) {
    std::string value = env;
    size_t start = 0;
    while (start <= value.size()) {
      const size_t colon = value.find(':', start);
      const std::string dir = value.substr(start, colon - start);
      if (!dir.empty()) path.push_back(dir);
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }
  path.push_back(".");
  return path;
}

int LoadErrorCode(loads::worker::LoadError error) {
  switch (error) {
    case loads::worker::LoadError::kNone:
      return kExitOk;
    case loads::worker::LoadError::kInvalidName:
      return kExitUsage;
    case loads::worker::LoadError::kNotFound:
      return kExitNotFound;
    case loads::worker::LoadError::kLoadFailed:
    case loads::worker::LoadError::kIncompatible:
      return kExitLoadFailed;
    case loads::worker::LoadError::kNoSuchTest:
      return kExitNoSuchTest;
  }
  return kExitInternal;
}

// A test made in this process, for the engine process to run.
loads::runner::LocalTest Ready(loads::worker::TestSpec test) {
  std::string name = test.name;
  return {name, [test = std::move(test)] {
            loads::worker::LoadResult result;
            result.test = test;
            return result;
          }};
}

// Finds the run's test: reads a scenario file into the spec, and for a named test either finds
// its library (a local run's engine process loads it) or reads its bytes into the spec (a
// controller's). Returns 0 or the exit status of the failure, having said why.
int ResolveTest(RunnerOptions& options, bool local, loads::runner::LocalTest* test) {
  loads::v1::RunSpec& spec = options.spec;
  if (!options.scenario_path.empty()) {
    std::ifstream file(options.scenario_path);
    if (!file) return Fail(kExitNotFound, "cannot read the scenario " + options.scenario_path);
    spec.set_scenario(
        std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>()));
    // Its `load` object fills what the command line did not say.
    Status valid = loads::spec::ApplyScenarioLoad(&spec, &options.given_fields);
    loads::spec::ApplyDefaults(&spec);
    if (valid.ok()) {
      valid = loads::spec::ValidateRunSpec(
          spec, {.naming = loads::spec::Naming::kFlags, .library_required = false});
    }
    if (!valid.ok()) {
      return Fail(kExitUsage, options.scenario_path + ": " +
                                  valid.message().substr(valid.message().find(": ") + 2));
    }
    if (local) {
      // Validated above.
      *test =
          Ready(loads::worker::MakeScenarioTest(*loads::common::ParseScenario(spec.scenario())));
    }
  } else if (!spec.url().empty()) {
    if (local) *test = Ready(loads::worker::MakeUrlTest(spec.url()));
  } else if (!spec.external_command().empty()) {
    if (local) *test = Ready(loads::worker::MakeExternalTest(spec.external_command()));
  } else {
    const auto path = SearchPath(options.test_paths);
    // The library is only found here: the engine process loads it, or workers do.
    auto loaded = loads::worker::FindTestLibrary(spec.test(), path);
    if (loaded.error != loads::worker::LoadError::kNone) {
      return Fail(LoadErrorCode(loaded.error), loaded.message);
    }
    if (local) {
      *test = {spec.test(),
               [name = spec.test(), path] { return loads::worker::LoadTest(name, path); }};
    } else {
      std::ifstream file(loaded.library_path, std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
      if (!file && !file.eof()) return Fail(kExitNotFound, "cannot read " + loaded.library_path);
      if (bytes.size() > loads::spec::kMaxLibraryBytes) {
        return Fail(kExitUsage, loaded.library_path + " is " + std::to_string(bytes.size() >> 20) +
                                    " MiB; a controller takes test libraries of at most 64 MiB");
      }
      spec.set_test_library(std::move(bytes));
    }
  }
  return kExitOk;
}

// Writes the report atomically: a reader sees the previous file or the whole new one.
bool WriteFile(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp." + std::to_string(getpid());
  std::ofstream file(temp, std::ios::trunc);
  file << text;
  file.close();
  if (!file || std::rename(temp.c_str(), path.c_str()) != 0) {
    std::remove(temp.c_str());
    return false;
  }
  return true;
}

// Prints and writes the report; returns the exit status the outcome calls for.
// --allow-target's patterns, checked when parsed; null without any.
std::shared_ptr<const loads::common::TargetAllowList> AllowList(const RunnerOptions& options) {
  if (options.allow_targets.empty()) return nullptr;
  auto list = loads::common::TargetAllowList::Parse(options.allow_targets);
  if (!list.ok()) return nullptr;
  return std::make_shared<const loads::common::TargetAllowList>(std::move(*list));
}

// Tells the run's end to its --notify targets; one line on stderr per target.
void Notify(const RunOutcome& outcome, const RunnerOptions& options, int code) {
  std::vector<loads::common::NotifyTarget> targets;
  for (const std::string& text : options.spec.notify()) {
    if (auto target = loads::common::ParseNotifyTarget(text); target.ok()) {
      targets.push_back(*target);
    }
  }
  loads::common::RunNotice notice;
  notice.report_json = outcome.report_json.empty()
                           ? loads::common::FormatJsonReport(outcome.info, outcome.stats)
                           : outcome.report_json;
  notice.summary_text = loads::common::FormatTextReport(outcome.info, outcome.stats);
  notice.html_report = loads::common::FormatHtmlReport(notice.report_json);
  notice.subject = "Loads: " + outcome.info.test + ": " +
                   (code == kExitOk ? std::string("passed") : "exit " + std::to_string(code));
  for (const std::string& line : loads::common::SendNotices(targets, notice, options.notify)) {
    std::fprintf(stderr, "loads-runner: notify %s\n", line.c_str());
  }
}

// `live`, with --web: told the final report, which the page's viewers get last.
int Report(const RunOutcome& outcome, const RunnerOptions& options, ProgressDisplay* display,
           loads::runner::LocalRunSource* live) {
  if (!options.quiet) {
    display->Finish();
    std::fputs(loads::common::FormatTextReport(outcome.info, outcome.stats).c_str(), stdout);
    std::fflush(stdout);
  }
  const std::string json = outcome.report_json.empty()
                               ? loads::common::FormatJsonReport(outcome.info, outcome.stats)
                               : outcome.report_json;
  if (live != nullptr) {
    const char* state = "done";
    if (outcome.end == RunEnd::kInterrupted) state = "stopped";
    if (outcome.end == RunEnd::kEngineFault || outcome.end == RunEnd::kFailed) state = "failed";
    if (outcome.end == RunEnd::kPartial) state = "partial";
    live->Finish(state, json);
  }
  bool written = true;
  const auto write = [&](const std::vector<std::string>& paths, const std::string& text) {
    for (const auto& path : paths) {
      if (!WriteFile(path, text)) {
        Fail(kExitReportNotWritten, "could not write the report to " + path);
        written = false;
      }
    }
  };
  write(options.json_outputs, json);
  if (!options.junit_outputs.empty()) {
    write(options.junit_outputs, loads::common::FormatJUnitReport(outcome.info, outcome.stats));
  }
  if (!options.html_outputs.empty()) {
    write(options.html_outputs, loads::common::FormatHtmlReport(json));
  }
  if (!options.csv_outputs.empty()) {
    write(options.csv_outputs,
          loads::common::FormatCsvSeries(outcome.info.series.value_or(loads::common::Series{})));
  }
  const std::string run = outcome.info.cluster ? "run " + outcome.info.cluster->run_id : "the run";
  switch (outcome.end) {
    case RunEnd::kNotLoaded:  // handled before any report
    case RunEnd::kEngineFault:
      Fail(kExitEngineFault, outcome.error);
      return written ? kExitEngineFault : kExitReportNotWritten;
    case RunEnd::kFailed:
      return Fail(kExitTestProblems, run + " failed: " + outcome.error);
    case RunEnd::kPartial:
      Fail(kExitPartial, run +
                             " is partial: a worker was lost and its results from then on are "
                             "missing");
      return written ? kExitPartial : kExitReportNotWritten;
    case RunEnd::kInterrupted:
      return written ? kExitInterrupted : kExitReportNotWritten;
    case RunEnd::kDone:
      break;
  }
  if (!written) return kExitReportNotWritten;
  // Given thresholds are the verdict; without them, any failed or errored execution is.
  if (!outcome.info.thresholds.empty()) {
    std::string failed;
    size_t count = 0;
    for (const auto& t : outcome.info.thresholds) {
      if (t.passed) continue;
      ++count;
      if (count <= 3)
        failed += (failed.empty() ? "" : ", ") + t.text + " (" + t.observed_text + ")";
    }
    if (count == 0) return kExitOk;
    return Fail(kExitThresholds, std::to_string(count) + " of " +
                                     std::to_string(outcome.info.thresholds.size()) +
                                     " thresholds failed: " + failed + (count > 3 ? ", ..." : ""));
  }
  return outcome.stats.failures + outcome.stats.errors > 0 ? kExitTestProblems : kExitOk;
}

int Main(int argc, char** argv) {
  auto parsed = ParseOptions(std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed.ok()) {
    std::fprintf(stderr, "loads-runner: %s (see loads-runner --help)\n",
                 parsed.status().message().c_str());
    return kExitUsage;
  }
  RunnerOptions& options = *parsed;
  if (options.help) {
    std::fputs(Usage().c_str(), stdout);
    return kExitOk;
  }
  if (options.version) {
    std::printf("loads-runner %s (test ABI %d)\n", LOADS_SDK_VERSION, LOADS_ABI_VERSION);
    return kExitOk;
  }

  std::unique_ptr<RemoteBackend> remote;
  if (!options.controller.empty()) {
    auto connected = RemoteBackend::Connect(options);
    if (!connected.ok()) return Fail(ExitCodeFor(connected.status()), connected.status().message());
    remote = std::move(*connected);
    if (options.list_runs) return remote->ListRuns();
    if (!options.stop_run.empty()) return remote->StopRun(options.stop_run);
    if (options.ping) return remote->Ping();
  }

  loads::runner::LocalTest test;
  if (options.attach.empty()) {
    if (int code = ResolveTest(options, !remote, &test); code != kExitOk) return code;
  }
  if (options.check_cluster) {
    // One execution of the URL on every idle worker.
    auto idle = remote->IdleWorkers();
    if (!idle.ok()) return Fail(kExitController, idle.status().message());
    if (*idle == 0) return Fail(kExitController, "no idle worker to check");
    loads::v1::RunSpec& spec = options.spec;
    spec.clear_users();
    spec.add_users(*idle);
    spec.clear_hits();
    spec.add_hits(1);
    spec.clear_duration();
    spec.set_workers(*idle);
  }

  // A run whose report cannot be written should not start. The check appends nothing and
  // truncates nothing: an interrupted run leaves a previous report as it was.
  for (const auto* paths : {&options.json_outputs, &options.junit_outputs, &options.csv_outputs,
                            &options.html_outputs}) {
    for (const auto& path : *paths) {
      std::ofstream probe(path, std::ios::app);
      if (!probe) return Fail(kExitUsage, "cannot write the report to " + path);
    }
  }

  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);

  g_local = !remote;
  const bool terminal = isatty(STDOUT_FILENO);
  ProgressDisplay display(stdout, terminal);
  ProgressSink sink;
  sink.interval = std::chrono::milliseconds(terminal ? 100 : 1000);
  if (!options.quiet) sink.progress = [&](const loads::worker::Progress& p) { display.Update(p); };
  sink.rate = [&](double rate) { display.SetRate(rate); };

  // --web: the run's live page, for as long as the run (and its last event) lasts.
  std::unique_ptr<loads::runner::LocalRunSource> live;
  std::unique_ptr<loads::common::LivePageServer> web;
  if (!options.web.empty()) {
    live = std::make_unique<loads::runner::LocalRunSource>(&g_stop);
    web = std::make_unique<loads::common::LivePageServer>(
        live.get(), loads::common::LivePageServer::Options{
                        .address = options.web, .token = "", .read_token = "", .max_streams = 16});
    if (loads::Status started = web->Start(); !started.ok()) {
      return Fail(kExitUsage, started.message());
    }
    const std::string host = options.web.substr(0, options.web.rfind(':'));
    std::fprintf(stderr, "loads-runner: the live page of this run: http://%s:%d/runs/%s\n",
                 host.c_str(), web->port(), loads::runner::LocalRunSource::kId);
    sink.results = [&](const loads::common::RunInfo& info, const loads::common::RunStats& so_far,
                       const loads::common::Series& closed,
                       uint64_t active_users) { live->Update(info, so_far, closed, active_users); };
  }

  if (options.detach) {
    auto run_id = remote->Start(options.spec);
    if (!run_id.ok()) return Fail(ExitCodeFor(run_id.status()), run_id.status().message());
    std::printf("%s\n", run_id->c_str());
    std::fprintf(stderr, "loads-runner: run %s started; attach with --attach %s\n", run_id->c_str(),
                 run_id->c_str());
    return kExitOk;
  }
  StatusOr<RunOutcome> outcome =
      !options.attach.empty() ? remote->Watch(options.attach, g_stop, sink)
      : remote                ? remote->Run(options.spec, g_stop, sink)
                              : MakeLocalBackend(test, {.stuck_limit = options.stuck_limit,
                                                        .stop_timeout = options.stop_timeout,
                                                        .kill_now = &g_kill_engine,
                                                        .allow_targets = AllowList(options)})
                     ->Run(options.spec, g_stop, sink);
  if (!outcome.ok()) {
    if (!options.quiet) display.Finish();
    return Fail(ExitCodeFor(outcome.status()), outcome.status().message());
  }
  if (outcome->end == RunEnd::kNotLoaded) {
    if (!options.quiet) display.Finish();
    return Fail(LoadErrorCode(outcome->load_error), outcome->error);
  }
  const int code = Report(*outcome, options, &display, live.get());
  if (web) web->Stop();  // after the final report went to the page's viewers
  // Told after the report is out and the exit status decided: a notification that fails or
  // hangs changes neither (a controller's runs are told by the controller).
  if (!remote && options.spec.notify_size() > 0) Notify(*outcome, options, code);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  // gRPC's own log lines (a failed TLS handshake...) would repeat, less clearly, what the
  // runner says about the call that failed.
  gpr_set_log_function([](gpr_log_func_args*) {});
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    return Fail(kExitInternal, std::string("internal error: ") + e.what());
  }
}
