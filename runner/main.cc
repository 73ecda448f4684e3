// loads-runner: runs a load test on this machine and prints the report.

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "loads/common/report.h"
#include "loads/worker/engine.h"
#include "loads/worker/scenario.h"
#include "loads/worker/test_loader.h"
#include "runner/exit_codes.h"
#include "runner/options.h"
#include "runner/progress.h"
#include "runner/remote.h"

namespace {

using namespace loads::runner;  // the exit codes

std::atomic<bool> g_stop{false};

// First Ctrl-C: stop the run and still print the report. Second: leave at once.
void OnSignal(int) {
  if (g_stop.exchange(true)) _exit(kExitInterrupted);
}

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "loads-runner: %s\n", message.c_str());
  return code;
}

// Many virtual users need many sockets: raise the soft limit on open files to the hard one.
void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
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

int Main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  const auto parsed = loads::runner::ParseOptions(args);
  if (!parsed.ok) {
    std::fprintf(stderr, "loads-runner: %s (see loads-runner --help)\n", parsed.error.c_str());
    return kExitUsage;
  }
  const auto& options = parsed.options;
  if (options.help) {
    std::fputs(loads::runner::Usage().c_str(), stdout);
    return kExitOk;
  }
  if (options.version) {
    std::printf("loads-runner %s (test ABI %d)\n", LOADS_SDK_VERSION, LOADS_ABI_VERSION);
    return kExitOk;
  }

  loads::worker::TestSpec test;
  std::string library_path;
  if (!options.test_runner.empty()) {
    test = loads::worker::MakeExternalTest(options.test_runner);
  } else if (options.test.empty() && options.url.empty()) {
    // A cluster operation (--attach, --stop, --list-runs, --ping): no test to find.
  } else if (options.test.ends_with(".json")) {
    // A declarative scenario (docs/scenarios.md).
    std::ifstream file(options.test);
    if (!file) return Fail(kExitNotFound, "cannot read the scenario " + options.test);
    const std::string text((std::istreambuf_iterator<char>(file)),
                           std::istreambuf_iterator<char>());
    std::string error;
    auto scenario = loads::worker::ParseScenario(text, &error);
    if (!scenario) return Fail(kExitUsage, options.test + ": " + error);
    test = loads::worker::MakeScenarioTest(std::move(*scenario));
  } else if (!options.url.empty()) {
    test = loads::worker::MakeUrlTest(options.url);
  } else {
    // With a controller, the library is only found here and shipped; workers load it.
    auto loaded =
        options.controller.empty()
            ? loads::worker::LoadTest(options.test, SearchPath(options.test_paths))
            : loads::worker::FindTestLibrary(options.test, SearchPath(options.test_paths));
    switch (loaded.error) {
      case loads::worker::LoadError::kNone:
        break;
      case loads::worker::LoadError::kInvalidName:
        return Fail(kExitUsage, loaded.message);
      case loads::worker::LoadError::kNotFound:
        return Fail(kExitNotFound, loaded.message);
      case loads::worker::LoadError::kLoadFailed:
      case loads::worker::LoadError::kIncompatible:
        return Fail(kExitLoadFailed, loaded.message);
      case loads::worker::LoadError::kNoSuchTest:
        return Fail(kExitNoSuchTest, loaded.message);
    }
    test = loaded.test;
    library_path = loaded.library_path;
  }

  // A run whose report cannot be written should not start. The check appends nothing and
  // truncates nothing: an interrupted run leaves a previous report as it was.
  for (const auto& path : options.json_outputs) {
    std::ofstream probe(path, std::ios::app);
    if (!probe) return Fail(kExitUsage, "cannot write the report to " + path);
  }

  loads::worker::EngineOptions engine_options;
  engine_options.users = options.users;
  engine_options.hits = options.hits;
  engine_options.duration = options.duration;
  const int64_t max_users = *std::max_element(options.users.begin(), options.users.end());
  const int cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  engine_options.threads =
      options.threads.value_or(static_cast<int>(std::min<int64_t>(cpus, max_users)));
  engine_options.server_url = options.server_url;
  engine_options.connect_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(options.connect_timeout * 1000));
  engine_options.timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout * 1000));
  engine_options.verify_tls = !options.insecure;

  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const bool terminal = isatty(STDOUT_FILENO);
  loads::runner::ProgressDisplay display(stdout, terminal);
  const auto interval = std::chrono::milliseconds(terminal ? 100 : 1000);
  if (!options.controller.empty()) {
    return loads::runner::RunRemote(options, library_path, &display, interval, g_stop);
  }
  RaiseFileLimit();
  loads::worker::Engine engine(engine_options);
  // The report is the sum of one-second intervals, as a worker's will be; the last interval's
  // rate is shown with the progress.
  engine.OnInterval(
      [&](const loads::worker::Interval& i) {
        const double seconds = std::chrono::duration<double>(i.end - i.start).count();
        if (seconds > 0) display.SetRate(static_cast<double>(i.stats.hits) / seconds);
      },
      std::chrono::seconds(1));
  auto result = engine.Run(
      test, g_stop,
      [&](const loads::worker::Progress& p) {
        if (!options.quiet) display.Update(p);
      },
      interval);

  if (!options.quiet) {
    display.Finish();
    std::fputs(loads::common::FormatTextReport(result.info, result.stats).c_str(), stdout);
    std::fflush(stdout);
  }
  const std::string json = loads::common::FormatJsonReport(result.info, result.stats);
  bool written = true;
  for (const auto& path : options.json_outputs) {
    std::ofstream file(path, std::ios::trunc);
    file << json;
    file.close();
    if (!file) {
      Fail(kExitReportNotWritten, "could not write the report to " + path);
      written = false;
    }
  }
  if (!written) return kExitReportNotWritten;
  if (result.info.interrupted) return kExitInterrupted;
  return (result.stats.failures + result.stats.errors) > 0 ? kExitTestProblems : kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    return Fail(kExitInternal, std::string("internal error: ") + e.what());
  }
}
