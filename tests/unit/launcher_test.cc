#include "loads/controller/launcher.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "loads/common/run_spec.h"
#include "loads/controller/kube_api.h"

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

}  // namespace
}  // namespace loads::controller
