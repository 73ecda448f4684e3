#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "loads/common/report.h"
#include "loads/common/stats.h"

namespace loads::common {
namespace {

RunInfo Info() {
  RunInfo info;
  info.test = "example.TestWebSite.test_es";
  info.duration_seconds = 2.0;
  info.users = {10};
  info.hits = {5};
  return info;
}

TEST(RunStats, CountsHitsByStatusErrorAndName) {
  RunStats s;
  s.RecordHit("GET /a", "GET", 200, HitError::kNone, 1000);
  s.RecordHit("GET /a", "GET", 500, HitError::kNone, 3000);
  s.RecordHit("GET /b", "GET", 0, HitError::kConnectionRefused, 0);
  s.RecordHit("send", "POST", 302, HitError::kNone, 1000);
  EXPECT_EQ(s.hits, 4u);
  const RunStats::StatusClasses get = {1, 0, 1, 0, 0, 1}, post = {0, 0, 0, 1, 0, 0};
  EXPECT_EQ(s.methods.at("GET"), get);
  EXPECT_EQ(s.methods.at("POST"), post);
  EXPECT_EQ(s.status_codes[200], 1u);
  EXPECT_EQ(s.status_codes[500], 1u);
  EXPECT_EQ(s.hit_errors[static_cast<size_t>(HitError::kConnectionRefused)], 1u);
  EXPECT_EQ(s.urls.at("GET /a").hits, 2u);
  EXPECT_EQ(s.urls.at("GET /a").errors, 1u);  // the 500
  EXPECT_EQ(s.urls.at("GET /b").errors, 1u);
  EXPECT_EQ(s.latency.Count(), 3u);  // refused hits have no latency
}

TEST(RunStats, BoundsUrlNames) {
  RunStats s;
  for (size_t i = 0; i < RunStats::kMaxUrlNames + 50; ++i) {
    s.RecordHit("GET /" + std::to_string(i), "GET", 200, HitError::kNone, 10);
  }
  EXPECT_EQ(s.urls.size(), RunStats::kMaxUrlNames + 1);
  EXPECT_EQ(s.urls.at(std::string(RunStats::kOtherUrls)).hits, 50u);
}

TEST(RunStats, BoundsMethods) {
  RunStats s, merged;
  for (size_t i = 0; i < RunStats::kMaxMethods + 4; ++i) {
    std::string method = "M";  // not "M" + to_string: GCC 12's false -Wrestrict at -O3
    method += std::to_string(i);
    s.RecordHit("x", method, 200, HitError::kNone, 10);
  }
  EXPECT_EQ(s.methods.size(), RunStats::kMaxMethods + 1);
  EXPECT_EQ(s.methods.at(std::string(RunStats::kOtherMethods))[2], 4u);
  merged.Merge(s);
  merged.Merge(s);
  EXPECT_EQ(merged.methods.size(), RunStats::kMaxMethods + 1);
  EXPECT_EQ(merged.methods.at(std::string(RunStats::kOtherMethods))[2], 8u);
}

TEST(RunStats, MergeAddsEverything) {
  RunStats a, b;
  a.RecordHit("x", "GET", 200, HitError::kNone, 10);
  a.RecordExecution(Outcome::kSuccess, "");
  a.IncrCounter("c", 2);
  b.RecordHit("x", "GET", 200, HitError::kNone, 20);
  b.RecordExecution(Outcome::kFailure, "AssertionError: boom");
  b.RecordExecution(Outcome::kFailure, "AssertionError: boom");
  b.IncrCounter("c", 3);
  b.ws_bytes_received = 7;
  a.Merge(b);
  EXPECT_EQ(a.hits, 2u);
  EXPECT_EQ(a.urls.at("x").hits, 2u);
  EXPECT_EQ(a.successes, 1u);
  EXPECT_EQ(a.failures, 2u);
  EXPECT_EQ(a.error_messages.at("AssertionError: boom"), 2u);
  EXPECT_EQ(a.counters.at("c"), 5);
  EXPECT_EQ(a.ws_bytes_received, 7u);
  EXPECT_EQ(a.Executions(), 3u);
}

TEST(Report, TextHasTheSeedLabels) {
  RunStats s;
  for (int i = 0; i < 50; ++i) s.RecordHit("GET http://h/", "GET", 200, HitError::kNone, 2'000'000);
  for (int i = 0; i < 48; ++i) s.RecordExecution(Outcome::kSuccess, "");
  s.RecordExecution(Outcome::kError, "std::runtime_error: rare");
  s.RecordExecution(Outcome::kFailure, "AssertionError: common");
  s.RecordExecution(Outcome::kFailure, "AssertionError: common");
  const std::string text = FormatTextReport(Info(), s);
  for (const char* label :
       {"Hits: 50\n", "Started: ", "Duration: 2.00 seconds\n", "Approximate Average RPS: 25\n",
        "Average request time: 0.002000s\n", "Opened web sockets: 0\n",
        "Bytes received via web sockets: 0\n", "Success: 48\n", "Errors: 1\n", "Failures: 2\n",
        "Tests: 51 executions"}) {
    EXPECT_NE(text.find(label), std::string::npos) << label << "\n" << text;
  }
  // The most common error comes first.
  EXPECT_LT(text.find("2 x AssertionError: common"), text.find("1 x std::runtime_error: rare"));
}

TEST(Report, JsonIsVersionedAndComplete) {
  RunStats s;
  s.RecordHit("GET http://h/", "GET", 200, HitError::kNone, 1'000'000);
  s.RecordHit("GET http://h/slow", "GET", 200, HitError::kNone, 9'000'000);
  s.RecordExecution(Outcome::kSuccess, "");
  s.IncrCounter("visits", 1);
  const auto doc = nlohmann::json::parse(FormatJsonReport(Info(), s));
  EXPECT_EQ(doc["format"], "loads.report");
  EXPECT_EQ(doc["version"], kJsonReportVersion);
  EXPECT_EQ(doc["hits"], 2);
  EXPECT_DOUBLE_EQ(doc["rps"].get<double>(), 1.0);
  EXPECT_EQ(doc["tests"]["success"], 1);
  EXPECT_EQ(doc["urls"][0]["name"], "GET http://h/slow");  // slowest first
  EXPECT_EQ(doc["counters"]["visits"], 1);
  EXPECT_EQ(doc["status_codes"]["200"], 2);
  EXPECT_NEAR(doc["latency_seconds"]["max"].get<double>(), 0.009, 1e-5);
  EXPECT_EQ(doc["plan"]["users"][0], 10);
}

TEST(Report, PlannedExecutionsIsTheSeedsProduct) {
  EXPECT_EQ(PlannedExecutions({100}, {10}), 1000u);
  EXPECT_EQ(PlannedExecutions({10, 20, 30}, {20}), 1200u);
  EXPECT_EQ(PlannedExecutions({2, 3}, {2, 1}), 15u);
  EXPECT_EQ(PlannedExecutions({5}, {}), 0u);
}

}  // namespace
}  // namespace loads::common
