// The engine's load model, run in-process with test cases that need no server.

#include "loads/worker/engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace loads::worker {
namespace {

std::atomic<int> g_alive{0};
std::atomic<int> g_max_alive{0};
std::atomic<int> g_teardowns{0};

class Counting : public TestCase {
 public:
  Counting() {
    const int now = ++g_alive;
    int seen = g_max_alive.load();
    while (now > seen && !g_max_alive.compare_exchange_weak(seen, now)) {
    }
  }
  ~Counting() override { --g_alive; }
  void Run() {
    incr_counter("runs");
    sleep(std::chrono::milliseconds(1));
  }
};

class Outcomes : public TestCase {
 public:
  void setUp() override {
    if (user_index() == 2) throw std::runtime_error("setUp broke");
  }
  void tearDown() override { ++g_teardowns; }
  void Run() {
    if (user_index() == 0) assert_equal(1 + 1, 3, "arithmetic");
    if (user_index() == 1) throw std::out_of_range("deliberate");
  }
};

template <typename T>
TestSpec Spec() {
  return TestSpec{"unit.Test.run",
                  []() -> std::unique_ptr<TestCase> { return std::make_unique<T>(); },
                  [](TestCase& t) { static_cast<T&>(t).Run(); }};
}

RunResult RunPlan(EngineOptions options, const TestSpec& spec, const std::atomic<bool>& stop) {
  Engine engine(std::move(options));
  return engine.Run(spec, stop, nullptr, std::chrono::milliseconds(20));
}

TEST(Engine, RunsTheSeedsTotalsAndCyclesOneAfterTheOther) {
  g_alive = 0;
  g_max_alive = 0;
  EngineOptions options;
  options.users = {3, 5};
  options.hits = {2, 1};
  options.threads = 2;
  std::atomic<bool> stop{false};
  auto result = RunPlan(options, Spec<Counting>(), stop);
  EXPECT_EQ(result.stats.Executions(), 24u);  // (3 + 5) * (2 + 1)
  EXPECT_EQ(result.stats.successes, 24u);
  EXPECT_EQ(result.stats.counters.at("runs"), 24);
  // No user of the first cycle is still alive when the second starts.
  EXPECT_EQ(g_max_alive.load(), 5);
  EXPECT_EQ(g_alive.load(), 0);
  EXPECT_FALSE(result.info.interrupted);
}

TEST(Engine, ClassifiesOutcomes) {
  g_teardowns = 0;
  EngineOptions options;
  options.users = {4};
  options.hits = {3};
  std::atomic<bool> stop{false};
  auto result = RunPlan(options, Spec<Outcomes>(), stop);
  EXPECT_EQ(result.stats.failures, 3u);
  EXPECT_EQ(result.stats.errors, 6u);
  EXPECT_EQ(result.stats.successes, 3u);
  EXPECT_EQ(g_teardowns.load(), 9);  // not after a failed setUp
  ASSERT_EQ(result.stats.error_messages.size(), 3u);
  bool found_assertion = false;
  for (const auto& [message, count] : result.stats.error_messages) {
    EXPECT_EQ(count, 3u) << message;
    if (message.starts_with("AssertionError: arithmetic: 2 != 3 (engine_test.cc:")) {
      found_assertion = true;
    }
  }
  EXPECT_TRUE(found_assertion);
  EXPECT_EQ(result.stats.error_messages.count("std::out_of_range: deliberate"), 1u);
  EXPECT_EQ(result.stats.error_messages.count("std::runtime_error: setUp broke"), 1u);
}

TEST(Engine, DurationModeLoopsUntilTheCycleEnds) {
  EngineOptions options;
  options.users = {4};
  options.hits.clear();
  options.duration = 0.3;
  std::atomic<bool> stop{false};
  auto result = RunPlan(options, Spec<Counting>(), stop);
  EXPECT_GE(result.info.duration_seconds, 0.3);
  EXPECT_LT(result.info.duration_seconds, 2.0);
  EXPECT_GT(result.stats.successes, 20u);  // 1 ms per execution, 4 users
}

TEST(Engine, StopInterruptsPromptly) {
  EngineOptions options;
  options.users = {8};
  options.hits.clear();
  options.duration = 30;
  std::atomic<bool> stop{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop = true;
  });
  auto result = RunPlan(options, Spec<Counting>(), stop);
  stopper.join();
  EXPECT_TRUE(result.info.interrupted);
  EXPECT_LT(result.info.duration_seconds, 5.0);
}

TEST(Engine, IntervalsAddUpToTheRun) {
  EngineOptions options;
  options.users = {4};
  options.hits.clear();
  options.duration = 0.3;
  std::atomic<bool> stop{false};
  Engine engine(options);
  std::vector<Interval> intervals;
  engine.OnInterval([&](const Interval& i) { intervals.push_back(i); },
                    std::chrono::milliseconds(20));
  auto result = engine.Run(Spec<Counting>(), stop, nullptr, std::chrono::milliseconds(20));
  ASSERT_GE(intervals.size(), 5u);
  uint64_t executions = 0;
  int64_t runs = 0;
  for (size_t i = 0; i < intervals.size(); ++i) {
    executions += intervals[i].stats.Executions();
    if (intervals[i].stats.counters.count("runs")) runs += intervals[i].stats.counters.at("runs");
    EXPECT_EQ(intervals[i].final, i + 1 == intervals.size());
    EXPECT_LE(intervals[i].start, intervals[i].end);
    if (i > 0) {
      EXPECT_EQ(intervals[i].start, intervals[i - 1].end);
    }
  }
  EXPECT_GT(executions, 0u);
  EXPECT_EQ(executions, result.stats.Executions());
  EXPECT_EQ(runs, result.stats.counters.at("runs"));
}

}  // namespace
}  // namespace loads::worker
