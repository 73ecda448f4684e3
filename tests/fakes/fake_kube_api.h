#pragma once

// An in-memory Kubernetes API for the launcher's unit tests: pods are created, listed (by label
// selector), deleted and watched (from a resourceVersion), every request is recorded, and
// scripted faults answer chosen requests. No API server can run here; tests/k8s/fake_apiserver.mjs
// is the HTTP one the integration tests put behind the real client, this one puts the launcher's
// logic under test in milliseconds.
//
// Thread safety: every method may be called from any thread (the launcher creates pods in
// parallel and watches on a thread of its own).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "loads/controller/kube_api.h"

namespace loads::testing {

class FakeKubeApi : public controller::KubeApi {
 public:
  using Json = nlohmann::json;
  struct Request {
    std::string method, path, body;
  };

  // The next `count` requests of `method`, after `skip` more are served, get `answer`.
  // after_serving: they are served first, then answered so (an answer lost on the way).
  void Fail(const std::string& method, int count, controller::KubeResponse answer,
            bool after_serving = false, int skip = 0) {
    std::lock_guard lock(mu_);
    faults_.push_back({method, count, std::move(answer), after_serving, skip});
  }
  // How long each request takes.
  void SetDelay(std::chrono::milliseconds delay) { delay_ = delay; }
  // A pod that exists before the launcher starts (an earlier controller's).
  void AddPod(Json pod) {
    std::lock_guard lock(mu_);
    Store(std::move(pod), "ADDED");
  }
  // Sets a pod's status, as the kubelet would; watchers see it.
  void SetStatus(const std::string& name, Json status) {
    std::lock_guard lock(mu_);
    auto it = pods_.find(name);
    if (it == pods_.end()) return;
    Json pod = it->second;
    pod["status"] = std::move(status);
    Store(std::move(pod), "MODIFIED");
  }

  std::vector<Request> Requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  int Count(const std::string& method) const {
    std::lock_guard lock(mu_);
    return static_cast<int>(std::count_if(requests_.begin(), requests_.end(),
                                          [&](const Request& r) { return r.method == method; }));
  }
  std::map<std::string, Json> Pods() const {
    std::lock_guard lock(mu_);
    return pods_;
  }
  int MaxInFlight() const { return max_in_flight_; }

  controller::KubeResponse Call(const std::string& method, const std::string& path,
                                const std::string& body) override {
    const int now = ++in_flight_;
    for (int seen = max_in_flight_;
         now > seen && !max_in_flight_.compare_exchange_weak(seen, now);) {
    }
    std::this_thread::sleep_for(delay_.load());
    controller::KubeResponse answer;
    {
      std::lock_guard lock(mu_);
      requests_.push_back({method, path, body});
      auto fault = std::find_if(faults_.begin(), faults_.end(),
                                [&](const Fault& f) { return f.method == method && f.count > 0; });
      if (fault != faults_.end() && fault->skip > 0) {
        --fault->skip;
        fault = faults_.end();
      }
      if (fault != faults_.end() && !fault->after_serving) {
        --fault->count;
        answer = fault->answer;
      } else {
        answer = Serve(method, path, body);
        if (fault != faults_.end()) {
          --fault->count;
          answer = fault->answer;
        }
      }
    }
    --in_flight_;
    return answer;
  }

  controller::KubeResponse Stream(const std::string& path,
                                  const std::function<bool(std::string_view line)>& on_line,
                                  const std::atomic<bool>* stop, std::chrono::seconds) override {
    uint64_t from = 0;
    if (auto at = path.find("resourceVersion="); at != std::string::npos) {
      from = std::strtoull(path.c_str() + at + 16, nullptr, 10);
    }
    std::unique_lock lock(mu_);
    requests_.push_back({"WATCH", path, ""});
    while (!stop->load()) {
      for (const auto& [version, line] : events_) {
        if (version <= from) continue;
        from = version;
        const std::string copy = line;  // events_ may grow (and move) while the lock is off
        lock.unlock();
        const bool more = on_line(copy);
        lock.lock();
        if (!more) return {200, "", "", "", false};
        break;  // events_ may have grown meanwhile: look again from `from`
      }
      if (std::none_of(events_.begin(), events_.end(),
                       [&](const auto& e) { return e.first > from; })) {
        changed_.wait_for(lock, std::chrono::milliseconds(10));
      }
    }
    return {200, "", "", "", false};
  }

  static controller::KubeResponse Answer(long status, const std::string& reason,
                                         const std::string& message) {
    return {
        status,
        Json{{"kind", "Status"}, {"code", status}, {"reason", reason}, {"message", message}}.dump(),
        "", "", false};
  }

 private:
  struct Fault {
    std::string method;
    int count;
    controller::KubeResponse answer;
    bool after_serving;
    int skip;
  };

  // REQUIRES: mu_ held.
  void Store(Json pod, const char* type) {
    pod["metadata"]["resourceVersion"] = std::to_string(++version_);
    const std::string name = pod["metadata"]["name"];
    if (std::string(type) == "DELETED") {
      pods_.erase(name);
    } else {
      pods_[name] = pod;
    }
    events_.emplace_back(version_, Json{{"type", type}, {"object", pod}}.dump());
    changed_.notify_all();
  }

  static bool Matches(const Json& pod, const std::string& selector) {
    size_t start = 0;
    while (start < selector.size()) {
      size_t end = selector.find(',', start);
      if (end == std::string::npos) end = selector.size();
      const std::string term = selector.substr(start, end - start);
      const size_t eq = term.find('=');
      const Json labels = pod["metadata"].value("labels", Json::object());
      if (eq == std::string::npos || labels.value(term.substr(0, eq), "") != term.substr(eq + 1)) {
        return false;
      }
      start = end + 1;
    }
    return true;
  }

  static std::string Decode(const std::string& text) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '%' && i + 2 < text.size()) {
        out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        out += text[i];
      }
    }
    return out;
  }

  // REQUIRES: mu_ held.
  controller::KubeResponse Serve(const std::string& method, const std::string& path,
                                 const std::string& body) {
    const size_t query = path.find('?');
    const std::string resource = path.substr(0, query);
    const size_t pods = resource.find("/pods");
    if (pods == std::string::npos) return Answer(404, "NotFound", "only pods here");
    const std::string name = resource.size() > pods + 6 ? resource.substr(pods + 6) : std::string();
    if (method == "POST" && name.empty()) {
      Json pod = Json::parse(body, nullptr, false);
      if (!pod.is_object()) return Answer(400, "BadRequest", "not JSON");
      const std::string pod_name = pod["metadata"].value("name", "");
      if (pods_.count(pod_name)) return Answer(409, "AlreadyExists", pod_name + " exists");
      pod["status"] = {{"phase", "Pending"}};
      Store(pod, "ADDED");
      return {201, pods_[pod_name].dump(), "", "", false};
    }
    if (method == "GET" && name.empty()) {
      std::string selector;
      if (query != std::string::npos) {
        const std::string q = path.substr(query + 1);
        if (auto at = q.find("labelSelector="); at != std::string::npos) {
          selector = Decode(q.substr(at + 14, q.find('&', at) - at - 14));
        }
      }
      Json items = Json::array();
      for (const auto& [n, pod] : pods_) {
        if (Matches(pod, selector)) items.push_back(pod);
      }
      return {200,
              Json{{"items", items}, {"metadata", {{"resourceVersion", std::to_string(version_)}}}}
                  .dump(),
              "", "", false};
    }
    if (method == "DELETE" && !name.empty()) {
      auto it = pods_.find(name);
      if (it == pods_.end()) return Answer(404, "NotFound", name + " not found");
      Json pod = it->second;
      Store(pod, "DELETED");
      return {200, pod.dump(), "", "", false};
    }
    return Answer(405, "MethodNotAllowed", method + " " + path);
  }

  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, Json> pods_;
  std::vector<std::pair<uint64_t, std::string>> events_;  // (resourceVersion, watch line)
  std::vector<Request> requests_;
  std::vector<Fault> faults_;
  uint64_t version_ = 0;
  std::atomic<std::chrono::milliseconds> delay_{std::chrono::milliseconds(0)};
  std::atomic<int> in_flight_{0}, max_in_flight_{0};
};

// A KubeApi that forwards to `fake`: the launcher owns it, the test keeps the fake and looks at
// it after the launcher is gone.
class ForwardingKubeApi : public controller::KubeApi {
 public:
  explicit ForwardingKubeApi(std::shared_ptr<controller::KubeApi> to) : to_(std::move(to)) {}
  controller::KubeResponse Call(const std::string& method, const std::string& path,
                                const std::string& body) override {
    return to_->Call(method, path, body);
  }
  controller::KubeResponse Stream(const std::string& path,
                                  const std::function<bool(std::string_view line)>& on_line,
                                  const std::atomic<bool>* stop,
                                  std::chrono::seconds idle) override {
    return to_->Stream(path, on_line, stop, idle);
  }

 private:
  std::shared_ptr<controller::KubeApi> to_;
};

}  // namespace loads::testing
