#include "loads/common/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace loads::common {
namespace {

// Nearest-rank percentile of sorted data, the definition Histogram::Percentile follows.
uint64_t ExactPercentile(const std::vector<uint64_t>& sorted, double p) {
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * sorted.size()));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

void ExpectWithinResolution(uint64_t got, uint64_t exact) {
  // Never below the true value, at most 1/1024 above it.
  EXPECT_GE(got, exact);
  EXPECT_LE(static_cast<double>(got - exact), static_cast<double>(exact) / 1024.0 + 1e-9)
      << "got " << got << " exact " << exact;
}

TEST(Histogram, EmptyHasZeroes) {
  Histogram h;
  EXPECT_EQ(h.Count(), 0u);
  EXPECT_EQ(h.Percentile(99), 0u);
  EXPECT_EQ(h.Min(), 0u);
  EXPECT_EQ(h.Max(), 0u);
  EXPECT_EQ(h.Mean(), 0.0);
}

TEST(Histogram, SmallValuesAreExact) {
  Histogram h;
  for (uint64_t v = 1; v <= 100; ++v) h.Record(v);
  EXPECT_EQ(h.Percentile(50), 50u);
  EXPECT_EQ(h.Percentile(90), 90u);
  EXPECT_EQ(h.Percentile(99), 99u);
  EXPECT_EQ(h.Percentile(100), 100u);
  EXPECT_EQ(h.Percentile(0), 1u);
  EXPECT_DOUBLE_EQ(h.Mean(), 50.5);
}

TEST(Histogram, PercentilesMatchExactOnesWithinThreeSignificantDigits) {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> latency(std::log(400'000.0), 0.8);  // ~0.4 ms in ns
  std::vector<uint64_t> values;
  Histogram h;
  for (int i = 0; i < 200'000; ++i) {
    const auto v = static_cast<uint64_t>(latency(rng));
    values.push_back(v);
    h.Record(v);
  }
  std::sort(values.begin(), values.end());
  for (double p : {1.0, 25.0, 50.0, 90.0, 95.0, 99.0, 99.9, 99.99}) {
    SCOPED_TRACE(p);
    ExpectWithinResolution(h.Percentile(p), ExactPercentile(values, p));
  }
  EXPECT_EQ(h.Max(), values.back());
  EXPECT_EQ(h.Min(), values.front());
  EXPECT_EQ(h.Percentile(100), values.back());
}

TEST(Histogram, MergedEqualsRecordedInOnePlace) {
  std::mt19937_64 rng(7);
  std::exponential_distribution<double> latency(1.0 / 2'000'000.0);
  Histogram all;
  std::vector<Histogram> parts(5);
  for (int i = 0; i < 50'000; ++i) {
    const auto v = static_cast<uint64_t>(latency(rng)) + 1;
    all.Record(v);
    parts[i % parts.size()].Record(v);
  }
  Histogram merged;
  for (const auto& part : parts) merged.Merge(part);
  EXPECT_EQ(merged.Count(), all.Count());
  EXPECT_EQ(merged.Min(), all.Min());
  EXPECT_EQ(merged.Max(), all.Max());
  EXPECT_DOUBLE_EQ(merged.Mean(), all.Mean());
  for (double p = 0; p <= 100; p += 0.5) EXPECT_EQ(merged.Percentile(p), all.Percentile(p)) << p;
}

TEST(Histogram, HugeValuesDoNotOverflow) {
  Histogram h;
  h.Record(UINT64_MAX);
  h.Record(1);
  EXPECT_EQ(h.Max(), UINT64_MAX);
  EXPECT_EQ(h.Percentile(100), UINT64_MAX);
  EXPECT_EQ(h.Percentile(50), 1u);
}

TEST(Histogram, MemoryGrowsWithOctavesNotSamples) {
  Histogram h;
  for (int i = 0; i < 1'000'000; ++i) h.Record(300'000 + (i % 1000));
  size_t buckets = 0;
  h.ForEachBucket([&](uint64_t, uint64_t, uint64_t) { ++buckets; });
  EXPECT_LE(buckets, 1000u);
  EXPECT_EQ(h.Count(), 1'000'000u);
}

TEST(Histogram, CopyIsDeep) {
  Histogram a;
  a.Record(5000);
  Histogram b = a;
  b.Record(6000);
  EXPECT_EQ(a.Count(), 1u);
  EXPECT_EQ(b.Count(), 2u);
}

}  // namespace
}  // namespace loads::common
