// The controller's broker with real loads-worker processes and a real target (the demo target):
// merged counts equal the target's own count, a killed worker is detected and the run goes on,
// workers with a wrong token are refused, a failing assignment fails the run.

#include "loads/controller/broker.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

extern char** environ;

namespace loads::controller {
namespace {

using namespace std::chrono_literals;

// A child process, killed when this goes out of scope.
class Process {
 public:
  explicit Process(std::vector<std::string> argv, bool capture_stdout = false) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    int fds[2] = {-1, -1};
    if (capture_stdout) {
      EXPECT_EQ(pipe(fds), 0);
      posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
      posix_spawn_file_actions_addclose(&actions, fds[0]);
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    EXPECT_EQ(posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ), 0) << argv[0];
    posix_spawn_file_actions_destroy(&actions);
    if (capture_stdout) {
      close(fds[1]);
      out_ = fdopen(fds[0], "r");
    }
  }
  ~Process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_) fclose(out_);
  }
  std::string ReadLine() {
    char line[512] = {0};
    return out_ && fgets(line, sizeof line, out_) ? line : "";
  }
  void Kill() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
};

std::string Bin(const std::string& name) { return std::string(LOADS_BIN_DIR) + "/" + name; }

// The demo target's own count of requests (GET /stats, which it does not count).
uint64_t DemoRequests(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string request = "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof buffer)) > 0) response.append(buffer, n);
  close(fd);
  return nlohmann::json::parse(response.substr(response.find("\r\n\r\n") + 4))["requests"];
}

class BrokerTest : public testing::Test {
 protected:
  void SetUp() override {
    demo_ = std::make_unique<Process>(
        std::vector<std::string>{Bin("loads-demo-target"), "--port", "0"}, true);
    const std::string line = demo_->ReadLine();
    const auto colon = line.rfind(':');
    ASSERT_NE(colon, std::string::npos) << line;
    port_ = std::stoi(line.substr(colon + 1));
    url_ = "http://127.0.0.1:" + std::to_string(port_) + "/";
  }

  void StartBroker(BrokerOptions options = {}) {
    options.heartbeat = 200ms;
    options.worker_timeout = 1500ms;
    broker_ = std::make_unique<Broker>(options);
    ASSERT_TRUE(broker_->Start().ok());
  }

  void StartWorkers(int n, const std::string& extra_token_file = "",
                    const std::string& id_prefix = "w") {
    for (int i = 0; i < n; ++i) {
      std::vector<std::string> argv = {Bin("loads-worker"),
                                       "--controller",
                                       broker_->endpoint(),
                                       "--id",
                                       id_prefix + std::to_string(workers_.size()),
                                       "--threads",
                                       "1"};
      if (!extra_token_file.empty()) {
        argv.push_back("--token-file");
        argv.push_back(extra_token_file);
      }
      workers_.push_back(std::make_unique<Process>(argv));
    }
  }

  bool WaitForWorkers(size_t n, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (broker_->ListWorkers().size() >= n) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  static RunRequest Request(common::Assignment plan, int workers,
                            LossPolicy policy = LossPolicy::kContinue) {
    RunRequest request;
    request.plan = std::move(plan);
    request.workers = workers;
    request.loss_policy = policy;
    return request;
  }

  common::Assignment UrlPlan(std::vector<int64_t> users, std::vector<int64_t> hits,
                             std::optional<double> duration = std::nullopt) {
    common::Assignment plan;
    plan.test = url_;
    plan.url = url_;
    plan.users = std::move(users);
    plan.hits = std::move(hits);
    plan.duration = duration;
    return plan;
  }

  std::unique_ptr<Process> demo_;
  int port_ = 0;
  std::string url_;
  std::unique_ptr<Broker> broker_;
  std::vector<std::unique_ptr<Process>> workers_;
};

TEST_F(BrokerTest, MergedHitsEqualTheTargetsCount) {
  StartBroker();
  StartWorkers(3);
  ASSERT_TRUE(WaitForWorkers(3));
  const uint64_t before = DemoRequests(port_);
  RunRequest request = Request(UrlPlan({10, 5}, {20}), 3);
  ASSERT_TRUE(broker_->StartRun("run-1", request).ok());
  ASSERT_TRUE(broker_->WaitForRun("run-1", 30s));
  const RunView run = *broker_->GetRun("run-1");
  EXPECT_EQ(run.state, RunState::kDone) << run.error;
  EXPECT_EQ(run.workers.size(), 3u);
  EXPECT_EQ(run.stats.hits, 300u);  // (10 + 5) users x 20 hits, split over 3 workers
  EXPECT_EQ(run.stats.successes, 300u);
  EXPECT_EQ(run.stats.latency.Count(), 300u);
  EXPECT_EQ(DemoRequests(port_) - before, run.stats.hits);
  EXPECT_EQ(run.duplicates, 0u);
  EXPECT_FALSE(run.degraded);
  for (const auto& worker : broker_->ListWorkers()) EXPECT_EQ(worker.run_id, "");
  // A second run on the same workers.
  ASSERT_TRUE(broker_->StartRun("run-2", Request(UrlPlan({2}, {5}), 2)).ok());
  ASSERT_TRUE(broker_->WaitForRun("run-2", 30s));
  EXPECT_EQ(broker_->GetRun("run-2")->stats.hits, 10u);
}

TEST_F(BrokerTest, AKilledWorkerIsLostAndTheRunGoesOn) {
  StartBroker();
  StartWorkers(3);
  ASSERT_TRUE(WaitForWorkers(3));
  ASSERT_TRUE(broker_->StartRun("run-k", Request(UrlPlan({6}, {}, 4.0), 3)).ok());
  std::this_thread::sleep_for(1500ms);
  const uint64_t hits_before_kill = broker_->GetRun("run-k")->stats.hits;
  EXPECT_GT(hits_before_kill, 0u);
  const auto killed_at = std::chrono::steady_clock::now();
  workers_[1]->Kill();
  while (broker_->GetRun("run-k")->lost_workers.empty() &&
         std::chrono::steady_clock::now() - killed_at < 5s) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, 3s);  // lost within 3 s
  ASSERT_TRUE(broker_->WaitForRun("run-k", 30s));
  const RunView run = *broker_->GetRun("run-k");
  EXPECT_EQ(run.state, RunState::kPartial);  // the lost worker's share is missing
  EXPECT_TRUE(run.degraded);
  EXPECT_EQ(run.lost_workers, std::vector<std::string>{"w1"});
  EXPECT_GE(run.stats.hits, hits_before_kill);  // what it delivered stays
  EXPECT_EQ(broker_->ListWorkers().size(), 2u);
}

TEST_F(BrokerTest, LossPolicyFailStopsTheRun) {
  StartBroker();
  StartWorkers(2);
  ASSERT_TRUE(WaitForWorkers(2));
  RunRequest request = Request(UrlPlan({4}, {}, 20.0), 2, LossPolicy::kFail);
  ASSERT_TRUE(broker_->StartRun("run-f", request).ok());
  std::this_thread::sleep_for(1s);
  workers_[0]->Kill();
  ASSERT_TRUE(broker_->WaitForRun("run-f", 10s));
  const RunView run = *broker_->GetRun("run-f");
  EXPECT_EQ(run.state, RunState::kFailed);
  EXPECT_NE(run.error.find("w0 was lost"), std::string::npos) << run.error;
}

TEST_F(BrokerTest, WorkersNeedTheToken) {
  BrokerOptions options;
  options.token = "s3cret";
  StartBroker(options);
  const std::string good = testing::TempDir() + "/good-token";
  const std::string bad = testing::TempDir() + "/bad-token";
  std::ofstream(good) << "s3cret\n";
  std::ofstream(bad) << "guess\n";
  StartWorkers(1, bad);
  StartWorkers(1, good);
  ASSERT_TRUE(WaitForWorkers(1));
  std::this_thread::sleep_for(1500ms);  // the refused one keeps saying hello
  const auto workers = broker_->ListWorkers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].id, "w1");
  EXPECT_GT(broker_->dropped(), 0u);
}

TEST_F(BrokerTest, RefusesRunsItCannotServe) {
  StartBroker();
  StartWorkers(1);
  ASSERT_TRUE(WaitForWorkers(1));
  EXPECT_FALSE(broker_->StartRun("r", Request(UrlPlan({1}, {1}), 2)).ok());
  ASSERT_TRUE(broker_->StartRun("r", Request(UrlPlan({1}, {1}), 1)).ok());
  EXPECT_FALSE(broker_->StartRun("r", Request(UrlPlan({1}, {1}), 1)).ok());  // same id
  ASSERT_TRUE(broker_->WaitForRun("r", 10s));
  // A library that does not load fails the run with the worker's message; the worker stays.
  common::Assignment plan = UrlPlan({1}, {1});
  plan.url.clear();
  plan.test = "broken.A.b";
  plan.library = "not a library";
  ASSERT_TRUE(broker_->StartRun("bad", Request(plan, 1)).ok());
  ASSERT_TRUE(broker_->WaitForRun("bad", 10s));
  const RunView run = *broker_->GetRun("bad");
  EXPECT_EQ(run.state, RunState::kFailed);
  EXPECT_NE(run.error.find("cannot load test library"), std::string::npos) << run.error;
  EXPECT_EQ(broker_->ListWorkers().size(), 1u);
}

// What a launcher relies on: a run may wait for the workers started for it, takes them before
// others, leaves other waiting runs theirs, and fails (or stops) cleanly while waiting.
TEST_F(BrokerTest, WaitingRunsGetTheirOwnWorkers) {
  StartBroker();
  auto waiting = [&](std::vector<int64_t> users, int workers, std::string prefix,
                     std::chrono::milliseconds wait = 20s) {
    RunRequest request;
    request.plan = UrlPlan(std::move(users), {5});
    request.workers = workers;
    request.wait_for_workers = wait;
    request.worker_prefix = std::move(prefix);
    return request;
  };
  const uint64_t before = DemoRequests(port_);
  ASSERT_TRUE(broker_->StartRun("a", waiting({4}, 2, "a-")).ok());
  ASSERT_TRUE(broker_->StartRun("b", waiting({1}, 1, "b-")).ok());
  EXPECT_EQ(broker_->GetRun("a")->state, RunState::kAssigning);
  EXPECT_EQ(broker_->IdleWorkers(), 0u);
  // b's worker comes first: a, although older, does not take it.
  StartWorkers(1, "", "b-");
  ASSERT_TRUE(broker_->WaitForRun("b", 10s));
  EXPECT_EQ(broker_->GetRun("b")->workers, std::vector<std::string>{"b-0"});
  EXPECT_EQ(broker_->GetRun("a")->state, RunState::kAssigning);
  EXPECT_TRUE(broker_->GetRun("a")->workers.empty());
  StartWorkers(2, "", "a-");
  ASSERT_TRUE(broker_->WaitForRun("a", 10s));
  const RunView a = *broker_->GetRun("a");
  EXPECT_EQ(a.state, RunState::kDone);
  // Its own first; b's worker, idle again once b is over, may fill the other place.
  ASSERT_EQ(a.workers.size(), 2u);
  EXPECT_TRUE(a.workers[0].starts_with("a-")) << a.workers[0];
  EXPECT_EQ(a.stats.hits, 20u);
  EXPECT_EQ(DemoRequests(port_) - before, 25u);

  ASSERT_TRUE(WaitForWorkers(3));
  // Too few workers come within the wait: the run fails and says so.
  ASSERT_TRUE(broker_->StartRun("c", waiting({5}, 5, "c-", 500ms)).ok());
  ASSERT_TRUE(broker_->WaitForRun("c", 5s));
  const RunView c = *broker_->GetRun("c");
  EXPECT_EQ(c.state, RunState::kFailed);
  EXPECT_NE(c.error.find("needed 5 workers; only 3 were idle"), std::string::npos) << c.error;
  // A launcher's failure ends a waiting run at once; so does a stop.
  ASSERT_TRUE(broker_->StartRun("d", waiting({9}, 9, "d-")).ok());
  EXPECT_TRUE(broker_->FailRun("d", "worker pod d-0 cannot start: ErrImagePull").ok());
  ASSERT_TRUE(broker_->WaitForRun("d", 5s));  // seen over once stored, by the broker's thread
  EXPECT_EQ(broker_->GetRun("d")->state, RunState::kFailed);
  EXPECT_EQ(broker_->GetRun("d")->error, "worker pod d-0 cannot start: ErrImagePull");
  EXPECT_FALSE(broker_->FailRun("d", "again").ok());
  ASSERT_TRUE(broker_->StartRun("e", waiting({9}, 9, "e-")).ok());
  EXPECT_TRUE(broker_->StopRun("e").ok());
  ASSERT_TRUE(broker_->WaitForRun("e", 5s));
  EXPECT_EQ(broker_->GetRun("e")->state, RunState::kStopped);
  EXPECT_EQ(broker_->IdleWorkers(), 3u);
}

}  // namespace
}  // namespace loads::controller
