#include "loads/controller/launcher.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "loads/common/run_spec.h"

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

}  // namespace
}  // namespace loads::controller
