// The Kubernetes launcher: worker pods created, watched and deleted through the API server's REST
// API (kube_api.h).

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "loads/common/run_spec.h"
#include "loads/common/thread_annotations.h"
#include "loads/common/url.h"
#include "loads/controller/kube_api.h"
#include "loads/controller/launcher.h"

namespace loads::controller {
namespace {

using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// Container states that will not get better by waiting: the run they were started for fails.
const std::set<std::string> kHopelessReasons = {
    "ErrImagePull",      "ImagePullBackOff",           "InvalidImageName",
    "ErrImageNeverPull", "CreateContainerConfigError", "CreateContainerError",
    "CrashLoopBackOff",  "RunContainerError"};

// A launch gives up (and deletes what it created) after this: StartRun's caller waits for it,
// and loads-runner gives a StartRun 30 s.
constexpr auto kLaunchDeadline = std::chrono::seconds(25);
// Pods listed per request; the rest come with the list's continue token.
constexpr int kPageSize = 500;
// The API server ends a watch after timeoutSeconds; the launcher asks for a little less than
// the silence after which it gives up on one itself.
constexpr int kWatchSeconds = 290;
constexpr auto kWatchIdle = std::chrono::seconds(330);
// The volumes and mounts the launcher adds to every pod: a pod template must not use them.
const std::set<std::string> kReservedVolumes = {"tmp", "tokens"};
// The worker flags the launcher passes itself (PodManifest).
const std::set<std::string> kLauncherFlags = {"--controller",
                                              "--id",
                                              "--work-dir",
                                              "--threads",
                                              "--token-file",
                                              "--curve-server-key",
                                              "--curve-server-key-file"};

// FNV-1a: a stable short hash for names and label values (run ids can be any 200 characters;
// Kubernetes names cannot).
std::string Hash12(const std::string& text) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return std::string(out, 12);
}

bool Created(const KubeResponse& r) {
  // 409 AlreadyExists for a name only this process makes: an earlier attempt of the same
  // request created it (its answer was lost to a timeout or a 5xx).
  return r.status == 200 || r.status == 201 || r.status == 202 ||
         (r.status == 409 && StatusReason(r.body) == "AlreadyExists");
}

bool Deleted(const KubeResponse& r) {
  return r.status == 200 || r.status == 202 || r.status == 404;
}

// Runs job(i) for i in [0, n) on up to `threads` threads; each job runs once.
void ForEachParallel(size_t n, int threads, const std::function<void(size_t)>& job) {
  std::atomic<size_t> next{0};
  const auto work = [&] {
    for (size_t i; (i = next++) < n;) job(i);
  };
  std::vector<std::thread> pool;
  const size_t extra = std::min(n, static_cast<size_t>(std::max(threads, 1))) - (n ? 1 : 0);
  for (size_t t = 0; t < extra; ++t) pool.emplace_back(work);
  work();
  for (auto& thread : pool) thread.join();
}

// Checks a --worker-pod-template: a Pod (or a part of one) whose labels, annotations and spec
// the launched pods start from. Returns why it cannot be used, or "".
std::string CheckPodTemplate(const Json& pod) {
  if (!pod.is_object()) return "not a JSON object";
  for (const auto& [key, value] : pod.items()) {
    if (key == "apiVersion" && value != "v1") return "apiVersion: must be v1";
    if (key == "kind" && value != "Pod") return "kind: must be Pod";
    if (key != "apiVersion" && key != "kind" && key != "metadata" && key != "spec") {
      return key + ": not a field of a pod template (apiVersion, kind, metadata, spec)";
    }
  }
  if (pod.contains("metadata")) {
    const Json& metadata = pod["metadata"];
    if (!metadata.is_object()) return "metadata: not an object";
    for (const auto& [key, value] : metadata.items()) {
      if (key != "labels" && key != "annotations") {
        return "metadata." + key +
               ": the launcher sets it (a template may give labels and "
               "annotations)";
      }
      if (!value.is_object()) return "metadata." + key + ": not an object";
      for (const auto& [name, text] : value.items()) {
        if (!text.is_string()) return "metadata." + key + "." + name + ": not a string";
      }
    }
  }
  if (!pod.contains("spec")) return "";
  const Json& spec = pod["spec"];
  if (!spec.is_object()) return "spec: not an object";
  for (const char* owned : {"restartPolicy", "nodeName"}) {
    if (spec.contains(owned)) return std::string("spec.") + owned + ": the launcher sets it";
  }
  for (const char* key : {"containers", "initContainers", "volumes", "imagePullSecrets"}) {
    if (spec.contains(key) && !spec[key].is_array())
      return std::string("spec.") + key + ": not an array";
  }
  int workers = 0;
  for (const char* key : {"containers", "initContainers"}) {
    if (!spec.contains(key)) continue;
    for (const auto& container : spec[key]) {
      if (!container.is_object() || !container.contains("name") || !container["name"].is_string()) {
        return std::string("spec.") + key + ": every container needs a name";
      }
      if (container["name"] != "worker" || std::string(key) != "containers") continue;
      ++workers;
      for (const char* owned : {"image", "command"}) {
        if (container.contains(owned)) {
          return std::string("spec.containers[worker].") + owned + ": the launcher sets it";
        }
      }
      if (!container.contains("args")) continue;
      // Its args follow the launcher's own (--metrics, say): flags the launcher passes would
      // be given twice.
      if (!container["args"].is_array()) return "spec.containers[worker].args: not an array";
      for (const auto& arg : container["args"]) {
        if (!arg.is_string()) return "spec.containers[worker].args: not all strings";
        const std::string flag = arg.get<std::string>().substr(0, arg.get<std::string>().find('='));
        if (kLauncherFlags.count(flag)) {
          return "spec.containers[worker].args: " + flag + " is the launcher's";
        }
      }
    }
  }
  if (workers > 1) return "spec.containers: more than one container named worker";
  if (spec.contains("volumes")) {
    for (const auto& volume : spec["volumes"]) {
      if (volume.is_object() && volume.contains("name") && volume["name"].is_string() &&
          kReservedVolumes.count(volume["name"].get<std::string>())) {
        return "spec.volumes: the volume name " + volume["name"].get<std::string>() +
               " is the launcher's";
      }
    }
  }
  return "";
}

class KubernetesLauncher : public Launcher {
 public:
  KubernetesLauncher(KubernetesOptions options, std::unique_ptr<KubeApi> api)
      : o_(std::move(options)), api_(std::move(api)) {
    // Pod names carry this process's nonce: a pod of an earlier attempt still terminating
    // never collides with a new one, and 409 AlreadyExists on a create can only be our own.
    std::random_device random;
    char nonce[9];
    std::snprintf(nonce, sizeof nonce, "%08x", random());
    nonce_.assign(nonce, 6);
  }

  ~KubernetesLauncher() override {
    {
      MutexLock lock(wake_mu_);
      stop_ = true;
    }
    wake_.notify_all();
    if (watcher_.joinable()) watcher_.join();
    // The controller is going: its pods go with it, within Kubernetes' usual 30 s of grace
    // (owner references would also do it, but only when the controller's pod is deleted).
    std::vector<std::string> names;
    {
      MutexLock lock(mu_);
      for (const auto& [name, pod] : pods_) names.push_back(name);
    }
    if (!api_) return;  // Init failed before it could launch or adopt any
    const auto deadline = SteadyClock::now() + std::chrono::seconds(20);
    std::atomic<int> left{0};
    ForEachParallel(names.size(), o_.api_parallelism, [&](size_t i) {
      if (!Deleted(CallWithRetry("DELETE", PodsPath() + "/" + names[i], "", deadline))) ++left;
    });
    if (left) {
      Log("shutdown: left " + std::to_string(left.load()) +
          " worker pod(s) to their owner reference");
    }
  }

  std::string Init() LOADS_EXCLUDES(mu_, cache_mu_) {
    if (o_.image.empty()) return "--worker-image is required with --launcher kubernetes";
    if (!spec::IsResourceQuantity(o_.cpu)) return "invalid --worker-cpu '" + o_.cpu + "'";
    if (!spec::IsResourceQuantity(o_.memory)) return "invalid --worker-memory '" + o_.memory + "'";
    if (!o_.pod_template.empty()) {
      template_ = Json::parse(o_.pod_template, nullptr, false);
      if (template_.is_discarded()) return "--worker-pod-template: not JSON";
      if (std::string why = CheckPodTemplate(template_); !why.empty()) {
        return "--worker-pod-template: " + why;
      }
    }
    auto connection =
        ResolveKubeConnection(o_.api_server, o_.service_account_dir, o_.namespace_name);
    if (!connection.ok()) return connection.status().message();
    o_.api_server = connection->server;
    o_.namespace_name = connection->namespace_name;
    const std::string own_namespace = connection->own_namespace;
    // An owner must live in its dependents' namespace: elsewhere the garbage collector would
    // take it for gone and delete every pod at once.
    owned_ = !o_.owner_name.empty() && !o_.owner_uid.empty() && o_.namespace_name == own_namespace;
    if (!api_) api_ = MakeKubeApi(*connection);
    AdoptLeftovers();
    watcher_ = std::thread([this] { WatchLoop(); });
    return "";
  }

  std::string WorkerPrefix(const std::string& run_id) const override {
    return "loads-w-" + Hash12(o_.instance + "/" + run_id) + "-";
  }

  std::chrono::seconds RegistrationTimeout() const override {
    // Pending pods fail the run at pending_timeout; this bounds pods that run but never join
    // (a wrong --advertise address, a wrong token).
    return o_.pending_timeout + std::chrono::seconds(60);
  }

  std::string Launch(const LaunchRequest& request) override LOADS_EXCLUDES(mu_, cache_mu_) {
    const std::string cpu = request.cpu.empty() ? o_.cpu : request.cpu;
    const std::string memory = request.memory.empty() ? o_.memory : request.memory;
    if (!spec::IsResourceQuantity(cpu)) return "invalid cpu request '" + cpu + "'";
    if (!spec::IsResourceQuantity(memory)) return "invalid memory request '" + memory + "'";
    std::vector<std::string> names;
    {
      MutexLock lock(mu_);
      if (static_cast<int>(pods_.size()) + request.workers > o_.max_workers) {
        return "the Kubernetes launcher may run " + std::to_string(o_.max_workers) +
               " worker pods at once (" + std::to_string(pods_.size()) + " running)";
      }
      for (int i = 0; i < request.workers; ++i) {
        const std::string name =
            WorkerPrefix(request.run_id) + nonce_ + "-" + std::to_string(++count_);
        // Tracked before the call: a timeout or a 5xx may still have created it.
        pods_[name] = Pod{request.run_id, SteadyClock::now()};
        names.push_back(name);
      }
    }
    // In parallel, each create retried (throttling, conflicts, 5xx, a lost answer) until the
    // launch's deadline; the first that fails for good stops the others.
    const auto deadline = SteadyClock::now() + kLaunchDeadline;
    std::atomic<bool> failed{false};
    std::mutex error_mu;
    std::string error;
    ForEachParallel(names.size(), o_.api_parallelism, [&](size_t i) {
      if (failed) return;
      const Json pod = PodManifest(names[i], request, cpu, memory);
      const KubeResponse r = CallWithRetry("POST", PodsPath(), pod.dump(), deadline, &failed);
      if (Created(r)) {
        Json object = Json::parse(r.body, nullptr, false);
        if (!object.is_object() || r.status == 409) object = pod;
        Remember(names[i], std::move(object));
        return;
      }
      std::lock_guard lock(error_mu);
      if (!failed.exchange(true)) {
        error = "kubernetes: cannot create pod " + names[i] + ": " + Explain(r);
      }
    });
    if (!failed) return "";
    // Undo the whole launch; a pod whose deletion fails stays tracked, and the next Supervise
    // (its run is unknown) retries.
    const auto undo_deadline = SteadyClock::now() + std::chrono::seconds(10);
    std::vector<char> gone(names.size(), 0);
    ForEachParallel(names.size(), o_.api_parallelism, [&](size_t i) {
      gone[i] = Deleted(CallWithRetry("DELETE", PodsPath() + "/" + names[i], "", undo_deadline));
    });
    MutexLock lock(mu_);
    for (size_t i = 0; i < names.size(); ++i) {
      if (gone[i]) pods_.erase(names[i]);
    }
    return error;
  }

  std::vector<LaunchFailure> Supervise(const std::vector<RunSummary>& runs,
                                       const std::function<bool(const std::string&)>& retire)
      override LOADS_EXCLUDES(mu_, cache_mu_) {
    std::map<std::string, const RunSummary*> by_id;
    bool any_waiting = false;
    for (const auto& run : runs) {
      by_id[run.run_id] = &run;
      any_waiting = any_waiting || run.waiting;
    }
    std::map<std::string, Pod> pods;
    {
      MutexLock lock(mu_);
      pods = pods_;
    }
    // Release the pods of runs that are over (or were never registered). Not while a run waits
    // for workers: it counted the idle ones when it launched its own, and may take them. A pod
    // is retired from the broker's pool first, so that no run can be given it as it goes.
    if (!any_waiting) {
      std::vector<std::string> over;
      for (const auto& [name, pod] : pods) {
        auto run = by_id.find(pod.run_id);
        if ((run == by_id.end() || IsOver(run->second->state)) && retire(name)) {
          over.push_back(name);
        }
      }
      // One attempt each: the next round tries again.
      std::vector<char> gone(over.size(), 0);
      ForEachParallel(over.size(), o_.api_parallelism, [&](size_t i) {
        const KubeResponse r = api_->Call("DELETE", PodsPath() + "/" + over[i], "");
        gone[i] = Deleted(r);
        if (!gone[i]) Log("cannot delete pod " + over[i] + ": " + Explain(r));
      });
      MutexLock lock(mu_);
      for (size_t i = 0; i < over.size(); ++i) {
        if (gone[i]) {
          pods_.erase(over[i]);
          pods.erase(over[i]);
        }
      }
    }
    std::erase_if(reported_, [&](const std::string& id) {
      auto run = by_id.find(id);
      return run == by_id.end() || IsOver(run->second->state);
    });
    // Only pods of runs still waiting for them can fail a run; once a run has started, a pod
    // that dies is a lost worker and the run's loss policy decides. Their state is the watch's.
    std::vector<LaunchFailure> failures;
    MutexLock lock(cache_mu_);
    for (const auto& [name, pod] : pods) {
      auto run = by_id.find(pod.run_id);
      if (run == by_id.end() || !run->second->waiting || reported_.count(pod.run_id)) continue;
      std::string why;
      auto it = cache_.find(name);
      if (it == cache_.end()) {
        why = "was deleted before it could start";
      } else {
        try {
          why = Diagnose(it->second.object, SteadyClock::now() - pod.created);
        } catch (const Json::exception& e) {
          Log("unreadable status of pod " + name + ": " + e.what());
        }
      }
      if (!why.empty()) {
        reported_.insert(pod.run_id);
        failures.push_back({pod.run_id, "worker pod " + name + " " + why});
      }
    }
    return failures;
  }

 private:
  struct Pod {
    std::string run_id;
    SteadyClock::time_point created;
  };
  // A pod as the API server last described it.
  struct Seen {
    Json object;
    SteadyClock::time_point at;
  };

  std::string PodsPath() const { return "/api/v1/namespaces/" + o_.namespace_name + "/pods"; }

  std::string Selector() const {
    return "app.kubernetes.io/managed-by=loads-controller,app.kubernetes.io/instance=" +
           o_.instance;
  }

  // Waits up to `delay`; false when the launcher is stopping.
  bool Pause(std::chrono::milliseconds delay) LOADS_EXCLUDES(wake_mu_) {
    MutexLock lock(wake_mu_);
    return !wake_.wait_for(lock.native(), delay, [this] { return stop_.load(); });
  }

  // CallWithRetry on this launcher's API, saying in the log when it gave up.
  KubeResponse CallWithRetry(const std::string& method, const std::string& path,
                             const std::string& body, SteadyClock::time_point deadline,
                             const std::atomic<bool>* cancel = nullptr)
      LOADS_EXCLUDES(mu_, cache_mu_) {
    int gave_up_after = 0;
    KubeResponse r =
        controller::CallWithRetry(*api_, method, path, body, deadline, cancel, &gave_up_after);
    if (gave_up_after) {
      Log(method + " " + path + ": gave up after " + std::to_string(gave_up_after) +
          " attempt(s): " + Explain(r));
    }
    return r;
  }

  // Why a pod will not become a worker, or "" while it may still.
  std::string Diagnose(const Json& pod, SteadyClock::duration age) const {
    const Json status = pod.value("status", Json::object());
    const std::string phase = status.value("phase", "");
    for (const char* key : {"initContainerStatuses", "containerStatuses"}) {
      if (!status.contains(key) || !status[key].is_array()) continue;
      for (const auto& container : status[key]) {
        const Json state = container.value("state", Json::object());
        if (state.contains("waiting") && state["waiting"].is_object()) {
          const std::string reason = state["waiting"].value("reason", "");
          if (kHopelessReasons.count(reason)) {
            const std::string message = state["waiting"].value("message", "");
            return "cannot start: " + reason + (message.empty() ? "" : " (" + message + ")");
          }
        }
        if (phase == "Failed" && state.contains("terminated") && state["terminated"].is_object()) {
          const Json& t = state["terminated"];
          return "exited: " + t.value("reason", std::string("Error")) + ", exit code " +
                 std::to_string(t.value("exitCode", -1));
        }
      }
    }
    if (phase == "Failed") {
      return "failed: " + status.value("reason", std::string("unknown reason")) +
             (status.value("message", "").empty() ? "" : " (" + status.value("message", "") + ")");
    }
    if (phase == "Succeeded") return "exited before its run started";
    if ((phase == "Pending" || phase.empty()) && age > o_.pending_timeout) {
      std::string detail;
      if (status.contains("conditions") && status["conditions"].is_array()) {
        for (const auto& c : status["conditions"]) {
          if (c.value("status", "") == "False" && !c.value("message", "").empty()) {
            detail = " (" + c.value("message", "") + ")";
            break;
          }
        }
      }
      return "still pending after " + std::to_string(o_.pending_timeout.count()) + " s" + detail;
    }
    return "";
  }

  // The pod: the template's (--worker-pod-template) labels, annotations and spec, with what the
  // launcher owns set over them: names, labels that find the pod, the worker container's image,
  // args and resources, the restart policy, the scratch and token volumes.
  Json PodManifest(const std::string& name, const LaunchRequest& request, const std::string& cpu,
                   const std::string& memory) const {
    Json metadata = {{"name", name},
                     {"namespace", o_.namespace_name},
                     {"labels", Json::object()},
                     {"annotations", Json::object()}};
    Json spec = {{"automountServiceAccountToken", false},
                 {"enableServiceLinks", false},
                 {"securityContext",
                  {{"runAsNonRoot", true},
                   {"runAsUser", 10001},
                   {"runAsGroup", 10001},
                   {"fsGroup", 10001},
                   {"seccompProfile", {{"type", "RuntimeDefault"}}}}}};
    if (template_.is_object()) {
      if (template_.contains("metadata")) {
        for (const char* key : {"labels", "annotations"}) {
          if (template_["metadata"].contains(key)) metadata[key] = template_["metadata"][key];
        }
      }
      if (template_.contains("spec")) {
        for (const auto& [key, value] : template_["spec"].items()) spec[key] = value;
      }
    }
    const Json labels = {{"app.kubernetes.io/name", "loads"},
                         {"app.kubernetes.io/instance", o_.instance},
                         {"app.kubernetes.io/component", "worker"},
                         {"app.kubernetes.io/managed-by", "loads-controller"},
                         {"loads/run-hash", Hash12(request.run_id)}};
    metadata["labels"].update(labels);
    metadata["annotations"]["loads/run-id"] = request.run_id;
    if (owned_) {
      metadata["ownerReferences"] = Json::array({{{"apiVersion", "v1"},
                                                  {"kind", "Pod"},
                                                  {"name", o_.owner_name},
                                                  {"uid", o_.owner_uid},
                                                  {"controller", false},
                                                  {"blockOwnerDeletion", false}}});
    }
    // The capacity the worker announces (ListWorkers, --ping): the CPUs it requested, not the
    // node's. The engine threads of a run are the run's own (RunSpec.threads).
    Json args = {"--controller", request.endpoint, "--id",      name,
                 "--work-dir",   "/tmp/loads",     "--threads", std::to_string(ThreadsForCpu(cpu))};
    for (const auto& arg : o_.worker_args) args.push_back(arg);
    Json mounts = Json::array({{{"name", "tmp"}, {"mountPath", "/tmp"}}});
    Json volumes = spec.value("volumes", Json::array());
    volumes.push_back({{"name", "tmp"}, {"emptyDir", Json::object()}});
    if (!o_.token_secret.empty()) {
      args.push_back("--token-file");
      args.push_back("/var/run/loads/worker-token");
      mounts.push_back({{"name", "tokens"}, {"mountPath", "/var/run/loads"}, {"readOnly", true}});
      volumes.push_back(
          {{"name", "tokens"},
           {"secret",
            {{"secretName", o_.token_secret},
             {"items", Json::array({{{"key", "worker-token"}, {"path", "worker-token"}}})}}}});
    }
    // The worker container: the template's container named "worker", if any, is its base.
    Json containers = spec.value("containers", Json::array());
    auto worker = std::find_if(containers.begin(), containers.end(),
                               [](const Json& c) { return c.value("name", "") == "worker"; });
    if (worker == containers.end()) {
      containers.insert(containers.begin(), Json{{"name", "worker"}});
      worker = containers.begin();
    }
    Json& container = *worker;
    container["image"] = o_.image;
    if (!container.contains("imagePullPolicy")) container["imagePullPolicy"] = o_.image_pull_policy;
    // The template's args (the chart's --metrics, say) after the launcher's own.
    for (const auto& arg : container.value("args", Json::array())) args.push_back(arg);
    container["args"] = args;
    Json resources = container.value("resources", Json::object());
    resources["requests"]["cpu"] = cpu;
    resources["requests"]["memory"] = memory;
    resources["limits"]["memory"] = memory;
    container["resources"] = resources;
    if (!container.contains("securityContext")) {
      container["securityContext"] = {{"allowPrivilegeEscalation", false},
                                      {"readOnlyRootFilesystem", true},
                                      {"capabilities", {{"drop", Json::array({"ALL"})}}}};
    }
    Json all_mounts = container.value("volumeMounts", Json::array());
    for (auto& mount : mounts) all_mounts.push_back(std::move(mount));
    container["volumeMounts"] = all_mounts;
    Json pull_secrets = spec.value("imagePullSecrets", Json::array());
    for (const auto& secret : o_.image_pull_secrets) pull_secrets.push_back({{"name", secret}});
    spec["restartPolicy"] = "Never";
    spec["containers"] = containers;
    spec["volumes"] = volumes;
    spec["imagePullSecrets"] = pull_secrets;
    return {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", metadata}, {"spec", spec}};
  }

  // Every pod of this release (launched by any controller process), page by page. False (after
  // logging why) when the API did not give the whole list.
  bool ListAll(std::map<std::string, Json>* items, std::string* resource_version)
      LOADS_EXCLUDES(mu_, cache_mu_) {
    const auto deadline = SteadyClock::now() + std::chrono::seconds(30);
    std::string next;
    do {
      std::string path = PodsPath() + "?limit=" + std::to_string(kPageSize) +
                         "&labelSelector=" + common::UrlEncode(Selector());
      if (!next.empty()) path += "&continue=" + common::UrlEncode(next);
      const KubeResponse r = CallWithRetry("GET", path, "", deadline);
      Json list = Json::parse(r.body, nullptr, false);
      if (r.status != 200 || !list.is_object() || !list.contains("items") ||
          !list["items"].is_array()) {
        Log("cannot list worker pods: " + Explain(r));
        return false;
      }
      for (auto& item : list["items"]) {
        if (item.is_object() && item.contains("metadata") && item["metadata"].is_object() &&
            item["metadata"].contains("name") && item["metadata"]["name"].is_string()) {
          const std::string name = item["metadata"]["name"];
          (*items)[name] = std::move(item);
        }
      }
      const Json meta = list.value("metadata", Json::object());
      next = meta.is_object() ? meta.value("continue", "") : "";
      if (meta.is_object()) *resource_version = meta.value("resourceVersion", "");
    } while (!next.empty());
    return true;
  }

  // Pods of this release left by an earlier controller process (a restarted container keeps
  // its pod, so their owner reference does not remove them). Those of a run are taken over: if
  // the run is still running (the controller kept it in its state folder), its workers come back
  // to it; otherwise the first Supervise deletes them, as the pods of any run that is over.
  // Pods without a run are deleted at once. The list is the watch's starting point.
  void AdoptLeftovers() LOADS_EXCLUDES(mu_, cache_mu_) {
    std::map<std::string, Json> items;
    std::string version;
    if (!ListAll(&items, &version)) return;
    int adopted = 0, deleted = 0;
    const auto deadline = SteadyClock::now() + std::chrono::seconds(20);
    for (const auto& [name, item] : items) {
      const Json& metadata = item["metadata"];
      const Json run_id = metadata.contains("annotations") && metadata["annotations"].is_object()
                              ? metadata["annotations"].value("loads/run-id", Json())
                              : Json();
      if (run_id.is_string()) {
        MutexLock lock(mu_);
        pods_[name] = Pod{run_id.get<std::string>(), SteadyClock::now()};
        ++adopted;
      } else if (Deleted(CallWithRetry("DELETE", PodsPath() + "/" + name, "", deadline))) {
        ++deleted;
      }
    }
    {
      MutexLock lock(cache_mu_);
      for (auto& [name, item] : items) cache_[name] = Seen{std::move(item), SteadyClock::now()};
      version_ = version;
    }
    if (adopted || deleted) {
      std::fprintf(stderr,
                   "loads-controller: found %d worker pod(s) of an earlier controller: kept until "
                   "their runs are over; deleted %d without a run\n",
                   adopted, deleted);
    }
  }

  void Remember(const std::string& name, Json object) LOADS_EXCLUDES(cache_mu_) {
    MutexLock lock(cache_mu_);
    cache_.try_emplace(name, Seen{std::move(object), SteadyClock::now()});
  }

  // Keeps cache_ equal to the API server's pods of this release: a list, then a watch from the
  // list's resourceVersion, continued from the last version seen (bookmarks included) when the
  // server ends it, and a new list when that version has expired (410 Gone).
  void WatchLoop() LOADS_EXCLUDES(mu_, cache_mu_) {
    std::string version;
    {
      MutexLock lock(cache_mu_);
      version = version_;
    }
    int failures = 0;
    while (!stop_) {
      if (version.empty()) {
        const auto started = SteadyClock::now();
        std::map<std::string, Json> items;
        if (!ListAll(&items, &version)) {
          version.clear();
          if (!Pause(std::chrono::milliseconds(500 << std::min(failures++, 5)))) return;
          continue;
        }
        MutexLock lock(cache_mu_);
        // Pods created while the list was under way are not in it: they stay.
        std::erase_if(cache_, [&](const auto& entry) {
          return !items.count(entry.first) && entry.second.at < started;
        });
        for (auto& [name, item] : items) cache_[name] = Seen{std::move(item), started};
      }
      bool expired = false;
      int events = 0;
      const std::string path = PodsPath() + "?watch=true&allowWatchBookmarks=true" +
                               "&timeoutSeconds=" + std::to_string(kWatchSeconds) +
                               "&resourceVersion=" + common::UrlEncode(version) +
                               "&labelSelector=" + common::UrlEncode(Selector());
      const KubeResponse r = api_->Stream(
          path,
          [&](std::string_view line) {
            ++events;
            return Apply(Json::parse(line, nullptr, false), &version, &expired);
          },
          &stop_, kWatchIdle);
      if (stop_) return;
      if (expired || r.status == 410) {
        version.clear();
        continue;
      }
      if (r.status != 200) {
        Log("watching worker pods: " + Explain(r));
        if (r.status != 0 && r.status != 429 && r.status < 500) version.clear();
        if (!Pause(std::chrono::milliseconds(500 << std::min(failures++, 5)))) return;
        continue;
      }
      // Ended by the server or cut on the way (a proxy's idle timeout): resumed from the last
      // version seen. One ended at once, again and again, must not spin.
      if (!r.error.empty()) Log("watch of worker pods cut (resumed): " + r.error);
      failures = 0;
      if (events == 0 && !Pause(std::chrono::milliseconds(200))) return;
    }
  }

  // One watch event; false ends the watch (its version expired, or it is not understood).
  bool Apply(const Json& event, std::string* version, bool* expired) LOADS_EXCLUDES(cache_mu_) {
    if (!event.is_object() || !event.contains("type") || !event["type"].is_string() ||
        !event.contains("object") || !event["object"].is_object()) {
      Log("unreadable watch event: a new list follows");
      *expired = true;
      return false;
    }
    const std::string type = event["type"];
    const Json& object = event["object"];
    if (type == "ERROR") {
      // 410 Gone: the version is too old to watch from; anything else: start over as well.
      if (object.value("code", 0) != 410) Log("watch error: " + object.value("message", type));
      *expired = true;
      return false;
    }
    const Json metadata = object.value("metadata", Json::object());
    if (!metadata.is_object()) return true;
    if (metadata.contains("resourceVersion") && metadata["resourceVersion"].is_string()) {
      *version = metadata["resourceVersion"];
    }
    if (type == "BOOKMARK" || !metadata.contains("name") || !metadata["name"].is_string()) {
      return true;
    }
    const std::string name = metadata["name"];
    MutexLock lock(cache_mu_);
    if (type == "DELETED") {
      cache_.erase(name);
    } else {
      cache_[name] = Seen{object, SteadyClock::now()};
    }
    return true;
  }

  void Log(const std::string& message) LOADS_EXCLUDES(log_mu_) {
    MutexLock lock(log_mu_);
    if (message == last_log_) return;
    last_log_ = message;
    std::fprintf(stderr, "loads-controller: kubernetes launcher: %s\n", message.c_str());
  }

  KubernetesOptions o_;
  std::unique_ptr<KubeApi> api_;
  Json template_;  // the parsed --worker-pod-template (null without one)
  std::string nonce_;
  bool owned_ = false;  // whether pods get the controller's pod as owner

  // Lock order: mu_, then cache_mu_, then log_mu_ (Log may be called under the others);
  // wake_mu_ is never held with another. None is held during an API call.
  Mutex mu_;
  std::map<std::string, Pod> pods_ LOADS_GUARDED_BY(mu_);  // launched and not yet deleted, by name
  uint64_t count_ LOADS_GUARDED_BY(mu_) = 0;
  std::set<std::string> reported_;  // runs whose failure was reported (Supervise's alone)

  Mutex cache_mu_ LOADS_ACQUIRED_AFTER(mu_);
  std::map<std::string, Seen> cache_ LOADS_GUARDED_BY(cache_mu_);  // the release's pods (watch)
  std::string version_ LOADS_GUARDED_BY(cache_mu_);  // the first list's resourceVersion

  Mutex log_mu_ LOADS_ACQUIRED_AFTER(mu_, cache_mu_);
  std::string last_log_ LOADS_GUARDED_BY(log_mu_);

  Mutex wake_mu_;
  std::condition_variable wake_;  // with wake_mu_: stop_ was set
  std::atomic<bool> stop_{false};
  std::thread watcher_;
};

}  // namespace

int ThreadsForCpu(const std::string& cpu) {
  const double cpus = spec::ResourceQuantityValue(cpu);
  return static_cast<int>(std::clamp(std::ceil(cpus - 1e-9), 1.0, 1024.0));
}

StatusOr<LauncherPtr> MakeKubernetesLauncher(KubernetesOptions options,
                                             std::unique_ptr<KubeApi> api) {
  auto launcher = std::make_unique<KubernetesLauncher>(std::move(options), std::move(api));
  if (std::string why = launcher->Init(); !why.empty()) return InvalidArgumentError(why);
  return LauncherPtr(std::move(launcher));
}

}  // namespace loads::controller
