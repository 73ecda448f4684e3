// The Kubernetes launcher: worker pods created through the API server's REST API with libcurl.

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include "loads/common/run_spec.h"
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

std::string ReadFirstLine(const std::string& path) {
  std::ifstream file(path);
  std::string line;
  std::getline(file, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

// Bodies beyond this are refused (curl then fails the call): a pod list of the launcher's own
// pods is far smaller, and a broken server must not fill the controller's memory.
constexpr size_t kMaxBody = 16 << 20;

size_t Collect(char* data, size_t size, size_t n, void* out) {
  auto* body = static_cast<std::string*>(out);
  if (body->size() + size * n > kMaxBody) return 0;
  body->append(data, size * n);
  return size * n;
}

struct Response {
  long status = 0;  // 0: no HTTP response (the message says why)
  std::string body;
  std::string error;  // transport error
};

// The API server's own explanation, from its Status object when it sent one.
std::string Explain(const Response& r) {
  if (r.status == 0) return r.error;
  const Json body = Json::parse(r.body, nullptr, false);
  std::string message = "HTTP " + std::to_string(r.status);
  if (body.is_object() && body.contains("message") && body["message"].is_string()) {
    message += ": " + body["message"].get<std::string>();
  }
  return message;
}

class KubernetesLauncher : public Launcher {
 public:
  explicit KubernetesLauncher(KubernetesOptions options) : o_(std::move(options)) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    curl_ = curl_easy_init();
    // Pod names carry this process's nonce: a pod of an earlier attempt still terminating
    // never collides with a new one.
    std::random_device random;
    char nonce[9];
    std::snprintf(nonce, sizeof nonce, "%08x", random());
    nonce_.assign(nonce, 6);
  }

  ~KubernetesLauncher() override {
    // The controller is going: its pods go with it, within Kubernetes' usual 30 s of grace
    // (owner references would also do it, but only when the controller's pod is deleted).
    std::lock_guard lock(mu_);
    const auto deadline = SteadyClock::now() + std::chrono::seconds(20);
    for (const auto& [name, pod] : pods_) {
      if (SteadyClock::now() > deadline) {
        LogOnce("shutdown: left worker pods to their owner reference");
        break;
      }
      Delete(name);
    }
    curl_easy_cleanup(curl_);
  }

  std::string Init() {
    if (!curl_) return "cannot initialise libcurl";
    if (o_.image.empty()) return "--worker-image is required with --launcher kubernetes";
    if (!spec::IsResourceQuantity(o_.cpu)) return "invalid --worker-cpu '" + o_.cpu + "'";
    if (!spec::IsResourceQuantity(o_.memory)) return "invalid --worker-memory '" + o_.memory + "'";
    if (o_.api_server.empty()) {
      const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
      const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
      if (!host || !port || !*host || !*port) {
        return "not in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set) and no "
               "--kubernetes-api given";
      }
      const std::string h = host;
      o_.api_server =
          "https://" + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + port;
    }
    if (!o_.api_server.starts_with("https://")) {
      return "the Kubernetes API must be reached over https, not " + o_.api_server;
    }
    while (o_.api_server.ends_with('/')) o_.api_server.pop_back();
    if (ReadFirstLine(o_.service_account_dir + "/token").empty()) {
      return "cannot read the service account token " + o_.service_account_dir + "/token";
    }
    if (!std::ifstream(o_.service_account_dir + "/ca.crt")) {
      return "cannot read the cluster CA " + o_.service_account_dir + "/ca.crt";
    }
    const std::string own_namespace = ReadFirstLine(o_.service_account_dir + "/namespace");
    if (o_.namespace_name.empty()) {
      o_.namespace_name = own_namespace;
      if (o_.namespace_name.empty()) {
        return "cannot read the namespace " + o_.service_account_dir + "/namespace";
      }
    }
    // An owner must live in its dependents' namespace: elsewhere the garbage collector would
    // take it for gone and delete every pod at once.
    owned_ = !o_.owner_name.empty() && !o_.owner_uid.empty() && o_.namespace_name == own_namespace;
    AdoptLeftovers();
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

  std::string Launch(const LaunchRequest& request) override {
    const std::string cpu = request.cpu.empty() ? o_.cpu : request.cpu;
    const std::string memory = request.memory.empty() ? o_.memory : request.memory;
    if (!spec::IsResourceQuantity(cpu)) return "invalid cpu request '" + cpu + "'";
    if (!spec::IsResourceQuantity(memory)) return "invalid memory request '" + memory + "'";
    std::lock_guard lock(mu_);
    if (static_cast<int>(pods_.size()) + request.workers > o_.max_workers) {
      return "the Kubernetes launcher may run " + std::to_string(o_.max_workers) +
             " worker pods at once (" + std::to_string(pods_.size()) + " running)";
    }
    std::vector<std::string> created;
    for (int i = 0; i < request.workers; ++i) {
      const std::string name =
          WorkerPrefix(request.run_id) + nonce_ + "-" + std::to_string(++count_);
      const Json pod = PodManifest(name, request, cpu, memory);
      // Tracked before the call: a timeout or a 5xx may still have created it.
      pods_[name] = Pod{request.run_id, SteadyClock::now()};
      created.push_back(name);
      const Response r = Call("POST", PodsPath(), pod.dump());
      if (r.status != 201 && r.status != 200 && r.status != 202) {
        // Undo the whole launch; a pod whose deletion fails stays tracked, and the next
        // Supervise (its run is unknown) retries.
        for (const auto& done : created) {
          if (Delete(done)) pods_.erase(done);
        }
        return "kubernetes: cannot create pod " + name + ": " + Explain(r);
      }
    }
    return "";
  }

  std::vector<LaunchFailure> Supervise(
      const std::vector<RunSummary>& runs,
      const std::function<bool(const std::string&)>& retire) override {
    std::lock_guard lock(mu_);
    std::map<std::string, const RunSummary*> by_id;
    bool any_waiting = false;
    for (const auto& run : runs) {
      by_id[run.run_id] = &run;
      any_waiting = any_waiting || run.waiting;
    }
    // Release the pods of runs that are over (or were never registered). Not while a run waits
    // for workers: it counted the idle ones when it launched its own, and may take them. A pod
    // is retired from the broker's pool first, so that no run can be given it as it goes.
    if (!any_waiting) {
      for (auto it = pods_.begin(); it != pods_.end();) {
        auto run = by_id.find(it->second.run_id);
        const bool run_over = run == by_id.end() || IsOver(run->second->state);
        if (run_over && retire(it->first) && Delete(it->first)) {
          it = pods_.erase(it);
        } else {
          ++it;
        }
      }
    }
    std::erase_if(reported_, [&](const std::string& id) {
      auto run = by_id.find(id);
      return run == by_id.end() || IsOver(run->second->state);
    });
    // Watch: only pods of runs still waiting for them can fail a run; once a run has started,
    // a pod that dies is a lost worker and the run's loss policy decides.
    std::set<std::string> waiting;
    for (const auto& [name, pod] : pods_) {
      auto run = by_id.find(pod.run_id);
      if (run != by_id.end() && run->second->waiting && !reported_.count(pod.run_id)) {
        waiting.insert(pod.run_id);
      }
    }
    std::vector<LaunchFailure> failures;
    if (waiting.empty()) return failures;
    const Json items = ListPods();
    if (items.is_null()) return failures;
    std::map<std::string, const Json*> seen;
    for (const auto& item : items) {
      if (item.is_object() && item.contains("metadata") && item["metadata"].contains("name") &&
          item["metadata"]["name"].is_string()) {
        seen[item["metadata"]["name"].get<std::string>()] = &item;
      }
    }
    for (const auto& [name, pod] : pods_) {
      if (!waiting.count(pod.run_id) || reported_.count(pod.run_id)) continue;
      std::string why;
      auto it = seen.find(name);
      if (it == seen.end()) {
        why = "was deleted before it could start";
      } else {
        try {
          why = Diagnose(*it->second, SteadyClock::now() - pod.created);
        } catch (const Json::exception& e) {
          LogOnce("unreadable status of pod " + name + ": " + e.what());
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

  std::string PodsPath() const { return "/api/v1/namespaces/" + o_.namespace_name + "/pods"; }

  std::string Selector() const {
    return "app.kubernetes.io/managed-by=loads-controller,app.kubernetes.io/instance=" +
           o_.instance;
  }

  std::string Escape(const std::string& text) const {
    char* escaped = curl_easy_escape(curl_, text.c_str(), static_cast<int>(text.size()));
    std::string out = escaped ? escaped : "";
    curl_free(escaped);
    return out;
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

  Json PodManifest(const std::string& name, const LaunchRequest& request, const std::string& cpu,
                   const std::string& memory) const {
    Json labels = {{"app.kubernetes.io/name", "loads"},
                   {"app.kubernetes.io/instance", o_.instance},
                   {"app.kubernetes.io/component", "worker"},
                   {"app.kubernetes.io/managed-by", "loads-controller"},
                   {"loads/run-hash", Hash12(request.run_id)}};
    Json metadata = {{"name", name},
                     {"namespace", o_.namespace_name},
                     {"labels", labels},
                     {"annotations", {{"loads/run-id", request.run_id}}}};
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
    Json mounts = Json::array({{{"name", "tmp"}, {"mountPath", "/tmp"}}});
    Json volumes = Json::array({{{"name", "tmp"}, {"emptyDir", Json::object()}}});
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
    Json container = {
        {"name", "worker"},
        {"image", o_.image},
        {"imagePullPolicy", o_.image_pull_policy},
        {"args", args},
        {"resources",
         {{"requests", {{"cpu", cpu}, {"memory", memory}}}, {"limits", {{"memory", memory}}}}},
        {"securityContext",
         {{"allowPrivilegeEscalation", false},
          {"readOnlyRootFilesystem", true},
          {"capabilities", {{"drop", Json::array({"ALL"})}}}}},
        {"volumeMounts", mounts}};
    Json pull_secrets = Json::array();
    for (const auto& secret : o_.image_pull_secrets) pull_secrets.push_back({{"name", secret}});
    return {{"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata", metadata},
            {"spec",
             {{"restartPolicy", "Never"},
              {"imagePullSecrets", pull_secrets},
              {"automountServiceAccountToken", false},
              {"enableServiceLinks", false},
              {"securityContext",
               {{"runAsNonRoot", true},
                {"runAsUser", 10001},
                {"runAsGroup", 10001},
                {"fsGroup", 10001},
                {"seccompProfile", {{"type", "RuntimeDefault"}}}}},
              {"containers", Json::array({container})},
              {"volumes", volumes}}}};
  }

  // The pods of this release (launched by any controller process), as the items of a PodList;
  // null (after logging why) when the API does not answer with one. REQUIRES: mu_ held.
  Json ListPods() {
    const Response r =
        Call("GET", PodsPath() + "?labelSelector=" + Escape(Selector()), std::string());
    Json list = Json::parse(r.body, nullptr, false);
    if (r.status != 200 || !list.is_object() || !list.contains("items") ||
        !list["items"].is_array()) {
      LogOnce("cannot list worker pods: " + Explain(r));
      return nullptr;
    }
    return std::move(list["items"]);
  }

  // Pods of this release left by an earlier controller process (a restarted container keeps
  // its pod, so their owner reference does not remove them). Those of a run are taken over: if
  // the run is still running (the controller kept it in its state folder), its workers come back
  // to it; otherwise the first Supervise deletes them, as the pods of any run that is over.
  // Pods without a run are deleted at once.
  void AdoptLeftovers() {
    std::lock_guard lock(mu_);
    const Json items = ListPods();
    int adopted = 0, deleted = 0;
    for (const auto& item : items) {
      if (!item.is_object() || !item.contains("metadata") || !item["metadata"].is_object())
        continue;
      const Json& metadata = item["metadata"];
      const Json& name = metadata.value("name", Json());
      if (!name.is_string()) continue;
      const Json run_id = metadata.contains("annotations") && metadata["annotations"].is_object()
                              ? metadata["annotations"].value("loads/run-id", Json())
                              : Json();
      if (run_id.is_string()) {
        pods_[name.get<std::string>()] = Pod{run_id.get<std::string>(), SteadyClock::now()};
        ++adopted;
      } else if (Delete(name.get<std::string>())) {
        ++deleted;
      }
    }
    if (adopted || deleted) {
      std::fprintf(stderr,
                   "loads-controller: found %d worker pod(s) of an earlier controller: kept until "
                   "their runs are over; deleted %d without a run\n",
                   adopted, deleted);
    }
  }

  // DELETE one pod; true when it is gone (or was already).
  bool Delete(const std::string& name) {
    const Response r = Call("DELETE", PodsPath() + "/" + name, std::string());
    if (r.status == 200 || r.status == 202 || r.status == 404) return true;
    LogOnce("cannot delete pod " + name + ": " + Explain(r));
    return false;
  }

  void LogOnce(const std::string& message) {
    if (message == last_log_) return;
    last_log_ = message;
    std::fprintf(stderr, "loads-controller: kubernetes launcher: %s\n", message.c_str());
  }

  // REQUIRES: mu_ held (one curl handle, reused for its connection).
  Response Call(const std::string& method, const std::string& path, const std::string& body) {
    Response r;
    const std::string token = ReadFirstLine(o_.service_account_dir + "/token");
    const std::string ca = o_.service_account_dir + "/ca.crt";
    curl_easy_reset(curl_);
    curl_easy_setopt(curl_, CURLOPT_URL, (o_.api_server + path).c_str());
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(curl_, CURLOPT_CAINFO, ca.c_str());
    // Only the cluster's CA: not also the system's (libcurl's default CA path), which would
    // let any public certificate for the API server's name pass.
    curl_easy_setopt(curl_, CURLOPT_CAPATH, nullptr);
    curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, Collect);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &r.body);
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
    headers = curl_slist_append(headers, "Accept: application/json");
    if (!body.empty()) {
      headers = curl_slist_append(headers, "Content-Type: application/json");
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
    const CURLcode code = curl_easy_perform(curl_);
    curl_slist_free_all(headers);
    if (code != CURLE_OK) {
      r.error =
          "cannot reach the Kubernetes API at " + o_.api_server + ": " + curl_easy_strerror(code);
      return r;
    }
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &r.status);
    return r;
  }

  KubernetesOptions o_;
  std::mutex mu_;
  CURL* curl_ = nullptr;
  std::map<std::string, Pod> pods_;  // launched and not yet deleted, by name
  std::string nonce_;
  uint64_t count_ = 0;
  bool owned_ = false;              // whether pods get the controller's pod as owner
  std::set<std::string> reported_;  // runs whose failure was reported
  std::string last_log_;
};

}  // namespace

int ThreadsForCpu(const std::string& cpu) {
  size_t digits = 0;
  while (digits < cpu.size() &&
         (std::isdigit(static_cast<unsigned char>(cpu[digits])) || cpu[digits] == '.')) {
    ++digits;
  }
  double cpus = std::strtod(cpu.substr(0, digits).c_str(), nullptr);
  const std::string suffix = cpu.substr(digits);
  if (suffix == "m") cpus /= 1000;
  // Other suffixes (k, M...) make no sense for CPUs; the API server would refuse the pod.
  return static_cast<int>(std::clamp(std::ceil(cpus - 1e-9), 1.0, 1024.0));
}

LauncherPtr MakeKubernetesLauncher(KubernetesOptions options, std::string* error) {
  auto launcher = std::make_unique<KubernetesLauncher>(std::move(options));
  if (std::string why = launcher->Init(); !why.empty()) {
    *error = why;
    return nullptr;
  }
  return launcher;
}

}  // namespace loads::controller
