// loads-controller: the gRPC API for runs, the ZeroMQ endpoint for workers, and a launcher that
// starts workers (local processes, or pods in Kubernetes) when a run needs more than are
// connected.

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "loads/controller/broker.h"
#include "loads/controller/launcher.h"
#include "loads/controller/metrics.h"
#include "loads/controller/service.h"
#include "loads/version.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "loads-controller: %s (see loads-controller --help)\n", message.c_str());
  return 2;
}

constexpr char kUsage[] =
    "usage: loads-controller [--grpc ADDRESS] [--zmq ENDPOINT] [--publish ENDPOINT]\n"
    "                        [--token-file FILE]\n"
    "                        [--worker-timeout SECONDS] [--max-local-workers N]\n"
    "                        [--worker-bin PATH]\n"
    "\n"
    "  --grpc ADDRESS          gRPC API address (default 127.0.0.1:50051; port 0 = any)\n"
    "  --zmq ENDPOINT          where workers connect (default tcp://127.0.0.1:5555; port * = any)\n"
    "  --publish ENDPOINT      PUB socket republishing every snapshot, topic = run id\n"
    "                          (default tcp://127.0.0.1:5556; port * = any)\n"
    "  --token-file FILE       workers must send this token (first line of FILE)\n"
    "  --api-token-file FILE   gRPC clients must send \"authorization: Bearer TOKEN\"\n"
    "  --insecure              allow non-loopback addresses without tokens\n"
    "  --metrics ADDRESS       Prometheus /metrics (default 127.0.0.1:9464; port 0 = any)\n"
    "  --metrics-retention S   keep a finished run's series S seconds (default 300)\n"
    "  --worker-timeout S      a silent worker is lost after S seconds (default 3)\n"
    "  --advertise ENDPOINT    the ZeroMQ endpoint launched workers connect to (default: the\n"
    "                          bound --zmq endpoint)\n"
    "  --launcher KIND         how workers are started: local (default) or kubernetes\n"
    "\n"
    "local launcher:\n"
    "  --max-local-workers N   loads-worker processes the controller may start (default 16;\n"
    "                          0: never start any)\n"
    "  --worker-bin PATH       the loads-worker binary (default: next to loads-controller)\n"
    "\n"
    "kubernetes launcher (docs/kubernetes.md):\n"
    "  --worker-image IMAGE    the worker pods' image (required)\n"
    "  --worker-cpu Q          default CPU request of a worker pod (default 500m)\n"
    "  --worker-memory Q       default memory request and limit (default 256Mi)\n"
    "  --worker-token-secret S Secret whose key worker-token the pods mount as their token\n"
    "  --image-pull-secret S   a Secret the pods pull their image with (repeatable)\n"
    "  --image-pull-policy P   the pods' imagePullPolicy: IfNotPresent (default), Always, Never\n"
    "  --worker-pending-timeout S  a pod pending longer fails its run (default 120)\n"
    "  --max-launched-workers N    worker pods alive at once (default 100)\n"
    "  --instance NAME         app.kubernetes.io/instance label of the pods (default loads)\n"
    "  --namespace NS          default: the service account's namespace\n"
    "  --kubernetes-api URL    default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT\n"
    "  --service-account-dir D token, ca.crt and namespace (default\n"
    "                          /var/run/secrets/kubernetes.io/serviceaccount)\n"
    "  The pods are owned by the pod named by $LOADS_POD_NAME with uid $LOADS_POD_UID.\n";

std::string SelfDir() {
  char path[PATH_MAX] = {0};
  const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  std::string self = n > 0 ? std::string(path, n) : "";
  return self.substr(0, self.rfind('/'));
}

}  // namespace

int main(int argc, char** argv) {
  std::string grpc_address = "127.0.0.1:50051";
  loads::controller::BrokerOptions broker_options;
  broker_options.bind = "tcp://127.0.0.1:5555";
  broker_options.publish = "tcp://127.0.0.1:5556";
  std::string token_file;
  std::string api_token;
  std::string metrics_address = "127.0.0.1:9464";
  int64_t metrics_retention = 300;
  bool insecure = false;
  int max_local_workers = 16;
  std::string worker_bin = SelfDir() + "/loads-worker";
  std::string launcher_kind = "local";
  std::string advertise;
  loads::controller::KubernetesOptions kubernetes;
  if (const char* name = std::getenv("LOADS_POD_NAME")) kubernetes.owner_name = name;
  if (const char* uid = std::getenv("LOADS_POD_UID")) kubernetes.owner_uid = uid;
  // An integer option within [low, high]; false (after printing why) otherwise. unit, if any,
  // is named in the message ("seconds").
  auto parse_int = [](const std::string& option, const std::string& value, int64_t low,
                      int64_t high, int64_t* out, const std::string& unit = "") {
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), *out);
    if (ec != std::errc() || end != value.data() + value.size() || *out < low || *out > high) {
      Fail("invalid value for " + option + ": '" + value + "' (expected " +
           (unit.empty() ? "" : unit + ", ") + std::to_string(low) + ".." + std::to_string(high) +
           ")");
      return false;
    }
    return true;
  };
  const std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "--insecure") {
      insecure = true;
      continue;
    }
    if (arg == "--version") {
      std::printf("loads-controller %s\n", LOADS_SDK_VERSION);
      return 0;
    }
    if (i + 1 >= args.size()) {
      return arg.starts_with("--") ? Fail("option " + arg + " needs a value")
                                   : Fail("unexpected argument '" + arg + "'");
    }
    const std::string& value = args[++i];
    if (arg == "--grpc") {
      if (value.find(':') == std::string::npos) {
        return Fail("invalid value for --grpc: '" + value + "' (expected HOST:PORT)");
      }
      grpc_address = value;
    } else if (arg == "--zmq") {
      if (!value.starts_with("tcp://") && !value.starts_with("ipc://")) {
        return Fail("invalid value for --zmq: '" + value + "' (expected tcp://HOST:PORT)");
      }
      broker_options.bind = value;
    } else if (arg == "--publish") {
      if (!value.starts_with("tcp://") && !value.starts_with("ipc://")) {
        return Fail("invalid value for --publish: '" + value + "' (expected tcp://HOST:PORT)");
      }
      broker_options.publish = value;
    } else if (arg == "--metrics") {
      if (value.find(':') == std::string::npos) {
        return Fail("invalid value for --metrics: '" + value + "' (expected HOST:PORT)");
      }
      metrics_address = value;
    } else if (arg == "--metrics-retention") {
      if (!parse_int(arg, value, 0, 7 * 24 * 3600, &metrics_retention, "seconds")) return 2;
    } else if (arg == "--api-token-file") {
      std::ifstream file(value);
      if (!file || !std::getline(file, api_token) || api_token.empty()) {
        return Fail("cannot read a token from " + value);
      }
    } else if (arg == "--token-file") {
      std::ifstream file(value);
      if (!file || !std::getline(file, broker_options.token) || broker_options.token.empty()) {
        return Fail("cannot read a token from " + value);
      }
      token_file = value;
    } else if (arg == "--worker-timeout") {
      double seconds = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
      if (ec != std::errc() || end != value.data() + value.size() || seconds < 0.1 ||
          seconds > 3600) {
        return Fail("invalid value for --worker-timeout: '" + value + "' (expected 0.1..3600)");
      }
      broker_options.worker_timeout =
          std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
      broker_options.heartbeat =
          std::min(std::chrono::milliseconds(1000), broker_options.worker_timeout / 3);
    } else if (arg == "--max-local-workers") {
      int64_t n = 0;
      if (!parse_int(arg, value, 0, 1000, &n)) return 2;
      max_local_workers = static_cast<int>(n);
    } else if (arg == "--worker-bin") {
      worker_bin = value;
    } else if (arg == "--launcher") {
      if (value != "local" && value != "kubernetes") {
        return Fail("invalid value for --launcher: '" + value + "' (expected local or kubernetes)");
      }
      launcher_kind = value;
    } else if (arg == "--advertise") {
      if (!value.starts_with("tcp://") || value.rfind(':') < 6) {
        return Fail("invalid value for --advertise: '" + value + "' (expected tcp://HOST:PORT)");
      }
      advertise = value;
    } else if (arg == "--worker-image") {
      kubernetes.image = value;
    } else if (arg == "--worker-cpu" || arg == "--worker-memory") {
      if (!loads::controller::IsResourceQuantity(value)) {
        return Fail("invalid value for " + arg + ": '" + value +
                    "' (expected a Kubernetes quantity such as 500m, 2, 256Mi)");
      }
      (arg == "--worker-cpu" ? kubernetes.cpu : kubernetes.memory) = value;
    } else if (arg == "--worker-token-secret") {
      kubernetes.token_secret = value;
    } else if (arg == "--image-pull-secret") {
      kubernetes.image_pull_secrets.push_back(value);
    } else if (arg == "--image-pull-policy") {
      if (value != "IfNotPresent" && value != "Always" && value != "Never") {
        return Fail("invalid value for --image-pull-policy: '" + value +
                    "' (expected IfNotPresent, Always or Never)");
      }
      kubernetes.image_pull_policy = value;
    } else if (arg == "--worker-pending-timeout") {
      int64_t seconds = 0;
      if (!parse_int(arg, value, 1, 86400, &seconds, "seconds")) return 2;
      kubernetes.pending_timeout = std::chrono::seconds(seconds);
    } else if (arg == "--max-launched-workers") {
      int64_t n = 0;
      if (!parse_int(arg, value, 1, 10000, &n)) return 2;
      kubernetes.max_workers = static_cast<int>(n);
    } else if (arg == "--instance" || arg == "--namespace") {
      // A label value, and a DNS label: both at most 63 characters, alphanumeric at the ends.
      const bool name_chars =
          value.find_first_not_of(arg == "--instance" ? "abcdefghijklmnopqrstuvwxyz0123456789-._"
                                                        "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                      : "abcdefghijklmnopqrstuvwxyz0123456789-") ==
          std::string::npos;
      if (value.empty() || value.size() > 63 || !name_chars || !std::isalnum(value.front()) ||
          !std::isalnum(value.back())) {
        return Fail("invalid value for " + arg + ": '" + value + "' (expected a Kubernetes name)");
      }
      (arg == "--instance" ? kubernetes.instance : kubernetes.namespace_name) = value;
    } else if (arg == "--kubernetes-api") {
      kubernetes.api_server = value;
    } else if (arg == "--service-account-dir") {
      kubernetes.service_account_dir = value;
    } else {
      return Fail("unknown option '" + arg + "'");
    }
  }

  // Secure by default: the API and the worker endpoint may only be reachable beyond this machine
  // when a token decides who may submit runs and who may join as a worker.
  auto loopback = [](const std::string& host) {
    return host == "127.0.0.1" || host == "localhost" || host == "[::1]" || host == "::1" ||
           host.starts_with("127.");
  };
  const std::string grpc_host = grpc_address.substr(0, grpc_address.rfind(':'));
  const std::string zmq_host = broker_options.bind.substr(
      6, broker_options.bind.rfind(':') == std::string::npos ? std::string::npos
                                                             : broker_options.bind.rfind(':') - 6);
  if (!insecure && !loopback(grpc_host) && api_token.empty()) {
    return Fail("refusing to serve the API on " + grpc_address +
                " without --api-token-file (or --insecure)");
  }
  if (!insecure && broker_options.bind.starts_with("tcp://") && !loopback(zmq_host) &&
      broker_options.token.empty()) {
    return Fail("refusing to accept workers on " + broker_options.bind +
                " without --token-file (or --insecure)");
  }

  // Signals are taken by a thread of their own, which shuts the server down.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<loads::controller::Metrics> metrics;
  try {
    metrics = std::make_unique<loads::controller::Metrics>(metrics_address,
                                                           std::chrono::seconds(metrics_retention));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loads-controller: cannot serve metrics on %s: %s\n",
                 metrics_address.c_str(), e.what());
    return 1;
  }
  loads::controller::Broker broker(broker_options);
  broker.SetMetrics(metrics.get());
  if (auto error = broker.Start()) {
    std::fprintf(stderr, "loads-controller: %s\n", error->c_str());
    return 1;
  }
  loads::controller::LauncherPtr launcher;
  if (launcher_kind == "kubernetes") {
    if (advertise.empty()) {
      return Fail(
          "--launcher kubernetes needs --advertise (the address of this controller's "
          "Service, as worker pods reach it)");
    }
    if (!broker_options.token.empty() && kubernetes.token_secret.empty()) {
      return Fail(
          "with --token-file, --launcher kubernetes needs --worker-token-secret (the "
          "Secret whose worker-token the pods present), or every pod would be refused");
    }
    std::string error;
    launcher = loads::controller::MakeKubernetesLauncher(kubernetes, &error);
    if (!launcher) {
      std::fprintf(stderr, "loads-controller: %s\n", error.c_str());
      return 2;
    }
  } else if (max_local_workers > 0) {
    launcher = loads::controller::MakeLocalLauncher(worker_bin, max_local_workers, token_file);
  }
  loads::controller::ControllerService service(&broker, launcher.get(), api_token, advertise);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(grpc_address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "loads-controller: cannot listen on %s\n", grpc_address.c_str());
    return 1;
  }
  const std::string host = grpc_address.substr(0, grpc_address.rfind(':'));
  const std::string metrics_host = metrics_address.substr(0, metrics_address.rfind(':'));
  std::printf(
      "loads-controller listening: grpc %s:%d zmq %s publish %s metrics http://%s:%d/metrics\n",
      host.c_str(), port, broker.endpoint().c_str(), broker.publish_endpoint().c_str(),
      metrics_host.c_str(), metrics->port());
  std::fflush(stdout);
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  });
  server->Wait();
  waiter.join();
  return 0;
}
