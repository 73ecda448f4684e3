// The controller's SQLite state folder: what is saved is loaded back whole (by a second store,
// as after a restart), a second controller cannot take the same folder, and deletions stick.

#include "loads/controller/state_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace loads::controller {
namespace {

std::string TempDir() {
  std::string dir = ::testing::TempDir() + "/loads-state-XXXXXX";
  EXPECT_NE(mkdtemp(dir.data()), nullptr);
  return dir + "/nested/state";  // created by the store
}

RunRecord Record(const std::string& id) {
  RunRecord r;
  RunView& v = r.view;
  v.run_id = id;
  v.state = RunState::kRunning;
  v.test = "GET http://t/";
  v.planned_users = 3;
  v.spec = std::string("\x0a\x00binary\xff", 9);
  v.library_digest = "abc";
  v.workers = {"w0", "w1"};
  v.lost_workers = {"w1"};
  v.left_workers = {"w0"};
  v.degraded = true;
  v.error = "";
  v.snapshots = 5;
  v.duplicates = 1;
  v.late_snapshots = 2;
  v.restarts = 1;
  v.missing_executions = 7;
  v.started = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));
  v.ended = v.started + std::chrono::seconds(3);
  v.stats.RecordHit("GET /", "GET", 200, common::HitError::kNone, 1234);
  v.stats.RecordExecution(common::Outcome::kFailure, "assertion");
  v.report_json = "{}";
  v.load_start = v.started + std::chrono::milliseconds(200);
  v.aborted_by = "errors==0 abort";
  v.aborted_at = 1.25;
  common::RunStats second;
  second.RecordHit("GET /", "GET", 200, common::HitError::kNone, 5'000'000);
  v.series.Add(0.5, second, 3);
  v.series.Add(1.5, second, 2);  // closes second 0; second 1 stays open
  v.series.Add(1.7, second, 2);
  r.policy = LossPolicy::kFail;
  r.stop_requested = true;
  RunMember m;
  m.merged_seq = 9;
  m.planned_executions = 10;
  m.executions = 4;
  m.ready = true;
  m.done = true;
  m.ok = false;
  m.left = true;
  m.done_seq = 10;
  m.message = "stopped";
  m.lost = true;
  m.lost_why = "silent";
  r.members["w1"] = m;
  return r;
}

TEST(SqliteStore, WhatIsSavedIsLoadedBackAfterARestart) {
  const std::string dir = TempDir();
  {
    auto store = OpenSqliteStore(dir);
    ASSERT_TRUE(store.ok()) << store.status().message();
    ASSERT_TRUE((*store)->Save({Record("a"), Record("b")}).ok());
    RunRecord changed = Record("a");
    changed.view.state = RunState::kDone;
    changed.view.stats.RecordHit("GET /", "GET", 200, common::HitError::kNone, 99);
    ASSERT_TRUE((*store)->Save({changed}).ok());
    ASSERT_TRUE((*store)->Delete({"b"}).ok());
  }
  auto store = OpenSqliteStore(dir);
  ASSERT_TRUE(store.ok()) << store.status().message();
  auto loaded = (*store)->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_EQ(loaded->size(), 1u);
  const RunRecord& r = (*loaded)[0];
  const RunRecord want = Record("a");
  EXPECT_EQ(r.view.run_id, "a");
  EXPECT_EQ(r.view.state, RunState::kDone);
  EXPECT_EQ(r.view.spec, want.view.spec);
  EXPECT_EQ(r.view.library_digest, "abc");
  EXPECT_EQ(r.view.workers, want.view.workers);
  EXPECT_EQ(r.view.lost_workers, want.view.lost_workers);
  EXPECT_EQ(r.view.left_workers, want.view.left_workers);
  EXPECT_EQ(r.view.stats.hits, 2u);
  EXPECT_EQ(r.view.stats.latency.Count(), 2u);
  EXPECT_EQ(r.view.stats.failures, 1u);
  EXPECT_EQ(r.view.missing_executions, std::optional<uint64_t>(7));
  EXPECT_EQ(r.view.restarts, 1u);
  EXPECT_EQ(r.view.started, want.view.started);
  EXPECT_EQ(r.view.ended, want.view.ended);
  EXPECT_EQ(r.view.report_json, "{}");
  EXPECT_EQ(r.view.load_start, want.view.load_start);
  EXPECT_EQ(r.view.aborted_by, "errors==0 abort");
  EXPECT_EQ(r.view.aborted_at, 1.25);
  // The closed second whole; the open one's counts (its latency is not kept).
  const common::Series series = common::SeriesBuilder(r.view.series).Finish();
  ASSERT_EQ(series.size(), 2u);
  EXPECT_EQ(series.hits, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(series.active_users, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(series.p50[0], want.view.series.Peek().p50[0]);
  EXPECT_FALSE(series.p50[1].has_value());
  EXPECT_EQ(r.policy, LossPolicy::kFail);
  EXPECT_TRUE(r.stop_requested);
  const RunMember& m = r.members.at("w1");
  EXPECT_EQ(m.merged_seq, 9u);
  EXPECT_EQ(m.planned_executions, 10u);
  EXPECT_EQ(m.done_seq, 10u);
  EXPECT_TRUE(m.lost);
  EXPECT_EQ(m.lost_why, "silent");
  EXPECT_EQ(m.message, "stopped");
}

TEST(SqliteStore, ASecondControllerCannotTakeTheSameFolder) {
  const std::string dir = TempDir();
  auto first = OpenSqliteStore(dir);
  ASSERT_TRUE(first.ok());
  auto second = OpenSqliteStore(dir);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("in use by another loads-controller (pid " +
                                           std::to_string(getpid()) + ")"),
            std::string::npos)
      << second.status().message();
}

TEST(SqliteStore, DefaultFolderFollowsXdg) {
  setenv("XDG_DATA_HOME", "/data", 1);
  EXPECT_EQ(DefaultStateDir(), "/data/loads/controller");
  unsetenv("XDG_DATA_HOME");
  setenv("HOME", "/home/ana", 1);
  EXPECT_EQ(DefaultStateDir(), "/home/ana/.local/share/loads/controller");
}

}  // namespace
}  // namespace loads::controller
