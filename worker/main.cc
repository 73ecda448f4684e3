// loads-worker: joins a controller over ZeroMQ and runs the load tests it is assigned.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "loads/version.h"
#include "worker/src/zmq_worker.h"

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

int Usage(FILE* out, int code) {
  std::fputs(
      "usage: loads-worker [--controller ENDPOINT] [--id ID] [--threads N]\n"
      "                    [--token-file FILE] [--controller-timeout SECONDS] [--work-dir DIR]\n"
      "                    [--metrics HOST:PORT]\n"
      "\n"
      "Joins a controller (default tcp://127.0.0.1:5555) and runs the tests it assigns.\n",
      out);
  return code;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "loads-worker: %s (see loads-worker --help)\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  loads::worker::WorkerOptions options;
  char host[256] = "worker";
  gethostname(host, sizeof host - 1);
  options.id = std::string(host) + "-" + std::to_string(getpid());
  options.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  options.work_dir = "/tmp/loads-worker-" + std::to_string(getpid());
  const std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") return Usage(stdout, 0);
    if (arg == "--version") {
      std::printf("loads-worker %s\n", LOADS_SDK_VERSION);
      return 0;
    }
    if (i + 1 >= args.size()) {
      return arg.starts_with("--") ? Fail("option " + arg + " needs a value")
                                   : Fail("unexpected argument '" + arg + "'");
    }
    const std::string& value = args[++i];
    if (arg == "--controller") {
      if (!value.starts_with("tcp://") && !value.starts_with("ipc://")) {
        return Fail("invalid value for --controller: '" + value +
                    "' (expected tcp://HOST:PORT or ipc://PATH)");
      }
      options.controller = value;
    } else if (arg == "--id") {
      if (value.empty() || value.size() > 200) return Fail("invalid value for --id");
      options.id = value;
    } else if (arg == "--threads") {
      int n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size() || n < 1 || n > 1024) {
        return Fail("invalid value for --threads: '" + value + "' (expected 1..1024)");
      }
      options.threads = n;
    } else if (arg == "--token-file") {
      std::ifstream file(value);
      if (!file || !std::getline(file, options.token)) {
        return Fail("cannot read the token from " + value);
      }
    } else if (arg == "--controller-timeout") {
      double seconds = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
      if (ec != std::errc() || end != value.data() + value.size() || seconds < 0.1 ||
          seconds > 3600) {
        return Fail("invalid value for --controller-timeout: '" + value +
                    "' (expected 0.1..3600 seconds)");
      }
      options.controller_timeout = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    } else if (arg == "--metrics") {
      if (value.find(':') == std::string::npos) {
        return Fail("invalid value for --metrics: '" + value + "' (expected HOST:PORT)");
      }
      options.metrics = value;
    } else if (arg == "--work-dir") {
      options.work_dir = value;
    } else {
      return Fail("unknown option '" + arg + "'");
    }
  }
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  // A parent may have left these blocked (a process inherits its signal mask).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigprocmask(SIG_UNBLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  try {
    loads::worker::ZmqWorker worker(options);
    return worker.Run(g_stop);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loads-worker: internal error: %s\n", e.what());
    return 70;
  }
}
