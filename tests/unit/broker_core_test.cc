// The controller's broker as a state machine, driven frame by frame with a fake clock and a
// recording transport (tests/fakes): registration and refusals, the start barrier, in-order
// exact merging, acknowledgements only after a commit, every way a run ends (done, partial,
// failed, stopped), deadlines, late and hostile snapshots, and a restart from the committed
// state. Each test runs in milliseconds.

#include "loads/controller/broker_core.h"

#include <gtest/gtest.h>

#include "loads/common/snapshot.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_transport.h"

namespace loads::controller {
namespace {

using common::ControlMessage;
using common::MessageType;
using namespace std::chrono_literals;

std::string Route(const std::string& worker) { return worker + "/0123456789abcdef"; }

// What a worker would send, encoded.
std::string Hello(const std::string& worker, const std::string& run = "",
                  const std::string& token = "") {
  ControlMessage m;
  m.type = MessageType::kHello;
  m.worker_id = worker;
  m.token = token;
  m.threads = 2;
  m.sdk_version = "0.1.0";
  m.run_id = run;
  return common::EncodeControl(m);
}

std::string Control(MessageType type, const std::string& worker, const std::string& run = "") {
  ControlMessage m;
  m.type = type;
  m.worker_id = worker;
  m.run_id = run;
  return common::EncodeControl(m);
}

std::string Done(const std::string& worker, const std::string& run, uint64_t seq, bool ok = true,
                 const std::string& message = "", bool left = false) {
  ControlMessage m;
  m.type = MessageType::kDone;
  m.worker_id = worker;
  m.run_id = run;
  m.seq = seq;
  m.ok = ok;
  m.message = message;
  m.left = left;
  return common::EncodeControl(m);
}

std::string Snap(const std::string& worker, const std::string& run, uint64_t seq,
                 uint64_t executions, bool final = false, uint64_t users = 1) {
  common::Snapshot s;
  s.run_id = run;
  s.worker_id = worker;
  s.sequence = seq;
  s.interval_start = 1'700'000'000'000'000'000;
  s.interval_end = s.interval_start + 1'000'000'000;
  s.final = final;
  s.active_users = final ? 0 : users;
  for (uint64_t i = 0; i < executions; ++i) {
    s.stats.RecordHit("GET /", "GET", 200, common::HitError::kNone, 1000 + i);
    s.stats.RecordExecution(common::Outcome::kSuccess, "");
  }
  return common::EncodeSnapshot(s);
}

class BrokerCoreTest : public ::testing::Test {
 protected:
  BrokerCoreTest() { Make(); }

  void Make(std::vector<RunRecord> restored = {}) {
    core_ = std::make_unique<BrokerCore>(options_, &clock_, &transport_, nullptr);
    core_->SetReportFormatter([](const RunView& v) { return "report of " + v.run_id; });
    core_->Restore(std::move(restored));
  }

  void From(const std::string& worker, const std::string& frame) {
    core_->OnFrame(Route(worker), frame);
  }

  // Registers workers w0..w(n-1) and clears what they were sent.
  void Register(int n) {
    for (int i = 0; i < n; ++i) {
      const std::string w = "w" + std::to_string(i);
      From(w, Hello(w));
      auto sent = transport_.Take(Route(w));
      ASSERT_EQ(sent.size(), 1u);
      EXPECT_EQ(sent[0].type, MessageType::kWelcome);
    }
  }

  // Writes what changed (as the broker's thread does) and lets the acknowledgements go; returns
  // the records written.
  std::vector<RunRecord> Commit(bool ok = true) {
    CommitBatch batch = core_->TakeCommit();
    std::vector<RunRecord> runs = batch.runs;
    if (ok) deleted_.insert(deleted_.end(), batch.deleted.begin(), batch.deleted.end());
    core_->Committed(std::move(batch), ok);
    for (auto& r : runs) stored_[r.view.run_id] = r;
    return runs;
  }

  void Tick(std::chrono::milliseconds d) {
    // In steps, as the real loop ticks, so that every deadline is seen on its way.
    for (auto left = d; left > 0ms; left -= std::min(left, 100ms)) {
      clock_.Advance(std::min(left, 100ms));
      // Registered workers keep talking, unless a test has silenced them.
      for (const auto& w : talking_) core_->OnFrame(Route(w), Control(MessageType::kHeartbeat, w));
      core_->Tick();
      Commit();
    }
  }

  RunRequest Request(std::vector<int64_t> users, std::vector<int64_t> hits, int workers,
                     LossPolicy policy = LossPolicy::kContinue) {
    RunRequest r;
    r.plan.test = "GET http://t/";
    r.plan.url = "http://t/";
    r.plan.users = std::move(users);
    r.plan.hits = std::move(hits);
    if (r.plan.hits.empty()) r.plan.duration = 10;
    r.workers = workers;
    r.loss_policy = policy;
    r.spec = "opaque";
    return r;
  }

  // Starts run "r" on w0..w(n-1), all ready: returns once `start` was sent.
  void StartRunning(int n, std::vector<int64_t> hits = {10},
                    LossPolicy policy = LossPolicy::kContinue) {
    Register(n);
    ASSERT_TRUE(core_->StartRun("r", Request({static_cast<int64_t>(n)}, hits, n, policy)).ok());
    for (int i = 0; i < n; ++i) {
      const std::string w = "w" + std::to_string(i);
      talking_.push_back(w);
      auto sent = transport_.Take(Route(w));
      ASSERT_EQ(sent.size(), 1u);
      ASSERT_EQ(sent[0].type, MessageType::kAssign);
      EXPECT_EQ(sent[0].assignment->users, std::vector<int64_t>{1});
      EXPECT_EQ(sent[0].assignment->threads, 1);  // its capacity (2), at most its users (1)
      From(w, Control(MessageType::kReady, w, "r"));
    }
    for (int i = 0; i < n; ++i) {
      auto sent = transport_.Take(Route("w" + std::to_string(i)));
      ASSERT_EQ(sent.size(), 1u);
      EXPECT_EQ(sent[0].type, MessageType::kStart);
    }
    EXPECT_EQ(core_->GetRun("r")->state, RunState::kRunning);
  }

  RunView Run() { return *core_->GetRun("r"); }
  // The run once what changed is stored, as a client sees it from the broker's thread.
  RunView Stored() {
    Commit();
    return Run();
  }

  BrokerOptions options_ = [] {
    BrokerOptions o;
    o.sdk_version = "0.1.3";
    return o;
  }();
  testing::FakeClock clock_;
  testing::FakeTransport transport_;
  std::unique_ptr<BrokerCore> core_;
  std::vector<std::string> talking_;
  std::map<std::string, RunRecord> stored_;
  std::vector<std::string> deleted_;
};

TEST_F(BrokerCoreTest, RefusesWrongTokensAndOtherSdksAndSaysWhy) {
  options_.token = "s3cret";
  Make();
  From("a", Hello("a", "", "guess"));
  auto sent = transport_.Take(Route("a"));
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].type, MessageType::kRefused);
  EXPECT_NE(sent[0].message.find("wrong token"), std::string::npos);
  ControlMessage old;
  old.type = MessageType::kHello;
  old.worker_id = "b";
  old.token = "s3cret";
  old.threads = 1;
  old.sdk_version = "0.2.0";
  From("b", common::EncodeControl(old));
  sent = transport_.Take(Route("b"));
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].type, MessageType::kRefused);
  EXPECT_NE(sent[0].message.find("SDK 0.2.0"), std::string::npos);
  EXPECT_TRUE(core_->ListWorkers().empty());
  EXPECT_EQ(core_->dropped(), 2u);
  From("c", Hello("c", "", "s3cret"));
  EXPECT_EQ(core_->ListWorkers().size(), 1u);
}

TEST_F(BrokerCoreTest, NothingCountsFromAConnectionThatDidNotSayHello) {
  Register(1);
  // Another connection claiming w0's name, and one nobody knows: asked to say hello, not heard.
  core_->OnFrame("w0/intruder", Control(MessageType::kHeartbeat, "w0"));
  core_->OnFrame("w0/intruder", Snap("w0", "r", 1, 5));
  auto sent = transport_.Take("w0/intruder");
  ASSERT_EQ(sent.size(), 1u);  // one rejoin a second, not one per frame
  EXPECT_EQ(sent[0].type, MessageType::kRejoin);
  // w0's own connection cannot speak for another worker either.
  ASSERT_TRUE(core_->StartRun("r", Request({1}, {1}, 1)).ok());
  From("w0", Control(MessageType::kReady, "w0", "r"));
  From("w0", Snap("w9", "r", 1, 1));
  EXPECT_EQ(Run().snapshots, 0u);
  EXPECT_EQ(core_->dropped(), 3u);
}

TEST_F(BrokerCoreTest, MergesInOrderExactlyAndAcknowledgesOnlyWhatIsCommitted) {
  StartRunning(2);
  From("w0", Snap("w0", "r", 1, 3));
  From("w0", Snap("w0", "r", 1, 3));  // a duplicate: counted once
  From("w0", Snap("w0", "r", 3, 4));  // out of order: refused until 2 arrives
  EXPECT_EQ(Run().stats.hits, 3u);
  EXPECT_EQ(Run().duplicates, 1u);
  // Nothing is acknowledged before the commit.
  EXPECT_TRUE(transport_.Take(Route("w0")).empty());
  Commit();
  auto acks = transport_.Take(Route("w0"));
  ASSERT_EQ(acks.size(), 2u);
  EXPECT_EQ(acks.back().type, MessageType::kAck);
  EXPECT_EQ(acks.back().seq, 1u);
  EXPECT_FALSE(acks.back().closed);
  // A failed write holds the acknowledgements back until a write succeeds.
  From("w0", Snap("w0", "r", 2, 2));
  Commit(/*ok=*/false);
  EXPECT_TRUE(transport_.Take(Route("w0")).empty());
  Commit();
  acks = transport_.Take(Route("w0"));
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].seq, 2u);
  From("w0", Snap("w0", "r", 3, 4, /*final=*/true));
  From("w0", Done("w0", "r", 3));
  From("w1", Snap("w1", "r", 1, 10, true));
  From("w1", Done("w1", "r", 1));
  const RunView run = Stored();
  EXPECT_EQ(run.state, RunState::kDone);
  EXPECT_EQ(run.stats.hits, 19u);
  EXPECT_EQ(run.stats.latency.Count(), 19u);
  EXPECT_EQ(run.report_json, "report of r");
  EXPECT_FALSE(run.missing_executions);
  Commit();
  acks = transport_.Take(Route("w1"));
  ASSERT_EQ(acks.size(), 2u);  // its final snapshot, then its done
  EXPECT_FALSE(acks[0].closed);
  EXPECT_TRUE(acks[1].closed);                 // w1 may forget the run
  EXPECT_EQ(transport_.published.size(), 4u);  // each merged snapshot once
  for (const auto& w : core_->ListWorkers()) EXPECT_EQ(w.run_id, "");
}

TEST_F(BrokerCoreTest, AFinishedRunNeverChanges) {
  StartRunning(1);
  From("w0", Snap("w0", "r", 1, 5, true));
  From("w0", Done("w0", "r", 1));
  ASSERT_EQ(Stored().state, RunState::kDone);
  Commit();
  transport_.Take(Route("w0"));
  From("w0", Snap("w0", "r", 2, 17));
  From("w0", Done("w0", "r", 2));
  const RunView run = Stored();
  EXPECT_EQ(run.state, RunState::kDone);
  EXPECT_EQ(run.stats.hits, 5u);
  EXPECT_EQ(run.late_snapshots, 1u);
  Commit();
  for (const auto& m : transport_.Take(Route("w0"))) {
    EXPECT_EQ(m.type, MessageType::kAck);
    EXPECT_TRUE(m.closed);  // forget it
  }
}

TEST_F(BrokerCoreTest, ARunIsSeenOverOnlyOnceItsEndIsStored) {
  StartRunning(1);
  From("w0", Snap("w0", "r", 1, 5, true));
  From("w0", Done("w0", "r", 1));
  // Over inside, not yet stored: a client still sees it running (a restart now would find it
  // running, and its worker would send its results again).
  EXPECT_EQ(Run().state, RunState::kRunning);
  EXPECT_FALSE(core_->IsRunOver("r"));
  Commit(/*ok=*/false);
  EXPECT_EQ(Run().state, RunState::kRunning);
  EXPECT_TRUE(transport_.Take(Route("w0")).empty());  // nor is the worker told to forget it
  Commit();
  EXPECT_EQ(Run().state, RunState::kDone);
  EXPECT_TRUE(core_->IsRunOver("r"));
  EXPECT_EQ(stored_.at("r").view.state, RunState::kDone);
}

TEST_F(BrokerCoreTest, DoneWaitsForTheFinalSnapshot) {
  StartRunning(1);
  From("w0", Done("w0", "r", 2));
  From("w0", Snap("w0", "r", 1, 1));
  EXPECT_EQ(Run().state, RunState::kRunning);
  From("w0", Snap("w0", "r", 2, 1, true));
  EXPECT_EQ(Stored().state, RunState::kDone);
  EXPECT_EQ(Run().stats.hits, 2u);
}

TEST_F(BrokerCoreTest, ALostWorkerMakesThePartialRunSayWhatIsMissing) {
  StartRunning(2, {10});
  From("w1", Snap("w1", "r", 1, 4));
  talking_ = {"w0"};  // w1 falls silent
  Tick(3100ms);
  EXPECT_EQ(Run().lost_workers, std::vector<std::string>{"w1"});
  // Nothing of it counts any more, even if it comes back.
  From("w1", Snap("w1", "r", 2, 6, true));
  From("w0", Snap("w0", "r", 1, 10, true));
  From("w0", Done("w0", "r", 1));
  const RunView run = Stored();
  EXPECT_EQ(run.state, RunState::kPartial);
  EXPECT_TRUE(run.degraded);
  EXPECT_EQ(run.stats.hits, 14u);
  ASSERT_TRUE(run.missing_executions);
  EXPECT_EQ(*run.missing_executions, 6u);  // 10 planned for w1, 4 reported
  auto sent = transport_.Take(Route("w1"));
  ASSERT_FALSE(sent.empty());
  EXPECT_EQ(sent.back().type, MessageType::kRejoin);  // it is told to register again
  // Its hello naming the run is welcomed without it: it stops loading the target for it.
  From("w1", Hello("w1", "r"));
  sent = transport_.Take(Route("w1"));
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].type, MessageType::kWelcome);
  EXPECT_EQ(sent[0].run_id, "");
}

TEST_F(BrokerCoreTest, EveryWorkerLostFailsTheRun) {
  StartRunning(2);
  talking_.clear();
  Tick(3100ms);
  const RunView run = Stored();
  EXPECT_EQ(run.state, RunState::kFailed);
  EXPECT_NE(run.error.find("every worker was lost"), std::string::npos) << run.error;
}

TEST_F(BrokerCoreTest, LossPolicyFailStopsTheOthersAndTellsTheLostOne) {
  StartRunning(2, {}, LossPolicy::kFail);
  talking_ = {"w0"};
  Tick(3100ms);
  EXPECT_NE(Run().error.find("worker w1 was lost"), std::string::npos) << Run().error;
  auto to_w0 = transport_.Take(Route("w0"));
  ASSERT_FALSE(to_w0.empty());
  EXPECT_EQ(to_w0.back().type, MessageType::kStop);
  // w0 answers the stop as a stopped worker does: the run fails for the loss, not for that.
  From("w0", Snap("w0", "r", 1, 3, true));
  From("w0", Done("w0", "r", 1, false, "stopped"));
  EXPECT_EQ(Stored().state, RunState::kFailed);
  EXPECT_EQ(Run().stats.hits, 3u);
}

TEST_F(BrokerCoreTest, StopEndsARunInAnyState) {
  // Assigning, never ready: the stop is sent, and its deadline ends the run.
  Register(1);
  ASSERT_TRUE(core_->StartRun("r", Request({1}, {1}, 1)).ok());
  talking_ = {"w0"};
  ASSERT_TRUE(core_->StopRun("r").ok());
  EXPECT_EQ(Run().state, RunState::kAssigning);
  Tick(10100ms);
  EXPECT_EQ(Stored().state, RunState::kStopped);
  // Running: a worker that answers "stopped" with ok=false does not make it FAILED.
  talking_.clear();
  core_ = nullptr;
  transport_.sent.clear();
  Make();
  StartRunning(1);
  ASSERT_TRUE(core_->StopRun("r").ok());
  From("w0", Snap("w0", "r", 1, 2, true));
  From("w0", Done("w0", "r", 1, false, "stopped"));
  EXPECT_EQ(Stored().state, RunState::kStopped);
  EXPECT_TRUE(core_->StopRun("r").ok());  // over: nothing to do
  EXPECT_EQ(core_->StopRun("nope").code(), StatusCode::kNotFound);
}

TEST_F(BrokerCoreTest, AWorkerThatNeverGetsReadyFailsTheRunInTime) {
  Register(2);
  talking_ = {"w0", "w1"};
  ASSERT_TRUE(core_->StartRun("r", Request({2}, {1}, 2)).ok());
  From("w0", Control(MessageType::kReady, "w0", "r"));
  Tick(59'000ms);
  EXPECT_EQ(Run().state, RunState::kAssigning);
  Tick(1'100ms);
  EXPECT_NE(Run().error.find("w1 did not load the test within 60 s"), std::string::npos)
      << Run().error;
  // Both are told to stop; they answer, and it is over.
  From("w0", Done("w0", "r", 0, false, "stopped before it started"));
  From("w1", Done("w1", "r", 0, false, "stopped before it started"));
  EXPECT_EQ(Stored().state, RunState::kFailed);
}

TEST_F(BrokerCoreTest, AWorkerThatLeftCleanlyDoesNotDegradeTheRun) {
  StartRunning(2);
  From("w0", Snap("w0", "r", 1, 2, true));
  From("w0", Done("w0", "r", 1, true, "the worker is shutting down", /*left=*/true));
  From("w0", Control(MessageType::kBye, "w0"));
  From("w1", Snap("w1", "r", 1, 10, true));
  From("w1", Done("w1", "r", 1));
  const RunView run = Stored();
  EXPECT_EQ(run.state, RunState::kDone);
  EXPECT_FALSE(run.degraded);
  EXPECT_EQ(run.left_workers, std::vector<std::string>{"w0"});
  EXPECT_EQ(core_->ListWorkers().size(), 1u);  // w0 left the pool
}

TEST_F(BrokerCoreTest, CountersThatWouldWrapAreRefused) {
  StartRunning(2);
  common::Snapshot huge;
  huge.run_id = "r";
  huge.worker_id = "w0";
  huge.sequence = 1;
  huge.stats.hits = (uint64_t{1} << 63) + 5;
  huge.stats.methods["GET"][0] = huge.stats.hits;  // hits without a response
  From("w0", common::EncodeSnapshot(huge));
  huge.worker_id = "w1";
  From("w1", common::EncodeSnapshot(huge));
  const RunView run = Stored();
  EXPECT_EQ(run.stats.hits, (uint64_t{1} << 63) + 5);  // never wrapped
  EXPECT_EQ(run.lost_workers, std::vector<std::string>{"w1"});
}

TEST_F(BrokerCoreTest, ARestartedControllerCarriesOnWithTheWorkersThatComeBack) {
  StartRunning(2, {10});
  From("w0", Snap("w0", "r", 1, 3));
  From("w1", Snap("w1", "r", 1, 4));
  Commit();
  // Merged but not committed when the controller dies: the workers still hold it (no ack).
  From("w0", Snap("w0", "r", 2, 5));
  std::vector<RunRecord> state;
  for (const auto& [id, record] : stored_) state.push_back(record);
  talking_.clear();
  transport_.sent.clear();
  Make(state);
  EXPECT_EQ(Run().state, RunState::kRunning);
  EXPECT_EQ(Run().restarts, 1u);
  EXPECT_EQ(Run().stats.hits, 7u);
  // w0 comes back naming its run: re-attached, told where its results stand.
  From("w0", Hello("w0", "r"));
  auto sent = transport_.Take(Route("w0"));
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].type, MessageType::kWelcome);
  EXPECT_EQ(sent[0].run_id, "r");
  EXPECT_EQ(sent[1].type, MessageType::kAck);
  EXPECT_EQ(sent[1].seq, 1u);
  talking_ = {"w0"};
  // It sends again what was not acknowledged, then the rest.
  From("w0", Snap("w0", "r", 1, 3));  // a duplicate now
  From("w0", Snap("w0", "r", 2, 5));
  From("w0", Snap("w0", "r", 3, 2, true));
  From("w0", Done("w0", "r", 3));
  EXPECT_EQ(Run().stats.hits, 14u);
  // w1 never comes back: lost after the grace period, and the run is partial.
  Tick(15'100ms);
  const RunView run = Stored();
  EXPECT_EQ(run.state, RunState::kPartial);
  EXPECT_EQ(run.lost_workers, std::vector<std::string>{"w1"});
  ASSERT_TRUE(run.missing_executions);
  EXPECT_EQ(*run.missing_executions, 6u);
}

TEST_F(BrokerCoreTest, AnAbortJudgeIsMadeOnceAndStopsItsRunWhenItFails) {
  int made = 0;
  std::vector<double> judged_at;
  core_->SetAbortJudges([&](const RunView&) -> BrokerCore::AbortJudge {
    ++made;
    return [&](const common::RunStats& stats, double seconds) -> std::optional<std::string> {
      judged_at.push_back(seconds);
      if (stats.hits < 8) return std::nullopt;
      return "hits<8 abort";
    };
  });
  StartRunning(1, {100});
  From("w0", Snap("w0", "r", 1, 3));
  From("w0", Snap("w0", "r", 2, 3));  // within 250 ms of the last judgement: not judged
  EXPECT_EQ(judged_at.size(), 1u);
  clock_.Advance(300ms);
  From("w0", Snap("w0", "r", 3, 3));
  ASSERT_EQ(judged_at.size(), 2u);
  EXPECT_EQ(made, 1);  // the spec is read once, not at every judgement
  auto sent = transport_.Take(Route("w0"));
  ASSERT_FALSE(sent.empty());
  EXPECT_EQ(sent.back().type, MessageType::kStop);
  EXPECT_EQ(Run().aborted_by, "hits<8 abort");
  // Its final results still count; a run its threshold stopped is over, not interrupted.
  From("w0", Snap("w0", "r", 4, 1, true));
  From("w0", Done("w0", "r", 4));
  const RunView run = Stored();
  EXPECT_EQ(run.state, RunState::kDone);
  EXPECT_EQ(run.stats.hits, 10u);
  EXPECT_EQ(made, 1);
}

TEST_F(BrokerCoreTest, ARunWithoutAbortThresholdsIsNeverJudged) {
  int made = 0;
  core_->SetAbortJudges([&](const RunView&) -> BrokerCore::AbortJudge {
    ++made;
    return nullptr;
  });
  StartRunning(1);
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    clock_.Advance(300ms);
    From("w0", Snap("w0", "r", seq, 1));
  }
  EXPECT_EQ(made, 1);
  EXPECT_TRUE(Run().aborted_by.empty());
}

TEST_F(BrokerCoreTest, ARunBeingAssignedWhenTheControllerDiedFails) {
  Register(1);
  ASSERT_TRUE(core_->StartRun("r", Request({1}, {1}, 1)).ok());
  auto state = Commit();
  Make(state);
  EXPECT_EQ(Stored().state, RunState::kFailed);
  EXPECT_NE(Run().error.find("restarted while the run was being assigned"), std::string::npos);
}

TEST_F(BrokerCoreTest, RunsAreListedNewestFirstAndOldOnesPruned) {
  options_.max_runs = 2;
  Make();
  Register(1);
  talking_ = {"w0"};
  for (const char* id : {"a", "b", "c"}) {
    ASSERT_TRUE(core_->StartRun(id, Request({1}, {1}, 1)).ok());
    From("w0", Control(MessageType::kReady, "w0", id));
    From("w0", Snap("w0", id, 1, 1, true));
    From("w0", Done("w0", id, 1));
    Tick(1000ms);
  }
  std::vector<std::string> ids;
  for (const RunView* v : core_->Runs()) ids.push_back(v->run_id);
  EXPECT_EQ(ids, (std::vector<std::string>{"c", "b", "a"}));
  Tick(60'000ms);  // pruning runs once a minute
  ids.clear();
  for (const RunView* v : core_->Runs()) ids.push_back(v->run_id);
  EXPECT_EQ(ids, (std::vector<std::string>{"c", "b"}));
  EXPECT_EQ(deleted_, std::vector<std::string>{"a"});
}

}  // namespace
}  // namespace loads::controller
