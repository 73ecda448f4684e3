// loads-controller: the gRPC API for runs, the ZeroMQ endpoint for workers, a launcher that
// starts workers (local processes, or pods in Kubernetes) when a run needs more than are
// connected, and the state folder that keeps runs across restarts.

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "loads/common/curve.h"
#include "loads/common/live_page.h"
#include "loads/controller/broker.h"
#include "loads/controller/launcher.h"
#include "loads/controller/live_runs.h"
#include "loads/controller/metrics.h"
#include "loads/controller/notifier.h"
#include "loads/controller/options.h"
#include "loads/controller/service.h"
#include "loads/controller/state_store.h"
#include "loads/version.h"

namespace {

using namespace loads::controller;
using loads::Status;
using loads::StatusOr;

// Exit statuses: 0 after a signal, 1 when a service cannot start, 2 for a bad command line.
// Plain text, or TLS from files that are watched (rotated certificates are served without a
// restart, as cert-manager rotates them), with client certificates required under --client-ca.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const ControllerOptions& options) {
  if (options.tls_cert.empty()) return grpc::InsecureServerCredentials();
  constexpr unsigned kRefreshSeconds = 1;
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      options.tls_key, options.tls_cert, options.client_ca, kRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions tls(provider);
  tls.watch_identity_key_cert_pairs();
  if (options.client_ca.empty()) {
    tls.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    tls.watch_root_certs();
    tls.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(tls);
}

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "loads-controller: %s%s\n", message.c_str(),
               code == 2 ? " (see loads-controller --help)" : "");
  return code;
}

// The one mapping of a Status to the exit statuses: a bad command line or configuration is 2,
// anything else that keeps a service from starting is 1.
int Fail(const Status& status) {
  return Fail(status.code() == loads::StatusCode::kInvalidArgument ? 2 : 1, status.message());
}

std::string SelfDir() {
  char path[PATH_MAX] = {0};
  const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  std::string self = n > 0 ? std::string(path, n) : "";
  return self.substr(0, self.rfind('/'));
}

// --curve-public-key-secret: before anything listens, since standing workers wait for this key
// to start. The Secret is the release's, in the controller's own namespace (--namespace is where
// pods go).
Status PublishCurveKey(const ControllerOptions& options) {
  if (options.curve_public_key_secret.empty()) return loads::OkStatus();
  auto connection =
      ResolveKubeConnection(options.kubernetes.api_server, options.kubernetes.service_account_dir,
                            options.kubernetes.namespace_name);
  if (!connection.ok()) {
    return loads::InvalidArgumentError("--curve-public-key-secret: " +
                                       connection.status().message());
  }
  auto api = MakeKubeApi(*connection);
  return SetSecretKey(*api, connection->own_namespace, options.curve_public_key_secret,
                      "public-key", options.broker.curve_public_key + "\n",
                      std::chrono::seconds(60));
}

// The launcher of --launcher, or null when workers are only those that connect. May allow the
// CURVE key of the workers it starts (options->broker.curve_allowed).
StatusOr<LauncherPtr> MakeLauncher(ControllerOptions* options) {
  if (options->launcher == "kubernetes") {
    if (!options->broker.curve_public_key.empty()) {
      // Public: an argument is as good as a mounted file, and needs nothing to exist first.
      options->kubernetes.worker_args = {"--curve-server-key", options->broker.curve_public_key};
    }
    const char* pod = std::getenv("LOADS_POD_NAME");
    const char* uid = std::getenv("LOADS_POD_UID");
    options->kubernetes.owner_name = pod ? pod : "";
    options->kubernetes.owner_uid = uid ? uid : "";
    return MakeKubernetesLauncher(options->kubernetes);
  }
  if (options->max_local_workers <= 0) return LauncherPtr();
  std::vector<std::string> curve_args;
  if (!options->broker.curve_secret_key.empty()) {
    // Workers this controller starts get a key pair of their own, allowed for this run of the
    // controller only, in a file only this user can read.
    auto keys = loads::common::GenerateCurveKeys();
    if (!keys.ok()) return keys.status();
    char dir[] = "/tmp/loads-controller-XXXXXX";
    if (mkdtemp(dir) == nullptr) {
      return loads::InternalError("cannot make a folder for the workers' key");
    }
    const std::string path = std::string(dir) + "/local-workers.key";
    if (Status written = loads::common::WriteCurveKeyFile(path, *keys); !written.ok()) {
      return written;
    }
    options->broker.curve_allowed.insert(keys->public_key);
    curve_args = {"--curve-server-key", options->broker.curve_public_key, "--curve-key-file", path};
  }
  return MakeLocalLauncher(options->worker_bin, options->max_local_workers, options->token_file,
                           curve_args);
}

// The gRPC API on --grpc (its bound port in *port), healthy once it serves.
StatusOr<std::unique_ptr<grpc::Server>> StartApi(const ControllerOptions& options,
                                                 ControllerService* service, int* port) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.grpc, ServerCredentials(options), port);
  // Room for a test library as large as the wire protocol carries; above it, gRPC answers
  // RESOURCE_EXHAUSTED (and loads-runner refuses before sending).
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || *port == 0) return loads::UnavailableError("cannot listen on " + options.grpc);
  // Probes may ask for the service by name as well as for the server ("").
  server->GetHealthCheckService()->SetServingStatus("loads.v1.Controller", true);
  return server;
}

// --health: the health service alone, in plain text, for probes that cannot speak TLS (the
// kubelet's gRPC probe). Nothing else is served there.
StatusOr<std::unique_ptr<grpc::Server>> StartHealth(const std::string& address, int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), port);
  std::unique_ptr<grpc::Server> health = builder.BuildAndStart();
  if (!health || *port == 0) return loads::UnavailableError("cannot listen on " + address);
  health->GetHealthCheckService()->SetServingStatus("loads.v1.Controller", true);
  return health;
}

std::string Host(const std::string& address) { return address.substr(0, address.rfind(':')); }

int Serve(ControllerOptions options) {
  // Signals are taken by a thread of their own, which shuts the server down.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (Status published = PublishCurveKey(options); !published.ok()) return Fail(published);
  auto launcher = MakeLauncher(&options);
  if (!launcher.ok()) return Fail(launcher.status());
  std::unique_ptr<StateStore> store;
  if (!options.state_dir.empty()) {
    auto opened = OpenSqliteStore(options.state_dir);
    if (!opened.ok()) return Fail(1, opened.status().message());
    store = std::move(*opened);
  }
  std::unique_ptr<Metrics> metrics;
  try {
    metrics = std::make_unique<Metrics>(options.metrics, options.metrics_retention,
                                        options.metrics_token);
  } catch (const std::exception& e) {
    return Fail(1, "cannot serve metrics on " + options.metrics + ": " + e.what());
  }
  Broker broker(options.broker, std::move(store));
  broker.SetMetrics(metrics.get());
  broker.SetReportFormatter(ControllerService::FinalReport);
  broker.SetAbortJudges(ControllerService::MakeAbortJudge);
  if (Status started = broker.Start(); !started.ok()) return Fail(1, started.message());

  ControllerService service(&broker, launcher->get(), options.api_token, options.advertise);
  service.SetMailServer(!options.notify_settings.smtp.empty());
  service.SetReadToken(options.read_token);
  if (!options.allow_targets.empty()) {
    auto list = loads::common::TargetAllowList::Parse(options.allow_targets);
    if (!list.ok()) return Fail(2, list.status().message());
    service.SetAllowTargets(
        std::make_shared<const loads::common::TargetAllowList>(std::move(*list)));
  }
  // Each run's end, told to its --notify targets and the controller's.
  RunNotifier notifier(&broker, options.notify, options.notify_settings);
  notifier.Start();
  int port = 0;
  auto server = StartApi(options, &service, &port);
  if (!server.ok()) return Fail(1, server.status().message());
  std::unique_ptr<grpc::Server> health;
  int health_port = 0;
  if (!options.health.empty()) {
    auto started = StartHealth(options.health, &health_port);
    if (!started.ok()) return Fail(1, started.status().message());
    health = std::move(*started);
  }
  // The live page: the same runs, their reports and StopRun, behind the API token.
  BrokerRunSource runs(&broker);
  std::unique_ptr<loads::common::LivePageServer> web;
  std::string more;  // the listening line's optional parts
  if (!options.web.empty()) {
    web = std::make_unique<loads::common::LivePageServer>(
        &runs, loads::common::LivePageServer::Options{.address = options.web,
                                                      .token = options.api_token,
                                                      .read_token = options.read_token,
                                                      .max_streams = 16});
    if (Status started = web->Start(); !started.ok()) return Fail(1, started.message());
    more = " web http://" + Host(options.web) + ":" + std::to_string(web->port()) + "/";
  }
  if (health) more += " health " + Host(options.health) + ":" + std::to_string(health_port);
  if (!options.tls_cert.empty()) more += options.client_ca.empty() ? " tls" : " mtls";
  std::printf(
      "loads-controller listening: grpc %s:%d zmq %s publish %s metrics http://%s:%d/metrics%s\n",
      Host(options.grpc).c_str(), port, broker.endpoint().c_str(),
      broker.publish_endpoint().c_str(), Host(options.metrics).c_str(), metrics->port(),
      more.c_str());
  std::fflush(stdout);
  grpc::Server& api = **server;
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    api.GetHealthCheckService()->Shutdown();
    // Watchers get UNAVAILABLE and come back to the next controller.
    service.Shutdown();
    api.Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    if (health) health->Shutdown();
  });
  api.Wait();
  waiter.join();
  if (web) web->Stop();  // its event streams end before the broker goes
  notifier.Stop();
  return 0;
}

}  // namespace

// loads-controller keygen [FILE]: a new CurveZMQ key pair, to FILE (mode 0600, never over an
// existing file; its public key on stdout) or to stdout.
int Keygen(const std::vector<std::string>& args) {
  if (args.size() > 1) return Fail(2, "usage: loads-controller keygen [FILE]");
  auto keys = loads::common::GenerateCurveKeys();
  if (!keys.ok()) return Fail(1, keys.status().message());
  if (args.empty()) {
    std::fputs(loads::common::FormatCurveKeyFile(*keys).c_str(), stdout);
    return 0;
  }
  if (Status written = loads::common::WriteCurveKeyFile(args[0], *keys); !written.ok()) {
    return Fail(1, written.message());
  }
  std::printf("public: %s\n", keys->public_key.c_str());
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "keygen") {
    return Keygen(std::vector<std::string>(argv + 2, argv + argc));
  }
  try {
    auto options =
        ParseControllerOptions(std::vector<std::string>(argv + 1, argv + argc), SelfDir());
    if (!options.ok()) return Fail(2, options.status().message());
    if (options->help) {
      std::fputs(ControllerUsage(), stdout);
      return 0;
    }
    if (options->version) {
      std::printf("loads-controller %s\n", LOADS_SDK_VERSION);
      return 0;
    }
    if (Status ok = CheckOptions(*options); !ok.ok()) return Fail(2, ok.message());
    return Serve(std::move(*options));
  } catch (const std::exception& e) {
    return Fail(70, std::string("internal error: ") + e.what());
  }
}
