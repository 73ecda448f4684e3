// Thresholds (loads/common/threshold.h): what parses, what is refused and why, and verdicts on
// known statistics.

#include "loads/common/threshold.h"

#include <gtest/gtest.h>

#include "loads/common/report.h"

namespace loads::common {
namespace {

TEST(Threshold, Parses) {
  auto t = ParseThreshold("p99.9<250ms");
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->measure, Threshold::Measure::kPercentile);
  EXPECT_DOUBLE_EQ(t->percentile, 99.9);
  EXPECT_EQ(t->op, Threshold::Op::kLess);
  EXPECT_DOUBLE_EQ(t->value, 0.25);
  EXPECT_TRUE(t->name.empty());

  t = ParseThreshold("  GET http://h/items?a=1 mean<=1.5s ");
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->name, "GET http://h/items?a=1");
  EXPECT_EQ(t->text, "GET http://h/items?a=1 mean<=1.5s");
  EXPECT_EQ(t->op, Threshold::Op::kLessOrEqual);
  EXPECT_DOUBLE_EQ(t->value, 1.5);

  t = ParseThreshold("errors<1%");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->percent);
  EXPECT_DOUBLE_EQ(t->value, 0.01);
  t = ParseThreshold("failures==0");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->percent);
  EXPECT_EQ(t->op, Threshold::Op::kEqual);
  EXPECT_TRUE(ParseThreshold("rps>=500/s").ok());
  EXPECT_TRUE(ParseThreshold("max<800us").ok());
  EXPECT_TRUE(ParseThreshold("dropped<0.5%").ok());

  t = ParseThreshold("GET http://h/x p99<1s abort:1.5m");
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->name, "GET http://h/x");
  EXPECT_TRUE(t->abort);
  EXPECT_DOUBLE_EQ(t->abort_after, 90);
  t = ParseThreshold("errors==0 abort");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->abort);
  EXPECT_EQ(t->abort_after, 0);
  EXPECT_TRUE(t->name.empty());
}

TEST(Threshold, RefusesWithOneLineSayingWhy) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "empty"},
      {"p99", "expected MEASURE OP VALUE"},
      {"p99<250", "a latency needs its unit"},
      {"p0<1s", "a percentile is p1 to p100"},
      {"p101<1s", "a percentile is p1 to p100"},
      {"latency<1s", "unknown measure 'latency'"},
      {"p99=<1s", "expected one of the operators"},
      {"p99!1s", "expected MEASURE OP VALUE"},
      {"errors<101%", "a share is 0% to 100%"},
      {"errors<1ms", "expected a count, or a share"},
      {"rps>fast", "expected a non-negative number"},
      {"rps>5ms", "rps is requests per second"},
      {"GET /x rps>5", "only latencies and errors are measured per hit name"},
      {"p99<-1ms", "expected a non-negative number"},
      {"errors==0 abort:soon", "an abort delay is 0 to 86400 seconds"},
      {"errors==0 aborts", "expected abort or abort:DELAY"},
  };
  for (const auto& [text, why] : cases) {
    auto t = ParseThreshold(text);
    ASSERT_FALSE(t.ok()) << text;
    EXPECT_NE(t.status().message().find(why), std::string::npos)
        << text << " -> " << t.status().message();
  }
}

TEST(Threshold, VerdictsOnKnownStatistics) {
  RunStats stats;
  for (uint64_t ms = 1; ms <= 100; ++ms) {
    stats.RecordHit("GET http://h/a", "GET", 200, HitError::kNone, ms * 1'000'000);
  }
  stats.RecordHit("GET http://h/a", "GET", 0, HitError::kTimeout, 0);
  for (int i = 0; i < 99; ++i) stats.RecordExecution(Outcome::kSuccess, "");
  stats.RecordExecution(Outcome::kError, "timeout");
  RunInfo info;
  info.duration_seconds = 2;

  const auto verdict = [&](const char* text) {
    auto t = ParseThreshold(text);
    EXPECT_TRUE(t.ok()) << text;
    return EvaluateThreshold(*t, info, stats);
  };
  auto r = verdict("p50<=51ms");  // the histogram gives a bucket's highest value: 50.004 ms
  EXPECT_TRUE(r.passed) << r.observed_text;
  EXPECT_EQ(*r.observed, static_cast<double>(stats.latency.Percentile(50)) / 1e9);
  EXPECT_FALSE(verdict("p99<99ms").passed);
  EXPECT_TRUE(verdict("max<=100ms").passed);
  r = verdict("errors<1%");  // 1 of 100 executions
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.observed_text, "1.00% (1 of 100)");
  EXPECT_TRUE(verdict("errors<=1%").passed);
  EXPECT_TRUE(verdict("failures==0").passed);
  r = verdict("hit_errors==1");
  EXPECT_TRUE(r.passed) << r.observed_text;
  r = verdict("rps>50");  // 101 hits in 2 s
  EXPECT_TRUE(r.passed);
  EXPECT_EQ(r.observed_text, "50.5/s");
  EXPECT_TRUE(verdict("GET http://h/a p90<95ms").passed);
  r = verdict("GET http://h/b p90<95ms");
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.observed_text, "no hit named 'GET http://h/b'");
  EXPECT_FALSE(EvaluateThreshold(*ParseThreshold("p99<1s"), info, RunStats{}).passed);
}

TEST(Threshold, OnlyAbortThresholdsPastTheirDelayStopARun) {
  RunStats stats;
  stats.RecordExecution(Outcome::kSuccess, "");
  stats.RecordExecution(Outcome::kError, "timeout");  // 50% errors
  std::vector<Threshold> thresholds;
  for (const char* text : {"errors<1%", "errors<10% abort:5s", "errors<20% abort"}) {
    auto t = ParseThreshold(text);
    ASSERT_TRUE(t.ok()) << text;
    thresholds.push_back(*t);
  }
  RunInfo so_far;
  so_far.duration_seconds = 1;
  // The first fails but does not abort; the second is not judged before 5 s.
  const Threshold* failed = FirstFailedAbort(thresholds, so_far, stats);
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ(failed->text, "errors<20% abort");
  so_far.duration_seconds = 5;
  EXPECT_EQ(FirstFailedAbort(thresholds, so_far, stats)->text, "errors<10% abort:5s");
  RunStats clean;
  clean.RecordExecution(Outcome::kSuccess, "");
  EXPECT_EQ(FirstFailedAbort(thresholds, so_far, clean), nullptr);

  // The threshold that stopped a run fails in its report, whatever the last results say.
  const auto results = EvaluateThresholds(thresholds, so_far, clean, "errors<20% abort", 1.5);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0].passed);
  EXPECT_TRUE(results[1].passed);
  EXPECT_FALSE(results[1].aborted_at);
  EXPECT_FALSE(results[2].passed);
  EXPECT_EQ(results[2].aborted_at, 1.5);
}

}  // namespace
}  // namespace loads::common
