#include "loads/controller/launcher.h"

#include <gtest/gtest.h>

#include "loads/common/run_spec.h"

namespace loads::controller {
namespace {

TEST(ResourceQuantity, AcceptsWhatKubernetesDoesForRequests) {
  for (const char* good :
       {"500m", "1", "0.5", ".5", "2", "256Mi", "1Gi", "1G", "128974848", "1k"}) {
    EXPECT_TRUE(spec::IsResourceQuantity(good)) << good;
  }
  for (const char* bad : {"", "lots", "1.", "-1", "1 Gi", "1gi", "1Gib", "Mi", "1e3x", "0x10"}) {
    EXPECT_FALSE(spec::IsResourceQuantity(bad)) << bad;
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
}

}  // namespace
}  // namespace loads::controller
