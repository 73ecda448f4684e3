#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "loads/common/process.h"
#include "loads/common/thread_annotations.h"
#include "loads/controller/launcher.h"

namespace loads::controller {
namespace {

class LocalLauncher : public Launcher {
 public:
  LocalLauncher(std::string binary, int max_workers, std::string token_file,
                std::vector<std::string> extra_args)
      : binary_(std::move(binary)),
        max_(max_workers),
        token_file_(std::move(token_file)),
        extra_args_(std::move(extra_args)) {}

  // Workers get SIGTERM (they stop their run and send its final results), then SIGKILL if they
  // are still there after 3 s.
  ~LocalLauncher() override {
    for (pid_t pid : pids_) kill(pid, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    std::vector<pid_t> left = pids_;
    while (!left.empty() && std::chrono::steady_clock::now() < deadline) {
      std::erase_if(left, [](pid_t pid) { return waitpid(pid, nullptr, WNOHANG) == pid; });
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (pid_t pid : left) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }

  std::string WorkerPrefix(const std::string&) const override { return ""; }
  std::chrono::seconds RegistrationTimeout() const override { return std::chrono::seconds(15); }
  std::vector<LaunchFailure> Supervise(const std::vector<RunSummary>&,
                                       const std::function<bool(const std::string&)>&) override {
    return {};
  }

  std::string Launch(const LaunchRequest& request) override LOADS_EXCLUDES(mu_) {
    const int n = request.workers;
    const std::string& endpoint = request.endpoint;
    MutexLock lock(mu_);
    if (static_cast<int>(pids_.size()) + n > max_) {
      return "the local launcher may start " + std::to_string(max_) + " workers in all (" +
             std::to_string(pids_.size()) + " started)";
    }
    for (int i = 0; i < n; ++i) {
      const std::string id = "local-" + std::to_string(getpid()) + "-" + std::to_string(++count_);
      std::vector<std::string> argv = {binary_, "--controller", endpoint, "--id", id};
      if (!token_file_.empty()) {
        argv.push_back("--token-file");
        argv.push_back(token_file_);
      }
      argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
      pid_t pid = 0;
      if (const int error = common::Spawn(argv, nullptr, -1, false, &pid)) {
        return "cannot start " + binary_ + ": " + std::strerror(error);
      }
      pids_.push_back(pid);
    }
    return "";
  }

 private:
  std::string binary_;
  int max_;
  std::string token_file_;
  std::vector<std::string> extra_args_;
  Mutex mu_;
  std::vector<pid_t> pids_ LOADS_GUARDED_BY(mu_);
  int count_ LOADS_GUARDED_BY(mu_) = 0;
};

}  // namespace

LauncherPtr MakeLocalLauncher(std::string worker_binary, int max_workers, std::string token_file,
                              std::vector<std::string> extra_args) {
  return std::make_unique<LocalLauncher>(std::move(worker_binary), max_workers,
                                         std::move(token_file), std::move(extra_args));
}

}  // namespace loads::controller
