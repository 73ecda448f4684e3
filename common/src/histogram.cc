#include "loads/common/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace loads::common {
namespace {
// Group 0 holds the exact values 0..2047; group g >= 1 holds the octave [2^(g+10), 2^(g+11)).
constexpr size_t kGroups = 64 - Histogram::kSubBucketBits;  // up to 2^64
uint64_t SaturatingAdd(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }
uint64_t SaturatingMul(uint64_t a, uint64_t b) {
  return (b != 0 && a > UINT64_MAX / b) ? UINT64_MAX : a * b;
}
}  // namespace

Histogram::Histogram() : groups_(kGroups) {}

Histogram::Histogram(const Histogram& other) : groups_(kGroups) { *this = other; }

Histogram& Histogram::operator=(const Histogram& other) {
  if (this == &other) return *this;
  groups_.clear();
  groups_.resize(kGroups);
  for (size_t g = 0; g < kGroups; ++g) {
    if (other.groups_[g]) groups_[g] = std::make_unique<Group>(*other.groups_[g]);
  }
  count_ = other.count_;
  min_ = other.min_;
  max_ = other.max_;
  sum_ = other.sum_;
  return *this;
}

void Histogram::Locate(uint64_t value, size_t* group, size_t* index) {
  if (value < 2048) {
    *group = 0;
    *index = static_cast<size_t>(value);
    return;
  }
  const int top_bit = 63 - std::countl_zero(value);  // >= 11
  const int shift = top_bit - kSubBucketBits;        // >= 1
  *group = static_cast<size_t>(shift);
  *index = static_cast<size_t>((value >> shift) - (uint64_t{1} << kSubBucketBits));
}

uint64_t Histogram::BucketLow(size_t g, size_t i) {
  if (g == 0) return i;
  return ((uint64_t{1} << kSubBucketBits) + i) << g;
}

uint64_t Histogram::BucketHigh(size_t g, size_t i) {
  if (g == 0) return i;
  return BucketLow(g, i) + ((uint64_t{1} << g) - 1);
}

void Histogram::Record(uint64_t value, uint64_t count) {
  if (count == 0) return;
  size_t g, i;
  Locate(value, &g, &i);
  if (groups_.empty()) groups_.resize(kGroups);  // a moved-from histogram is reusable
  auto& group = groups_[g];
  if (!group) group = std::make_unique<Group>(GroupSize(g), 0);
  (*group)[i] += count;
  count_ += count;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ = SaturatingAdd(sum_, SaturatingMul(value, count));
}

void Histogram::Merge(const Histogram& other) {
  if (other.count_ == 0) return;
  if (groups_.empty()) groups_.resize(kGroups);
  for (size_t g = 0; g < other.groups_.size(); ++g) {
    if (!other.groups_[g]) continue;
    auto& mine = groups_[g];
    if (!mine) {
      mine = std::make_unique<Group>(*other.groups_[g]);
      continue;
    }
    const Group& theirs = *other.groups_[g];
    for (size_t i = 0; i < theirs.size(); ++i) (*mine)[i] += theirs[i];
  }
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ = SaturatingAdd(sum_, other.sum_);
}

double Histogram::Mean() const {
  return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_);
}

size_t Histogram::IndexedBucketCount() { return 2048 + (kGroups - 1) * 1024; }

bool Histogram::FromParts(uint64_t count, uint64_t min, uint64_t max, uint64_t sum,
                          const std::vector<std::pair<uint64_t, uint64_t>>& buckets,
                          Histogram* out) {
  out->Clear();
  uint64_t total = 0;
  uint64_t lowest = UINT64_MAX;
  uint64_t highest = 0;
  for (size_t k = 0; k < buckets.size(); ++k) {
    const auto [index, n] = buckets[k];
    if (index >= IndexedBucketCount() || n == 0) return false;
    if (k > 0 && index <= buckets[k - 1].first) return false;
    const size_t g = index < 2048 ? 0 : 1 + (index - 2048) / 1024;
    const size_t i = index < 2048 ? index : (index - 2048) % 1024;
    auto& group = out->groups_[g];
    if (!group) group = std::make_unique<Group>(GroupSize(g), 0);
    (*group)[i] = n;
    if (total > UINT64_MAX - n) return false;
    total += n;
    lowest = std::min(lowest, BucketLow(g, i));
    highest = std::max(highest, BucketHigh(g, i));
  }
  if (total != count) return false;
  if (count == 0) return min == 0 && max == 0 && sum == 0;
  if (min > max || min < lowest || max > highest) return false;
  out->count_ = count;
  out->min_ = min;
  out->max_ = max;
  out->sum_ = sum;
  return true;
}

uint64_t Histogram::Percentile(double p) const {
  if (count_ == 0) return 0;
  p = std::clamp(p, 0.0, 100.0);
  // Nearest rank: the rank-th smallest value, rank in [1, count].
  uint64_t rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    if (!groups_[g]) continue;
    const Group& group = *groups_[g];
    for (size_t i = 0; i < group.size(); ++i) {
      seen += group[i];
      if (seen >= rank) return std::min(BucketHigh(g, i), max_);
    }
  }
  return max_;
}

void Histogram::Clear() {
  groups_.clear();
  groups_.resize(kGroups);
  count_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
  sum_ = 0;
}

}  // namespace loads::common
