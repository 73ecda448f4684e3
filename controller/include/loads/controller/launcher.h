#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "loads/controller/broker.h"
#include "loads/controller/kube_api.h"

namespace loads::controller {

// What a run asks of a launcher.
struct LaunchRequest {
  std::string run_id;
  int workers = 0;       // how many more workers to start
  std::string endpoint;  // the ZeroMQ endpoint they connect to
  std::string cpu;       // resource requests of the run ("" = the launcher's default)
  std::string memory;
};

// A run whose launched workers cannot start (a pod that cannot pull its image, that crashed,
// that stayed pending too long).
struct LaunchFailure {
  std::string run_id;
  std::string message;
};

// Starts workers when a run asks for more than are connected: the local implementation spawns
// loads-worker processes on this machine, the Kubernetes one creates pods. The service calls
// Launch from StartRun and Supervise about once a second.
//
// Thread safety: every method may be called from any thread.
class Launcher {
 public:
  virtual ~Launcher() = default;
  // Starts request.workers more workers. Returns why it could not, or "".
  virtual std::string Launch(const LaunchRequest& request) = 0;
  // The id prefix of the workers launched for run_id, so that the broker gives them to it; ""
  // when launched workers are not meant for one run in particular.
  virtual std::string WorkerPrefix(const std::string& run_id) const = 0;
  // How long a run may wait for the workers launched for it to register.
  virtual std::chrono::seconds RegistrationTimeout() const = 0;
  // Given every run the broker knows: returns the failures of workers launched for runs that
  // still wait for them (each reported once), and releases launched workers no run needs any
  // more, each after retire(worker id) has taken it out of the broker's pool (retire returns
  // false for a worker in a run). Not called while a StartRun is in progress.
  virtual std::vector<LaunchFailure> Supervise(
      const std::vector<RunSummary>& runs,
      const std::function<bool(const std::string& worker_id)>& retire) = 0;
};
using LauncherPtr = std::unique_ptr<Launcher>;

// Spawns up to `max_workers` loads-worker processes in all (from `worker_binary`), passing the
// token file if any; they are killed when the launcher is destroyed.
// extra_args: given to every worker started (CURVE keys).
LauncherPtr MakeLocalLauncher(std::string worker_binary, int max_workers, std::string token_file,
                              std::vector<std::string> extra_args = {});

// The Kubernetes launcher's configuration (docs/kubernetes.md). The defaults suit a controller
// running in a pod with its service account mounted.
struct KubernetesOptions {
  // "https://HOST:PORT"; "" = from KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT.
  std::string api_server;
  // token, ca.crt and namespace, as Kubernetes mounts them.
  std::string service_account_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
  std::string namespace_name;  // "" = the service account's namespace
  std::string image;           // the worker image (required)
  std::string cpu = "500m";    // default resource requests of a worker pod
  std::string memory = "256Mi";
  std::string token_secret;  // a Secret whose key worker-token is mounted in worker pods
  std::vector<std::string> image_pull_secrets;  // for a private worker image
  std::string image_pull_policy = "IfNotPresent";
  std::chrono::seconds pending_timeout{120};
  int max_workers = 100;              // launched pods alive at once
  std::string instance = "loads";     // the app.kubernetes.io/instance label (the release)
  std::string owner_name, owner_uid;  // the controller's pod, owner of the worker pods
  // Requests to the API server at once when pods are created or deleted in bulk.
  int api_parallelism = 8;
  // A pod (JSON text) whose labels, annotations and spec every worker pod starts from:
  // placement (nodeSelector, affinity, tolerations, topology spread, priority class), security
  // contexts, extra containers and volumes. "" = none. See --worker-pod-template.
  std::string pod_template;
  // Given to every worker pod after the launcher's own arguments (CURVE: the controller's
  // public key).
  std::vector<std::string> worker_args;
};

// Creates worker pods through the Kubernetes API (HTTPS, verified with the service account's
// CA, authenticated with its token, re-read at each request since tokens rotate). Pods are named
// and labelled by run, owned by the controller's pod (so they go when it goes), created in
// parallel with retries, followed with a watch, and deleted when their run is over.
// INVALID_ARGUMENT saying why if the configuration is unusable. api: the API to use instead of
// the real one (tests).
StatusOr<LauncherPtr> MakeKubernetesLauncher(KubernetesOptions options,
                                             std::unique_ptr<KubeApi> api = nullptr);

// The engine threads of a worker given a CPU request: the CPUs it asks for, rounded up, at
// least 1 ("500m" -> 1, "2" -> 2, "2500m" -> 3). REQUIRES: spec::IsResourceQuantity(cpu).
int ThreadsForCpu(const std::string& cpu);

}  // namespace loads::controller
