// The per-second series (loads/common/series.h): points per second, gaps, sums kept exactly
// through downsampling, percentiles per point.

#include "loads/common/series.h"

#include <gtest/gtest.h>

#include <numeric>

namespace loads::common {
namespace {

RunStats Hits(uint64_t n, uint64_t latency_ns) {
  RunStats stats;
  for (uint64_t i = 0; i < n; ++i) {
    stats.RecordHit("GET u", "GET", 200, HitError::kNone, latency_ns);
    stats.RecordExecution(Outcome::kSuccess, "");
  }
  return stats;
}

TEST(Series, OnePointPerSecondWithGapsAsZeros) {
  SeriesBuilder builder;
  builder.Add(0.25, Hits(2, 1'000'000), 3);
  builder.Add(0.75, Hits(3, 3'000'000), 4);
  builder.Add(3.5, Hits(1, 2'000'000), 1);  // seconds 1 and 2 saw nothing
  const Series s = builder.Finish();
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s.seconds, (std::vector<double>{0, 1, 2, 3}));
  EXPECT_EQ(s.hits, (std::vector<uint64_t>{5, 0, 0, 1}));
  EXPECT_EQ(s.executions, (std::vector<uint64_t>{5, 0, 0, 1}));
  EXPECT_EQ(s.active_users, (std::vector<int64_t>{4, 4, 4, 1}));
  ASSERT_TRUE(s.p50[0]);
  EXPECT_NEAR(*s.p50[0], 0.003, 0.003 / 1000);  // 3 of 5 hits took 3 ms
  EXPECT_FALSE(s.p99[1]);
}

TEST(Series, DownsamplesPastTheCapAndKeepsEverySum) {
  SeriesBuilder builder;
  uint64_t total = 0;
  for (int second = 0; second < 10'000; ++second) {
    const uint64_t n = 1 + second % 7;
    total += n;
    builder.Add(second + 0.5, Hits(n, (1 + second % 5) * 1'000'000), second);
  }
  const Series s = builder.Finish();
  EXPECT_LE(s.size(), kMaxSeriesPoints);
  EXPECT_EQ(s.step_seconds, 4);  // 10,000 s: 3,600 points of 1 s, then 2 s, then 4 s
  EXPECT_EQ(std::accumulate(s.hits.begin(), s.hits.end(), uint64_t{0}), total);
  for (size_t i = 0; i < s.size(); ++i) EXPECT_EQ(s.seconds[i], 4.0 * static_cast<double>(i));
  // A merged point keeps the larger percentile: every 4-second point saw a 5 ms or 4 ms hit.
  EXPECT_GE(*s.p99[0], 0.004);
  EXPECT_EQ(s.active_users.back(), 9999);
}

}  // namespace
}  // namespace loads::common
