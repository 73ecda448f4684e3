#include "loads/controller/launcher.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "loads/common/run_spec.h"
#include "loads/controller/kube_api.h"
#include "tests/fakes/fake_kube_api.h"

namespace loads::controller {
namespace {

// The table the chart's schema is tested with too (tests/helm/quantities.test.mjs).
TEST(ResourceQuantity, AcceptsWhatKubernetesDoesForRequestsAndNothingElse) {
  std::ifstream file(std::string(LOADS_TESTDATA_DIR) + "/quantities.json");
  ASSERT_TRUE(file) << "tests/testdata/quantities.json";
  const auto table = nlohmann::json::parse(file);
  ASSERT_GE(table["valid"].size(), 20u);
  for (const auto& good : table["valid"]) {
    const std::string text = good["text"];
    EXPECT_TRUE(spec::IsResourceQuantity(text)) << text;
    const double value = good["value"];
    EXPECT_NEAR(spec::ResourceQuantityValue(text), value, value * 1e-12) << text;
  }
  ASSERT_GE(table["invalid"].size(), 20u);
  for (const auto& bad : table["invalid"]) {
    EXPECT_FALSE(spec::IsResourceQuantity(bad.get<std::string>())) << bad;
  }
}

TEST(ResourceQuantity, ThreadsAreTheRequestedCpusRoundedUp) {
  EXPECT_EQ(ThreadsForCpu("100m"), 1);
  EXPECT_EQ(ThreadsForCpu("1000m"), 1);
  EXPECT_EQ(ThreadsForCpu("1001m"), 2);
  EXPECT_EQ(ThreadsForCpu("2"), 2);
  EXPECT_EQ(ThreadsForCpu("2.5"), 3);
  EXPECT_EQ(ThreadsForCpu("0.1"), 1);
  EXPECT_EQ(ThreadsForCpu("100000"), 1024);
  EXPECT_EQ(ThreadsForCpu("3e0"), 3);
  EXPECT_EQ(ThreadsForCpu("2500000u"), 3);
  EXPECT_EQ(ThreadsForCpu("0"), 1);
  EXPECT_EQ(ThreadsForCpu("1e400"), 1024);
}

KubeResponse Answer(long status, std::string reason = "", std::string retry_after = "") {
  KubeResponse r;
  r.status = status;
  if (!reason.empty()) r.body = R"({"kind":"Status","reason":")" + reason + R"("})";
  r.retry_after = std::move(retry_after);
  return r;
}

TEST(KubeRetry, RetriesWhatAnotherTryCanMendAndNothingElse) {
  using std::chrono::milliseconds;
  for (long status : {0L, 429L, 500L, 502L, 503L, 504L}) {
    EXPECT_EQ(RetryDelay(Answer(status), 1), milliseconds(250)) << status;
  }
  EXPECT_EQ(RetryDelay(Answer(409, "Conflict"), 1), milliseconds(250));
  // AlreadyExists is the caller's to judge (its own earlier attempt), the rest would fail again.
  EXPECT_FALSE(RetryDelay(Answer(409, "AlreadyExists"), 1));
  for (long status : {200L, 201L, 400L, 401L, 403L, 404L, 410L, 422L}) {
    EXPECT_FALSE(RetryDelay(Answer(status), 1)) << status;
  }
  KubeResponse untrusted = Answer(0);
  untrusted.permanent = true;  // a certificate that does not verify
  EXPECT_FALSE(RetryDelay(untrusted, 1));
}

TEST(KubeRetry, BacksOffExponentiallyOrAsTheServerAsks) {
  using std::chrono::milliseconds;
  EXPECT_EQ(RetryDelay(Answer(503), 2), milliseconds(500));
  EXPECT_EQ(RetryDelay(Answer(503), 3), milliseconds(1000));
  EXPECT_EQ(RetryDelay(Answer(503), 5), milliseconds(4000));
  EXPECT_EQ(RetryDelay(Answer(503), 50), milliseconds(4000));
  EXPECT_EQ(RetryDelay(Answer(429, "TooManyRequests", "3"), 1), milliseconds(3000));
  EXPECT_EQ(RetryDelay(Answer(503, "", "0"), 4), milliseconds(0));
  EXPECT_EQ(RetryDelay(Answer(429, "", "3600"), 1), milliseconds(30000));  // capped
  // Not seconds (an HTTP date, garbage): the usual backoff.
  EXPECT_EQ(RetryDelay(Answer(429, "", "Wed, 21 Oct 2026 07:28:00 GMT"), 1), milliseconds(250));
  EXPECT_EQ(RetryDelay(Answer(429, "", "-5"), 1), milliseconds(250));
  // Retry-After on a 500 is not the API server's: backoff.
  EXPECT_EQ(RetryDelay(Answer(500, "", "9"), 1), milliseconds(250));
}

TEST(KubeRetry, ReadsTheStatusReason) {
  EXPECT_EQ(StatusReason(R"({"kind":"Status","reason":"AlreadyExists"})"), "AlreadyExists");
  EXPECT_EQ(StatusReason("not json"), "");
  EXPECT_EQ(StatusReason(R"({"reason":7})"), "");
  EXPECT_EQ(StatusReason("[]"), "");
}

// The Kubernetes launcher driven through the KubeApi seam: what it creates, how it bounds and
// retries its requests, undoes a failed launch, reads pod states from its watch, and cleans up.
class KubernetesLauncherTest : public ::testing::Test {
 protected:
  using Json = nlohmann::json;

  KubernetesLauncherTest() {
    // A service account as Kubernetes mounts it: the launcher checks it is there.
    dir_ = std::filesystem::temp_directory_path() /
           ("loads-launcher-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "token") << "t0ken\n";
    std::ofstream(dir_ / "ca.crt") << "not used: the fake API has no TLS\n";
    std::ofstream(dir_ / "namespace") << "perf\n";
    options_.api_server = "https://api.invalid:443";
    options_.service_account_dir = dir_.string();
    options_.image = "registry.example/loads-worker:1";
    options_.instance = "perf";
    options_.token_secret = "perf-loads-tokens";
  }
  ~KubernetesLauncherTest() override {
    launcher_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Starts the launcher on api_.
  void Start() {
    auto made =
        MakeKubernetesLauncher(options_, std::make_unique<testing::ForwardingKubeApi>(api_));
    ASSERT_TRUE(made.ok()) << made.status().message();
    launcher_ = std::move(*made);
  }

  LaunchRequest Request(int workers, std::string run_id = "r") {
    return {std::move(run_id), workers, "tcp://perf-loads-controller:5555", "2", "1Gi"};
  }

  // Polls until cond holds, for at most 5 s (the launcher's watch runs on its own thread).
  template <typename Cond>
  bool Eventually(Cond cond) {
    for (int i = 0; i < 500; ++i) {
      if (cond()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return cond();
  }

  static Json Container(const Json& pod) { return pod["spec"]["containers"][0]; }

  std::filesystem::path dir_;
  KubernetesOptions options_;
  std::shared_ptr<testing::FakeKubeApi> api_ = std::make_shared<testing::FakeKubeApi>();
  LauncherPtr launcher_;
};

TEST_F(KubernetesLauncherTest, PodsAreMadeFromTheTemplateAtMostNAtOnceAndGoWithTheirRun) {
  options_.api_parallelism = 3;
  options_.pod_template =
      Json{{"metadata", {{"labels", {{"team", "perf"}}}}},
           {"spec",
            {{"nodeSelector", {{"pool", "load"}}},
             {"containers",
              {{{"name", "worker"},
                {"args", {"--metrics", "0.0.0.0:9465"}},
                {"ports", {{{"name", "metrics"}, {"containerPort", 9465}}}}}}}}}}
          .dump();
  api_->SetDelay(std::chrono::milliseconds(20));
  Start();
  ASSERT_EQ(launcher_->Launch(Request(7)), "");
  const auto pods = api_->Pods();
  ASSERT_EQ(pods.size(), 7u);
  EXPECT_EQ(api_->Count("POST"), 7);
  EXPECT_EQ(api_->MaxInFlight(), 3);  // --kubernetes-api-parallelism
  for (const auto& [name, pod] : pods) {
    EXPECT_TRUE(name.starts_with(launcher_->WorkerPrefix("r"))) << name;
    EXPECT_EQ(pod["metadata"]["labels"]["team"], "perf");
    EXPECT_EQ(pod["metadata"]["labels"]["app.kubernetes.io/instance"], "perf");
    EXPECT_EQ(pod["metadata"]["annotations"]["loads/run-id"], "r");
    EXPECT_EQ(pod["spec"]["nodeSelector"]["pool"], "load");
    EXPECT_EQ(pod["spec"]["restartPolicy"], "Never");
    const Json worker = Container(pod);
    EXPECT_EQ(worker["image"], options_.image);
    EXPECT_EQ(worker["ports"][0]["containerPort"], 9465);
    EXPECT_EQ(worker["resources"]["requests"]["cpu"], "2");
    EXPECT_EQ(worker["resources"]["limits"]["memory"], "1Gi");
    const std::vector<std::string> args = worker["args"];
    ASSERT_GE(args.size(), 4u);
    EXPECT_EQ(args[0], "--controller");
    EXPECT_EQ(args[1], "tcp://perf-loads-controller:5555");
    EXPECT_NE(std::find(args.begin(), args.end(), "--threads"), args.end());
    EXPECT_EQ(std::vector<std::string>(args.end() - 2, args.end()),
              (std::vector<std::string>{"--metrics", "0.0.0.0:9465"}));
  }
  // Running: kept. Over: each pod is taken out of the broker's pool, then deleted.
  std::vector<RunSummary> runs = {{"r", RunState::kRunning, false, {}}};
  std::vector<std::string> retired;
  const auto retire = [&](const std::string& id) {
    retired.push_back(id);
    return true;
  };
  EXPECT_TRUE(launcher_->Supervise(runs, retire).empty());
  EXPECT_EQ(api_->Pods().size(), 7u);
  runs[0].state = RunState::kDone;
  EXPECT_TRUE(launcher_->Supervise(runs, retire).empty());
  EXPECT_EQ(retired.size(), 7u);
  EXPECT_TRUE(api_->Pods().empty());
}

TEST_F(KubernetesLauncherTest, ThrottledConflictingAndLostCreatesStillMakeEachPodOnce) {
  api_->Fail("POST", 2, testing::FakeKubeApi::Answer(429, "TooManyRequests", "slow down"));
  api_->Fail("POST", 1, testing::FakeKubeApi::Answer(409, "Conflict", "try again"));
  // Made, but the answer is lost: the retry's 409 AlreadyExists is the launcher's own pod.
  api_->Fail("POST", 2, testing::FakeKubeApi::Answer(504, "Timeout", "lost"),
             /*after_serving=*/true);
  Start();
  ASSERT_EQ(launcher_->Launch(Request(4)), "");
  EXPECT_EQ(api_->Pods().size(), 4u);
  EXPECT_EQ(api_->Count("POST"), 4 + 2 + 1 + 2);
  EXPECT_EQ(api_->Count("DELETE"), 0);
}

TEST_F(KubernetesLauncherTest, ARefusedCreateUndoesTheWholeLaunchAndSaysWhy) {
  options_.api_parallelism = 1;  // one by one: the third create is refused, after two were made
  Start();
  ASSERT_EQ(launcher_->Launch(Request(2, "first")), "");
  api_->Fail("POST", 1, testing::FakeKubeApi::Answer(403, "Forbidden", "exceeded quota: pods=10"),
             /*after_serving=*/false, /*skip=*/2);
  const std::string error = launcher_->Launch(Request(4, "second"));
  EXPECT_NE(error.find("exceeded quota: pods=10"), std::string::npos) << error;
  // Nothing of the failed launch is left (its two pods deleted, the fourth never asked for);
  // the first run's pods are untouched.
  EXPECT_EQ(api_->Count("POST"), 2 + 3);
  const auto pods = api_->Pods();
  ASSERT_EQ(pods.size(), 2u);
  for (const auto& [name, pod] : pods)
    EXPECT_EQ(pod["metadata"]["annotations"]["loads/run-id"], "first");
}

TEST_F(KubernetesLauncherTest, APodThatCannotStartFailsItsWaitingRunOnce) {
  Start();
  ASSERT_EQ(launcher_->Launch(Request(2)), "");
  const std::string name = api_->Pods().begin()->first;
  api_->SetStatus(
      name,
      {{"phase", "Pending"},
       {"containerStatuses",
        {{{"name", "worker"},
          {"state", {{"waiting", {{"reason", "ErrImagePull"}, {"message", "no such image"}}}}}}}}});
  const std::vector<RunSummary> runs = {{"r", RunState::kAssigning, true, {}}};
  const auto never = [](const std::string&) { return false; };
  std::vector<LaunchFailure> failures;
  // The state arrives through the watch, not a poll.
  ASSERT_TRUE(Eventually([&] {
    failures = launcher_->Supervise(runs, never);
    return !failures.empty();
  }));
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].run_id, "r");
  EXPECT_NE(failures[0].message.find(name + " cannot start: ErrImagePull (no such image)"),
            std::string::npos)
      << failures[0].message;
  EXPECT_TRUE(launcher_->Supervise(runs, never).empty());  // told once
  EXPECT_EQ(api_->Count("GET"), 1);                        // one list at start; then only the watch
}

TEST_F(KubernetesLauncherTest, AnEarlierControllersPodsAreKeptForTheirRunOrDeleted) {
  const auto pod = [&](const std::string& name, const std::string& run) {
    Json p = {{"apiVersion", "v1"}, {"kind", "Pod"}};
    p["metadata"]["name"] = name;
    p["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "loads-controller";
    p["metadata"]["labels"]["app.kubernetes.io/instance"] = "perf";
    if (!run.empty()) p["metadata"]["annotations"]["loads/run-id"] = run;
    return p;
  };
  api_->AddPod(pod("loads-w-old-1", "r"));
  api_->AddPod(pod("loads-w-old-2", ""));
  Json other = pod("someone-elses", "");
  other["metadata"]["labels"]["app.kubernetes.io/instance"] = "other-release";
  api_->AddPod(other);
  Start();
  auto pods = api_->Pods();
  EXPECT_TRUE(pods.count("loads-w-old-1"));   // its run may still be running
  EXPECT_FALSE(pods.count("loads-w-old-2"));  // no run: deleted at start
  EXPECT_TRUE(pods.count("someone-elses"));   // not this release's
  EXPECT_TRUE(
      launcher_
          ->Supervise({{"r", RunState::kDone, false, {}}}, [](const std::string&) { return true; })
          .empty());
  pods = api_->Pods();
  EXPECT_FALSE(pods.count("loads-w-old-1"));
  EXPECT_TRUE(pods.count("someone-elses"));
}

TEST_F(KubernetesLauncherTest, AStoppingControllerDeletesItsPods) {
  Start();
  ASSERT_EQ(launcher_->Launch(Request(3)), "");
  EXPECT_EQ(api_->Pods().size(), 3u);
  launcher_.reset();
  EXPECT_TRUE(api_->Pods().empty());
  EXPECT_EQ(api_->Count("DELETE"), 3);
}

TEST_F(KubernetesLauncherTest, ATemplateThatTakesTheLaunchersFlagsIsRefused) {
  options_.pod_template =
      Json{{"spec", {{"containers", {{{"name", "worker"}, {"args", {"--threads", "64"}}}}}}}}
          .dump();
  auto made = MakeKubernetesLauncher(options_, std::make_unique<testing::ForwardingKubeApi>(api_));
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(made.status().message(),
            "--worker-pod-template: spec.containers[worker].args: --threads is the launcher's");
}

}  // namespace
}  // namespace loads::controller
