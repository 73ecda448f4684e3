#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

namespace loads::common {

// A log-linear latency histogram (HDR style) over non-negative integer values, normally
// nanoseconds. Values below 2048 are recorded exactly; larger values keep 11 significant bits,
// a relative error below 1/1024 (better than three significant decimal digits), up to 2^63.
//
// Memory is bounded and proportional to the number of powers of two actually used: one block of
// 1024 counters (8 KiB) per octave that received a value, so a histogram of loopback latencies
// costs a few tens of KiB whatever the number of samples.
//
// Merging adds counts bucket by bucket, so a merged histogram is identical to the histogram of
// all the samples recorded in one place: merged percentiles are exact with respect to the
// recorded resolution.
//
// Thread safety: none; each thread records into its own histogram and they are merged later.
class Histogram {
 public:
  Histogram();
  Histogram(const Histogram& other);
  Histogram& operator=(const Histogram& other);
  Histogram(Histogram&&) noexcept = default;
  Histogram& operator=(Histogram&&) noexcept = default;

  // Records one value (count times).
  void Record(uint64_t value, uint64_t count = 1);

  // Adds every count of other into this histogram.
  void Merge(const Histogram& other);

  uint64_t Count() const { return count_; }
  uint64_t Min() const { return count_ == 0 ? 0 : min_; }
  uint64_t Max() const { return max_; }
  // Mean of the exact recorded values (the sum is kept exactly, not from buckets).
  double Mean() const;
  // Sum of the recorded values, exact up to 2^64 - 1 (then it saturates: 584 years of
  // nanoseconds).
  uint64_t Sum() const { return sum_; }

  // Returns the value at percentile p in [0, 100] with the nearest-rank definition: the
  // smallest recorded value v such that at least p% of the values are <= v, reported as the
  // highest value equivalent to v's bucket (never below the true value, at most 1/1024 above),
  // clamped to Max(). Returns 0 for an empty histogram.
  uint64_t Percentile(double p) const;

  void Clear();

  // Bucket iteration for serialization and tests: calls fn(lowest_value, highest_value, count)
  // for every non-empty bucket in increasing order.
  template <typename Fn>
  void ForEachBucket(Fn&& fn) const {
    for (size_t g = 0; g < groups_.size(); ++g) {
      if (!groups_[g]) continue;
      const size_t n = GroupSize(g);
      for (size_t i = 0; i < n; ++i) {
        const uint64_t c = (*groups_[g])[i];
        if (c != 0) fn(BucketLow(g, i), BucketHigh(g, i), c);
      }
    }
  }

  static constexpr int kSubBucketBits = 10;  // 1024 buckets per octave above 2048

  // Buckets by a flat index, for serialization: 0..2047 are the exact values, then 1024 buckets
  // per octave. Calls fn(index, count) for every non-empty bucket in increasing order.
  template <typename Fn>
  void ForEachIndexedBucket(Fn&& fn) const {
    for (size_t g = 0; g < groups_.size(); ++g) {
      if (!groups_[g]) continue;
      const size_t n = GroupSize(g);
      const size_t base = g == 0 ? 0 : 2048 + (g - 1) * 1024;
      for (size_t i = 0; i < n; ++i) {
        if ((*groups_[g])[i] != 0) fn(base + i, (*groups_[g])[i]);
      }
    }
  }
  static size_t IndexedBucketCount();
  // Rebuilds a histogram from its serialized parts. Returns false (leaving *out unspecified)
  // when they are inconsistent: an index out of range or not increasing, a zero count, counts
  // that do not add up to `count`, or min/max outside the buckets' ranges.
  static bool FromParts(uint64_t count, uint64_t min, uint64_t max, uint64_t sum,
                        const std::vector<std::pair<uint64_t, uint64_t>>& buckets, Histogram* out);

 private:
  using Group = std::vector<uint64_t>;
  static size_t GroupSize(size_t g) { return g == 0 ? 2048 : 1024; }
  static uint64_t BucketLow(size_t g, size_t i);
  static uint64_t BucketHigh(size_t g, size_t i);
  static void Locate(uint64_t value, size_t* group, size_t* index);

  std::vector<std::unique_ptr<Group>> groups_;
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  uint64_t sum_ = 0;
};

}  // namespace loads::common
