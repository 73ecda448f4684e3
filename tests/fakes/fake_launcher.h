#pragma once

// A launcher that records what it was asked and answers as told, for unit tests of the service:
// no process or pod is started.
//
// Thread safety: every method may be called from any thread.

#include <mutex>
#include <string>
#include <vector>

#include "loads/controller/launcher.h"

namespace loads::testing {

class FakeLauncher : public controller::Launcher {
 public:
  // What Launch answers ("" = launched).
  void SetAnswer(std::string answer) {
    std::lock_guard lock(mu_);
    answer_ = std::move(answer);
  }
  std::vector<controller::LaunchRequest> Requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

  std::string Launch(const controller::LaunchRequest& request) override {
    std::lock_guard lock(mu_);
    requests_.push_back(request);
    return answer_;
  }
  std::string WorkerPrefix(const std::string& run_id) const override {
    return "fake-" + run_id + "-";
  }
  std::chrono::seconds RegistrationTimeout() const override { return std::chrono::seconds(60); }
  std::vector<controller::LaunchFailure> Supervise(
      const std::vector<controller::RunSummary>&,
      const std::function<bool(const std::string&)>&) override {
    return {};
  }

 private:
  mutable std::mutex mu_;
  std::string answer_;
  std::vector<controller::LaunchRequest> requests_;
};

}  // namespace loads::testing
