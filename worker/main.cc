// loads-worker: joins a controller over ZeroMQ and runs the load tests it is assigned.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "loads/common/curve.h"
#include "loads/common/url.h"
#include "loads/version.h"
#include "worker/src/zmq_worker.h"

namespace {

// SIGTERM/SIGINT: the first asks for a graceful shutdown, a second to leave at once.
std::atomic<int> g_signals{0};
void OnSignal(int) { g_signals.fetch_add(1); }

int Usage(FILE* out, int code) {
  std::fputs(
      "usage: loads-worker [options]\n"
      "\n"
      "Joins a controller and runs the tests it assigns.\n"
      "\n"
      "  --controller ENDPOINT   the controller's worker endpoint (default tcp://127.0.0.1:5555)\n"
      "  --id ID                 this worker's name (default HOST-PID)\n"
      "  --threads N             its capacity in engine threads (default: the CPUs)\n"
      "  --token-file FILE       the token the controller asks of workers (its first line)\n"
      "  --metrics-token-file F  /metrics answers only \"Authorization: Bearer TOKEN\" with the\n"
      "                          first line of F (needed for --metrics beyond loopback)\n"
      "  --insecure              allow --metrics beyond loopback without a token\n"
      "  --curve-server-key KEY  speak CurveZMQ to a controller with this public key (Z85)\n"
      "  --curve-server-key-file FILE  the same, read from FILE (the key alone, or a\n"
      "                          \"public: KEY\" line; as Kubernetes mounts it from a Secret)\n"
      "  --curve-key-file FILE   this worker's CURVE key pair (loads-controller keygen FILE);\n"
      "                          default: one made at start\n"
      "  --work-dir DIR          where shipped test libraries are written\n"
      "  --metrics HOST:PORT     serve Prometheus /metrics there (port 0 = any)\n"
      "  --controller-timeout S  silence after which the controller is taken for gone: the run\n"
      "                          goes on and the worker says hello again (default 10)\n"
      "  --orphan-timeout S      gone this long, a run is stopped; its results still wait for a\n"
      "                          controller (default 300)\n"
      "  --load-timeout S        a test library that takes longer to load fails its run and the\n"
      "                          worker exits (default 30)\n"
      "  --shutdown-timeout S    after SIGTERM, how long it may take to stop its run and see its\n"
      "                          results acknowledged (default 20)\n"
      "\n"
      "SIGTERM or SIGINT: stop the run, send its final results, leave (exit 0); a second one\n"
      "leaves at once (130). Exit 3: the controller refused this worker (token, SDK version).\n",
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
  bool insecure = false;
  const std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") return Usage(stdout, 0);
    if (arg == "--version") {
      std::printf("loads-worker %s\n", LOADS_SDK_VERSION);
      return 0;
    }
    if (arg == "--insecure") {
      insecure = true;
      continue;
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
      bool printable = !value.empty() && value.size() <= 200;
      for (unsigned char c : value) printable = printable && c > 0x20 && c != 0x7f && c != '/';
      if (!printable) {
        return Fail("invalid value for --id: '" + value +
                    "' (expected 1 to 200 printable characters, no spaces or /)");
      }
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
    } else if (arg == "--curve-server-key") {
      if (!loads::common::IsCurveKey(value)) {
        return Fail(
            "invalid value for --curve-server-key: expected the controller's Z85 public "
            "key of 40 characters");
      }
      options.curve_server_key = value;
    } else if (arg == "--curve-server-key-file") {
      auto key = loads::common::ReadCurvePublicKeyFile(value);
      if (!key.ok()) return Fail("--curve-server-key-file: " + key.status().message());
      options.curve_server_key = *key;
      options.curve_server_key_file = value;
    } else if (arg == "--curve-key-file") {
      auto keys = loads::common::ReadCurveKeyFile(value);
      if (!keys.ok()) return Fail(keys.status().message());
      options.curve_public_key = keys->public_key;
      options.curve_secret_key = keys->secret_key;
    } else if (arg == "--controller-timeout" || arg == "--orphan-timeout" ||
               arg == "--load-timeout" || arg == "--shutdown-timeout") {
      double seconds = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
      if (ec != std::errc() || end != value.data() + value.size() || seconds < 0.1 ||
          seconds > 86400) {
        return Fail("invalid value for " + arg + ": '" + value + "' (expected 0.1..86400 seconds)");
      }
      const auto ms = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
      (arg == "--controller-timeout" ? options.controller_timeout
       : arg == "--orphan-timeout"   ? options.orphan_timeout
       : arg == "--load-timeout"     ? options.load_timeout
                                     : options.shutdown_timeout) = ms;
    } else if (arg == "--metrics") {
      if (value.find(':') == std::string::npos) {
        return Fail("invalid value for --metrics: '" + value + "' (expected HOST:PORT)");
      }
      options.metrics = value;
    } else if (arg == "--metrics-token-file") {
      std::ifstream file(value);
      if (!file || !std::getline(file, options.metrics_token) || options.metrics_token.empty()) {
        return Fail("cannot read the metrics token from " + value);
      }
    } else if (arg == "--work-dir") {
      options.work_dir = value;
    } else {
      return Fail("unknown option '" + arg + "'");
    }
  }
  if (!options.metrics.empty() && !insecure && options.metrics_token.empty() &&
      !loads::common::IsLoopbackHost(options.metrics.substr(0, options.metrics.rfind(':')))) {
    return Fail("refusing to serve /metrics on " + options.metrics +
                " without --metrics-token-file (or --insecure)");
  }
  if (!options.curve_secret_key.empty() && options.curve_server_key.empty()) {
    return Fail("--curve-key-file needs --curve-server-key (the controller's public key)");
  }
  struct sigaction action {};
  action.sa_handler = OnSignal;
  // No SA_RESTART: a blocking call returns EINTR, and the loop looks at the signal at once.
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
  int code = 70;
  try {
    loads::worker::ZmqWorker worker(options);
    code = worker.Run(g_signals);
    // Out without running destructors: a test library stuck in its initializers holds the
    // loader's lock, which exit() would wait for, and a second signal leaves users running.
    std::fflush(nullptr);
    std::_Exit(code);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loads-worker: internal error: %s\n", e.what());
  }
  return code;
}
