#include "loads/controller/broker_core.h"

#include <algorithm>
#include <cstdio>

#include "loads/common/snapshot.h"

namespace loads::controller {
namespace {

using common::ControlMessage;
using common::MessageType;
using common::UnixNanos;
using SteadyTime = std::chrono::steady_clock::time_point;

// How far ahead of now the common start time is set, so that every worker has its start
// message before the time comes.
constexpr auto kStartDelay = std::chrono::milliseconds(200);

ControlMessage Message(MessageType type, const std::string& run_id = {}) {
  ControlMessage m;
  m.type = type;
  m.run_id = run_id;
  return m;
}

std::string Seconds(std::chrono::milliseconds d) {
  char text[32];
  std::snprintf(text, sizeof text, "%g s", static_cast<double>(d.count()) / 1000.0);
  return text;
}

// "0.1" of "0.1.0": workers of another major.minor may not load this controller's libraries.
std::string_view MajorMinor(std::string_view version) {
  const size_t first = version.find('.');
  if (first == std::string_view::npos) return version;
  return version.substr(0, version.find('.', first + 1));
}

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

}  // namespace

bool IsOver(RunState state) {
  return state == RunState::kDone || state == RunState::kFailed || state == RunState::kStopped ||
         state == RunState::kPartial;
}

std::string_view RunStateName(RunState state) {
  switch (state) {
    case RunState::kAssigning:
      return "assigning";
    case RunState::kRunning:
      return "running";
    case RunState::kDone:
      return "done";
    case RunState::kFailed:
      return "failed";
    case RunState::kStopped:
      return "stopped";
    case RunState::kPartial:
      return "partial";
  }
  return "unknown";
}

std::optional<RunState> RunStateFromName(std::string_view name) {
  for (RunState s : {RunState::kAssigning, RunState::kRunning, RunState::kDone, RunState::kFailed,
                     RunState::kStopped, RunState::kPartial}) {
    if (RunStateName(s) == name) return s;
  }
  return std::nullopt;
}

BrokerCore::BrokerCore(BrokerOptions options, Clock* clock, BrokerTransport* transport,
                       Metrics* metrics)
    : options_(std::move(options)), clock_(clock), transport_(transport), metrics_(metrics) {
  const SteadyTime now = clock_->Now();
  next_heartbeat_ = now;
  next_interval_ = now + std::chrono::seconds(1);
  next_prune_ = now;
}

void BrokerCore::Restore(std::vector<RunRecord> records) {
  const SteadyTime now = clock_->Now();
  for (RunRecord& record : records) {
    Run& run = runs_[record.view.run_id];
    run.view = std::move(record.view);
    run.policy = record.policy;
    run.stop_requested = record.stop_requested;
    run.members = std::move(record.members);
    run.dirty = false;
    if (IsOver(run.view.state)) continue;
    run.dirty = true;
    if (record.waiting || run.view.state == RunState::kAssigning) {
      // Its workers were loading the test or not there yet; they forget it when they come back.
      run.view.error = "the controller restarted while the run was being assigned; start it again";
      run.view.ended = clock_->WallNow();
      run.ending = RunState::kFailed;
      for (auto& [id, member] : run.members) member.attached = false;
      if (format_report_) {
        RunView final_view = run.view;
        final_view.state = RunState::kFailed;
        run.view.report_json = format_report_(final_view);
      }
      continue;
    }
    ++run.view.restarts;
    run.grace_deadline = now + options_.restart_grace;
    for (auto& [id, member] : run.members) {
      if (!member.Settled()) member.attached = false;
    }
    if (run.stop_requested)
      run.stop_deadline = now + options_.restart_grace + options_.stop_timeout;
    if (metrics_) metrics_->RunStarted(run.view.run_id, run.view.test, run.view.planned_users);
    std::fprintf(stderr,
                 "loads-controller: run %s was running when the controller stopped; waiting %s "
                 "for its workers to come back\n",
                 run.view.run_id.c_str(), Seconds(options_.restart_grace).c_str());
    MaybeFinish(run);
  }
  ++generation_;
}

// ---------------------------------------------------------------------------------------------
// Sending

void BrokerCore::Send(const std::string& route, const ControlMessage& m) {
  transport_->Send(route, common::EncodeControl(m));
}

void BrokerCore::QueueAck(const std::string& route, const std::string& run_id, uint64_t seq,
                          bool closed) {
  ControlMessage ack = Message(MessageType::kAck, run_id);
  ack.seq = seq;
  ack.closed = closed;
  pending_acks_.push_back({route, std::move(ack)});
}

void BrokerCore::AskToRejoin(const std::string& route) {
  const SteadyTime now = clock_->Now();
  auto [it, inserted] = rejoins_.try_emplace(route, now);
  if (!inserted && now - it->second < std::chrono::seconds(1)) return;
  it->second = now;
  Send(route, Message(MessageType::kRejoin));
}

void BrokerCore::Refuse(const std::string& route, const std::string& why) {
  // Rate-limited like rejoin: a refused worker exits, but a hostile peer may keep asking.
  const SteadyTime now = clock_->Now();
  auto [it, inserted] = rejoins_.try_emplace(route, now);
  if (!inserted && now - it->second < std::chrono::seconds(1)) return;
  it->second = now;
  ControlMessage refused = Message(MessageType::kRefused);
  refused.message = why;
  Send(route, refused);
}

void BrokerCore::Drop(const char* reason, const std::string& why) {
  ++dropped_;
  if (metrics_) metrics_->Dropped(reason);
  const SteadyTime now = clock_->Now();
  if (now - last_drop_log_ < std::chrono::seconds(1)) return;
  last_drop_log_ = now;
  std::fprintf(stderr, "loads-controller: dropped a message (%s): %s (%llu dropped so far)\n",
               reason, why.c_str(), static_cast<unsigned long long>(dropped_));
}

void BrokerCore::Changed(Run& run) {
  run.dirty = true;
  ++generation_;
}

// ---------------------------------------------------------------------------------------------
// Frames from workers

void BrokerCore::OnMultipart(size_t frames) {
  Drop("multipart", "a message of " + std::to_string(frames) + " frames (expected one)");
}

BrokerCore::Worker* BrokerCore::WorkerByRoute(const std::string& route) {
  auto name = routes_.find(route);
  if (name == routes_.end()) return nullptr;
  auto worker = workers_.find(name->second);
  return worker == workers_.end() ? nullptr : &worker->second;
}

void BrokerCore::OnFrame(const std::string& route, std::string_view frame) {
  MessageType type;
  ControlMessage m;
  common::Snapshot snapshot;
  if (Status read = common::DecodeMessage(frame, &type, &m, &snapshot); !read.ok()) {
    return Drop("malformed", read.message());
  }
  if (auto retired = retired_.find(route); retired != retired_.end()) {
    // A worker whose pod is being deleted: its last messages are not faults.
    if (clock_->Now() < retired->second) return;
    retired_.erase(retired);
  }
  if (type == MessageType::kHello) return OnHello(route, m);
  Worker* worker = WorkerByRoute(route);
  if (!worker) {
    // Lost, restarted, or never registered: nothing from it counts until it says hello (over
    // this connection), which it is asked to do.
    const bool from_worker = type == MessageType::kHeartbeat || type == MessageType::kReady ||
                             type == MessageType::kDone || type == MessageType::kSnapshot;
    if (from_worker) AskToRejoin(route);
    return Drop("unregistered", "a " + std::string(common::MessageTypeName(type)) +
                                    " message from a connection that did not say hello");
  }
  const std::string& claimed = type == MessageType::kSnapshot ? snapshot.worker_id : m.worker_id;
  if (type != MessageType::kHeartbeat && claimed != worker->id) {
    return Drop("spoofed", "worker " + worker->id + " sent a message in the name of " + claimed);
  }
  worker->last_heard = clock_->Now();
  switch (type) {
    case MessageType::kHeartbeat:
      return;
    case MessageType::kReady:
      return OnReady(*worker, m);
    case MessageType::kDone:
      return OnDone(*worker, m);
    case MessageType::kBye:
      return OnBye(*worker);
    case MessageType::kSnapshot:
      return OnSnapshot(*worker, snapshot, frame);
    default:
      return Drop("unexpected",
                  "a " + std::string(common::MessageTypeName(type)) + " message from a worker");
  }
}

void BrokerCore::OnHello(const std::string& route, const ControlMessage& m) {
  if (!options_.token.empty() && m.token != options_.token) {
    Refuse(route, "wrong token (the controller's --token-file differs from this worker's)");
    return Drop("bad_token", "worker " + m.worker_id + " refused: wrong token");
  }
  if (!options_.sdk_version.empty() &&
      MajorMinor(m.sdk_version) != MajorMinor(options_.sdk_version)) {
    Refuse(route, "this worker's SDK " + m.sdk_version + " cannot run this controller's tests (" +
                      options_.sdk_version + ")");
    return Drop("incompatible", "worker " + m.worker_id + " refused: SDK " + m.sdk_version);
  }
  const std::string& name = m.worker_id;
  rejoins_.erase(route);
  auto existing = workers_.find(name);
  if (existing != workers_.end() && existing->second.route != route) {
    // The same name over another connection: a new process. Whatever the old one was doing is
    // gone with it.
    Forget(name, "it said hello again over a new connection (restarted)");
  }
  if (Worker* other = WorkerByRoute(route); other && other->id != name) {
    Forget(other->id, "its connection now says it is " + name);
  }
  Worker& worker = workers_[name];
  const bool known = !worker.id.empty();
  worker.id = name;
  worker.route = route;
  worker.threads = m.threads;
  worker.last_heard = clock_->Now();
  routes_[route] = name;
  ControlMessage welcome = Message(MessageType::kWelcome);
  welcome.worker_id = name;
  welcome.heartbeat_ms = options_.heartbeat.count();
  std::optional<uint64_t> reattached_seq;
  // A worker in a run says which (after our restart, or after it thought us gone): it carries on
  // with that run if the run still counts on it.
  const std::string& wanted = m.run_id;
  if (known && !worker.run_id.empty() && worker.run_id != wanted) {
    // It no longer has the run we gave it.
    auto run = runs_.find(worker.run_id);
    worker.run_id.clear();
    if (run != runs_.end()) MarkLost(run->second, name, "it said hello without the run");
  }
  if (!wanted.empty()) {
    auto run = runs_.find(wanted);
    RunMember* member = nullptr;
    if (run != runs_.end() && !Ended(run->second)) {
      auto it = run->second.members.find(name);
      if (it != run->second.members.end() && !it->second.Settled()) member = &it->second;
    }
    if (member) {
      member->attached = true;
      worker.run_id = wanted;
      welcome.run_id = wanted;
      reattached_seq = member->merged_seq;
      Changed(run->second);
    } else {
      worker.run_id.clear();
      if (run != runs_.end() && !known) {
        std::fprintf(stderr,
                     "loads-controller: worker %s came back with run %s, which no longer counts "
                     "on it\n",
                     name.c_str(), wanted.c_str());
      }
    }
  }
  Send(route, welcome);
  if (reattached_seq) {
    // Where its results stand here: it sends again whatever it has after that.
    ControlMessage ack = Message(MessageType::kAck, welcome.run_id);
    ack.seq = *reattached_seq;
    Send(route, ack);
    std::fprintf(
        stderr, "loads-controller: worker %s is back in run %s (results merged up to %llu)\n",
        name.c_str(), welcome.run_id.c_str(), static_cast<unsigned long long>(*reattached_seq));
  }
  ++generation_;
}

void BrokerCore::OnReady(Worker& worker, const ControlMessage& m) {
  auto run = runs_.find(m.run_id);
  if (run == runs_.end()) return Drop("unknown_run", "ready for unknown run " + m.run_id);
  auto member = run->second.members.find(worker.id);
  if (member == run->second.members.end()) {
    return Drop("not_in_run", "ready from " + worker.id + ", which is not in run " + m.run_id);
  }
  if (Ended(run->second) || member->second.lost) {
    Send(worker.route, Message(MessageType::kStop, m.run_id));
    return;
  }
  member->second.ready = true;
  Changed(run->second);
  MaybeStart(run->second);
}

void BrokerCore::OnDone(Worker& worker, const ControlMessage& m) {
  auto it = runs_.find(m.run_id);
  if (it == runs_.end()) {
    // A run this controller does not know (pruned): the worker may forget it.
    QueueAck(worker.route, m.run_id, m.seq, true);
    if (worker.run_id == m.run_id) worker.run_id.clear();
    return Drop("unknown_run", "done for unknown run " + m.run_id);
  }
  Run& run = it->second;
  auto member_it = run.members.find(worker.id);
  if (member_it == run.members.end()) {
    return Drop("not_in_run", "done from " + worker.id + ", which is not in run " + m.run_id);
  }
  RunMember& member = member_it->second;
  if (Ended(run) || member.lost) {
    QueueAck(worker.route, m.run_id, member.merged_seq, true);
    if (worker.run_id == m.run_id) worker.run_id.clear();
    return;
  }
  if (!member.done) {
    member.done = true;
    member.ok = m.ok;
    member.message = m.message;
    member.done_seq = m.seq;
    member.left = m.left;
    member.active_users = 0;
    run.done_at[worker.id] = clock_->Now();
    if (m.left) run.view.left_workers.push_back(worker.id);
    // After a stop, a worker may say it did not finish: that is what a stop is.
    if (!m.ok && !run.stop_requested && run.view.error.empty()) {
      Fail(run, "worker " + worker.id + ": " + m.message);
    }
    CountActiveUsers(run);
    Changed(run);
  }
  if (member.Settled()) Release(run, worker.id);
  MaybeFinish(run);
}

void BrokerCore::OnBye(Worker& worker) {
  const std::string id = worker.id;
  Forget(id, "it left");
  std::fprintf(stderr, "loads-controller: worker %s left\n", id.c_str());
}

void BrokerCore::OnSnapshot(Worker& worker, const common::Snapshot& snapshot,
                            std::string_view frame) {
  auto it = runs_.find(snapshot.run_id);
  if (it == runs_.end()) {
    QueueAck(worker.route, snapshot.run_id, snapshot.sequence, true);
    return Drop("unknown_run", "a snapshot of unknown run " + snapshot.run_id);
  }
  Run& run = it->second;
  auto member_it = run.members.find(worker.id);
  if (member_it == run.members.end()) {
    return Drop("not_in_run", "a snapshot of run " + snapshot.run_id + " from " + worker.id +
                                  ", which is not in it");
  }
  RunMember& member = member_it->second;
  if (Ended(run) || member.lost) {
    // The result is final (or the worker's part of it is): late results are counted, not merged.
    ++run.view.late_snapshots;
    Changed(run);
    QueueAck(worker.route, run.view.run_id, member.merged_seq, true);
    return Drop("late", "a snapshot of run " + run.view.run_id + " from " + worker.id +
                            (member.lost ? ", lost earlier" : ", after the run was over"));
  }
  if (snapshot.sequence <= member.merged_seq) {
    ++run.view.duplicates;
    QueueAck(worker.route, run.view.run_id, member.merged_seq, false);
    return;
  }
  if (snapshot.sequence > member.merged_seq + 1) {
    // One before it went missing (a broken connection): the worker sends everything after its
    // last acknowledged snapshot again, in order.
    return Drop("out_of_order", "snapshot " + std::to_string(snapshot.sequence) + " of " +
                                    worker.id + " before " + std::to_string(member.merged_seq + 1));
  }
  if (run.view.stats.MergeWouldOverflow(snapshot.stats)) {
    Drop("overflow",
         "a snapshot of " + worker.id + " would overflow run " + run.view.run_id + "'s counters");
    MarkLost(run, worker.id, "it sent a snapshot whose counts would overflow the run's totals");
    QueueAck(worker.route, run.view.run_id, member.merged_seq, true);
    return;
  }
  member.merged_seq = snapshot.sequence;
  member.executions = common::SaturatingAdd(member.executions, snapshot.stats.Executions());
  // The run's sum moves by this worker's change (a thousand workers: no loop over them all).
  const uint64_t users = snapshot.final ? 0 : snapshot.active_users;
  run.view.active_users =
      run.view.active_users - std::min(run.view.active_users, member.active_users) + users;
  member.active_users = users;
  const double rate = snapshot.final ? 0 : snapshot.target_rate;
  run.view.target_rate = std::max(0.0, run.view.target_rate - member.target_rate + rate);
  member.target_rate = rate;
  if (metrics_) {
    metrics_->SetActiveUsers(run.view.run_id, static_cast<int64_t>(run.view.active_users));
    metrics_->SetTargetRate(run.view.run_id, run.view.target_rate);
  }
  run.view.stats.Merge(snapshot.stats);
  run.current_interval.Merge(snapshot.stats);
  if (run.view.load_start.time_since_epoch().count() != 0) {
    // A worker's clock says when; a clock ahead of ours (or garbage) cannot put results in the
    // future, so they count at most now.
    const uint64_t middle = std::min(snapshot.interval_start / 2 + snapshot.interval_end / 2,
                                     UnixNanos(clock_->WallNow()));
    const double at =
        (static_cast<double>(middle) - static_cast<double>(UnixNanos(run.view.load_start))) / 1e9;
    run.view.series.Add(at, snapshot.stats, static_cast<int64_t>(run.view.active_users));
  }
  ++run.view.snapshots;
  if (metrics_) {
    const double delay = static_cast<double>(UnixNanos(clock_->WallNow())) / 1e9 -
                         static_cast<double>(snapshot.interval_end) / 1e9;
    metrics_->OnSnapshot(snapshot.run_id, snapshot.stats, delay);
  }
  // The single stream: every merged snapshot as received, under its run id as topic.
  transport_->Publish(snapshot.run_id, std::string(frame));
  Changed(run);
  Judge(run);
  if (member.Settled()) {
    Release(run, worker.id);
    MaybeFinish(run);
  } else {
    QueueAck(worker.route, run.view.run_id, member.merged_seq, false);
  }
}

// ---------------------------------------------------------------------------------------------
// Runs

Status BrokerCore::StartRun(const std::string& run_id, RunRequest request) {
  if (run_id.empty()) return InvalidArgumentError("the run id is empty");
  if (request.workers < 1) return InvalidArgumentError("a run needs at least one worker");
  if (request.plan.users.empty() && !request.plan.load.open() && !request.plan.load.ramped()) {
    return InvalidArgumentError("the plan has no users");
  }
  if (runs_.count(run_id)) return AlreadyExistsError("run " + run_id + " exists already");
  std::vector<Worker*> idle;
  for (auto& [id, worker] : workers_) {
    if (worker.run_id.empty()) idle.push_back(&worker);
  }
  const bool enough = static_cast<int>(idle.size()) >= request.workers;
  if (!enough && request.wait_for_workers.count() <= 0) {
    return ResourceExhaustedError("run " + run_id + " needs " + std::to_string(request.workers) +
                                  " workers, " + std::to_string(idle.size()) + " idle");
  }
  // A run that may wait queues behind those already waiting, which keep their workers.
  const bool wait = request.wait_for_workers.count() > 0 && (!enough || !waiting_.empty());
  Run& run = runs_[run_id];
  run.view.run_id = run_id;
  run.view.test = request.plan.test;
  const common::LoadModel& load = request.plan.load;
  run.view.planned_users =
      load.ramped() ? common::UserSchedule(request.plan.users.empty() ? 0 : request.plan.users[0],
                                           load.stages)
                          .PeakUsers()
      : load.open() ? load.max_users
                    : *std::max_element(request.plan.users.begin(), request.plan.users.end());
  run.view.spec = request.spec;
  run.view.library_digest = request.library_digest;
  run.view.started = clock_->WallNow();
  run.policy = request.loss_policy;
  if (metrics_) metrics_->RunStarted(run_id, request.plan.test, run.view.planned_users);
  Changed(run);
  if (wait) {
    run.wait_deadline = clock_->Now() + request.wait_for_workers;
    // The library's bytes are sent with the assignment; until then they are only held here.
    run.waiting = std::move(request);
    waiting_.push_back(run_id);
    AssignWaitingRuns();
    return OkStatus();
  }
  idle.resize(static_cast<size_t>(request.workers));
  Assign(run, request, idle);
  return OkStatus();
}

void BrokerCore::Assign(Run& run, const RunRequest& request, const std::vector<Worker*>& workers) {
  const std::string& run_id = run.view.run_id;
  // The report's duration and rates count from here, not from the wait for workers.
  run.view.started = clock_->WallNow();
  run.ready_deadline = clock_->Now() + options_.ready_timeout;
  const common::Assignment& plan = request.plan;
  const auto n = static_cast<int64_t>(workers.size());
  uint64_t hits_per_user = 0;
  for (int64_t h : plan.hits) hits_per_user += static_cast<uint64_t>(h);
  for (int64_t i = 0; i < n; ++i) {
    Worker& worker = *workers[static_cast<size_t>(i)];
    worker.run_id = run_id;
    run.view.workers.push_back(worker.id);
    common::Assignment share = plan;
    share.run_id = run_id;
    RunMember member;
    if (plan.load.open() || plan.load.ramped()) {
      // Arrivals and ramped users are dealt out: worker i takes every n-th, from the i-th, so
      // that the workers' shares add up to the plan at every instant.
      share.load.share_offset = i;
      share.load.share_stride = n;
      if (plan.load.max_users > 0) {
        share.load.max_users = std::max<int64_t>(1, common::ShareOf(plan.load.max_users, i, n));
      }
    } else {
      // Each cycle's users are split as evenly as possible; hits per user stay the same, so the
      // run's total executions are those of one process running the whole plan.
      for (size_t c = 0; c < share.users.size(); ++c) {
        const int64_t users = plan.users[c];
        share.users[c] = users / n + (i < users % n ? 1 : 0);
        if (!plan.duration) {
          member.planned_executions += static_cast<uint64_t>(share.users[c]) * hits_per_user;
        }
      }
    }
    run.members[worker.id] = member;
    if (share.threads <= 0) {
      // By default a worker uses its capacity, but no more threads than it has users.
      int64_t most = worker.threads;
      if (plan.load.ramped()) {
        most = common::ShareOf(
            common::UserSchedule(plan.users.empty() ? 0 : plan.users[0], plan.load.stages)
                .PeakUsers(),
            i, n);
      } else if (!plan.load.open()) {
        most = *std::max_element(share.users.begin(), share.users.end());
      }
      share.threads = std::clamp<int64_t>(std::min(worker.threads, most), 1, 1024);
    }
    ControlMessage assign = Message(MessageType::kAssign, run_id);
    assign.assignment = std::move(share);
    Send(worker.route, assign);
  }
  Changed(run);
}

void BrokerCore::AssignWaitingRuns() {
  const SteadyTime now = clock_->Now();
  for (size_t k = 0; k < waiting_.size();) {
    Run& run = runs_.at(waiting_[k]);
    const RunRequest& request = *run.waiting;
    const auto starts_with = [](const std::string& id, const std::string& prefix) {
      return !prefix.empty() && id.compare(0, prefix.size(), prefix) == 0;
    };
    // Its own workers first, then idle ones that no other waiting run started.
    std::vector<Worker*> own, others;
    for (auto& [id, worker] : workers_) {
      if (!worker.run_id.empty()) continue;
      if (starts_with(id, request.worker_prefix)) {
        own.push_back(&worker);
        continue;
      }
      bool reserved = false;
      for (const auto& other : waiting_) {
        reserved = reserved || (other != run.view.run_id &&
                                starts_with(id, runs_.at(other).waiting->worker_prefix));
      }
      if (!reserved) others.push_back(&worker);
    }
    own.insert(own.end(), others.begin(), others.end());
    const auto n = static_cast<size_t>(request.workers);
    if (own.size() >= n) {
      own.resize(n);
      const RunRequest assigned = std::move(*run.waiting);
      run.waiting.reset();
      waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(k));
      Assign(run, assigned, own);
      continue;
    }
    if (now >= run.wait_deadline) {
      const auto waited =
          std::chrono::duration_cast<std::chrono::seconds>(request.wait_for_workers).count();
      EndWaitingRun(run, RunState::kFailed,
                    "run " + run.view.run_id + " needed " + std::to_string(n) + " workers; only " +
                        std::to_string(own.size()) + " were idle after " + std::to_string(waited) +
                        " s of waiting");
      continue;  // EndWaitingRun removed it from waiting_
    }
    ++k;
  }
}

void BrokerCore::EndWaitingRun(Run& run, RunState state, const std::string& why) {
  run.waiting.reset();
  std::erase(waiting_, run.view.run_id);
  run.ending = state;
  if (state == RunState::kFailed) run.view.error = why;
  run.view.ended = clock_->WallNow();
  if (format_report_) {
    RunView final_view = run.view;
    final_view.state = state;
    run.view.report_json = format_report_(final_view);
  }
  if (metrics_) metrics_->RunEnded(run.view.run_id);
  Changed(run);
}

void BrokerCore::MaybeStart(Run& run) {
  if (run.view.state != RunState::kAssigning || run.waiting || run.stop_requested ||
      !run.view.error.empty()) {
    return;
  }
  bool live = false;
  for (const auto& [id, member] : run.members) {
    if (!member.ready && !member.lost) return;
    live = live || !member.lost;
  }
  if (!live) return MaybeFinish(run);
  run.view.state = RunState::kRunning;
  run.ready_deadline.reset();
  ControlMessage start = Message(MessageType::kStart, run.view.run_id);
  run.view.load_start = clock_->WallNow() + kStartDelay;
  start.start_at = UnixNanos(run.view.load_start);
  for (const auto& [id, member] : run.members) {
    auto worker = workers_.find(id);
    if (!member.lost && worker != workers_.end()) Send(worker->second.route, start);
  }
  Changed(run);
}

void BrokerCore::Judge(Run& run) {
  if (!judges_ || run.stop_requested || Ended(run) || run.view.state != RunState::kRunning) return;
  if (!run.judge) run.judge = judges_(run.view);
  if (!*run.judge) return;
  const SteadyTime now = clock_->Now();
  if (now < run.next_judgement) return;
  run.next_judgement = now + std::chrono::milliseconds(250);
  const double seconds =
      std::chrono::duration<double>(clock_->WallNow() - run.view.load_start).count();
  std::optional<std::string> failed = (*run.judge)(run.view.stats, seconds);
  if (!failed) return;
  run.view.aborted_by = *failed;
  run.view.aborted_at = seconds;
  std::fprintf(stderr, "loads-controller: run %s: threshold %s failed at %.1f s: stopping it\n",
               run.view.run_id.c_str(), failed->c_str(), seconds);
  run.stop_requested = true;
  StopWorkers(run);
  Changed(run);
  MaybeFinish(run);
}

void BrokerCore::StopWorkers(Run& run) {
  for (const auto& [id, member] : run.members) {
    auto worker = workers_.find(id);
    if (!member.Settled() && worker != workers_.end()) {
      Send(worker->second.route, Message(MessageType::kStop, run.view.run_id));
    }
  }
  if (!run.stop_deadline) run.stop_deadline = clock_->Now() + options_.stop_timeout;
}

void BrokerCore::Fail(Run& run, const std::string& why) {
  if (run.view.error.empty()) run.view.error = why;
  StopWorkers(run);
  Changed(run);
}

void BrokerCore::MaybeFinish(Run& run) {
  if (Ended(run) || run.waiting) return;
  size_t lost = 0;
  for (const auto& [id, member] : run.members) {
    if (!member.Settled()) return;
    lost += member.lost;
  }
  // The end is kept apart until it is stored (TakeCommit, Committed): a run is seen over only
  // once a restart would find it over too.
  RunState end = RunState::kDone;
  if (!run.view.error.empty()) {
    end = RunState::kFailed;
  } else if (run.stop_requested) {
    // A run its threshold stopped ran as planned until the verdict was certain: done, and its
    // report says which threshold failed.
    end = run.view.aborted_by.empty() ? RunState::kStopped : RunState::kDone;
  } else if (!run.members.empty() && lost == run.members.size()) {
    // Nothing of the plan is known to have run to its end: no result to speak of.
    end = RunState::kFailed;
    run.view.error = "every worker was lost (" + Join(run.view.lost_workers) + ")";
  } else if (lost > 0) {
    end = RunState::kPartial;
  }
  run.ending = end;
  if (lost > 0) {
    // In hits mode the plan says what the lost workers did not report.
    bool known = true;
    uint64_t missing = 0;
    for (const auto& [id, member] : run.members) {
      if (!member.lost) continue;
      known = known && member.planned_executions > 0;
      if (member.planned_executions > member.executions) {
        missing += member.planned_executions - member.executions;
      }
    }
    if (known) run.view.missing_executions = missing;
  }
  run.view.ended = clock_->WallNow();
  run.view.active_users = 0;
  run.view.target_rate = 0;
  run.ready_deadline.reset();
  run.stop_deadline.reset();
  run.grace_deadline.reset();
  if (format_report_) {
    RunView final_view = run.view;
    final_view.state = end;
    run.view.report_json = format_report_(final_view);
  }
  if (metrics_) {
    metrics_->SetActiveUsers(run.view.run_id, 0);
    metrics_->SetTargetRate(run.view.run_id, 0);
    metrics_->SetQuantiles(run.view.run_id, run.view.stats);
    metrics_->RunEnded(run.view.run_id);
  }
  Changed(run);
}

void BrokerCore::Release(Run& run, const std::string& worker_id) {
  auto worker = workers_.find(worker_id);
  if (worker == workers_.end()) return;
  if (worker->second.run_id == run.view.run_id) worker->second.run_id.clear();
  const RunMember& member = run.members.at(worker_id);
  QueueAck(worker->second.route, run.view.run_id, member.merged_seq, true);
  ++generation_;
}

void BrokerCore::CountActiveUsers(Run& run) {
  uint64_t users = 0;
  double rate = 0;
  for (const auto& [id, member] : run.members) {
    if (!member.lost && !member.done) {
      users += member.active_users;
      rate += member.target_rate;
    }
  }
  run.view.active_users = users;
  run.view.target_rate = rate;
  if (metrics_) {
    metrics_->SetActiveUsers(run.view.run_id, static_cast<int64_t>(users));
    metrics_->SetTargetRate(run.view.run_id, rate);
  }
}

void BrokerCore::MarkLost(Run& run, const std::string& worker_id, const std::string& why) {
  auto it = run.members.find(worker_id);
  if (it == run.members.end() || it->second.Settled() || Ended(run)) return;
  RunMember& member = it->second;
  member.lost = true;
  member.lost_why = why;
  member.active_users = 0;
  run.view.lost_workers.push_back(worker_id);
  run.view.degraded = true;
  std::fprintf(stderr, "loads-controller: worker %s lost from run %s: %s\n", worker_id.c_str(),
               run.view.run_id.c_str(), why.c_str());
  CountActiveUsers(run);
  if (auto worker = workers_.find(worker_id); worker != workers_.end()) {
    // It may still hear us (it only stopped answering): it must not load the target for a run
    // that no longer counts it.
    Send(worker->second.route, Message(MessageType::kStop, run.view.run_id));
  }
  if (run.policy == LossPolicy::kFail) {
    Fail(run, "worker " + worker_id + " was lost: " + why);
  } else {
    MaybeStart(run);
  }
  Changed(run);
  MaybeFinish(run);
}

void BrokerCore::Forget(const std::string& worker_id, const std::string& why) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  const std::string run_id = it->second.run_id;
  routes_.erase(it->second.route);
  workers_.erase(it);
  ++generation_;
  auto run = runs_.find(run_id);
  if (run == runs_.end()) return;
  MarkLost(run->second, worker_id, why);
}

Status BrokerCore::FailRun(const std::string& run_id, const std::string& why) {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return NotFoundError("no run " + run_id);
  Run& run = it->second;
  if (Ended(run)) return FailedPreconditionError("run " + run_id + " is over");
  if (run.waiting) {
    EndWaitingRun(run, RunState::kFailed, why);
    return OkStatus();
  }
  Fail(run, why);
  MaybeFinish(run);
  return OkStatus();
}

Status BrokerCore::StopRun(const std::string& run_id) {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return NotFoundError("no run " + run_id);
  Run& run = it->second;
  if (Ended(run)) return OkStatus();
  if (run.waiting) {
    EndWaitingRun(run, RunState::kStopped, "");
    return OkStatus();
  }
  run.stop_requested = true;
  StopWorkers(run);
  Changed(run);
  MaybeFinish(run);
  return OkStatus();
}

bool BrokerCore::RetireWorker(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return true;
  if (!it->second.run_id.empty()) return false;
  retired_[it->second.route] = clock_->Now() + std::chrono::minutes(1);
  routes_.erase(it->second.route);
  workers_.erase(it);
  ++generation_;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Time

void BrokerCore::Tick() {
  const SteadyTime now = clock_->Now();
  std::vector<std::string> silent;
  for (const auto& [id, worker] : workers_) {
    if (now - worker.last_heard > options_.worker_timeout) silent.push_back(id);
  }
  for (const auto& id : silent) {
    Forget(id, "silent for more than " + Seconds(options_.worker_timeout));
  }
  if (!waiting_.empty()) AssignWaitingRuns();
  // Not a structured binding: lose_unsettled captures `run`, which clang before 16 cannot parse
  // (scripts/check-thread-safety.sh compiles this file with clang 14).
  for (auto& entry : runs_) {
    Run& run = entry.second;
    if (Ended(run) || run.waiting) continue;
    if (run.ready_deadline && now >= *run.ready_deadline) {
      std::vector<std::string> slow;
      for (const auto& [wid, member] : run.members) {
        if (!member.ready && !member.lost) slow.push_back(wid);
      }
      run.ready_deadline.reset();
      Fail(run, "worker(s) " + Join(slow) + " did not load the test within " +
                    Seconds(options_.ready_timeout));
    }
    const auto lose_unsettled = [&](const std::string& why, bool only_detached) {
      std::vector<std::string> names;
      for (const auto& [wid, member] : run.members) {
        if (!member.Settled() && (!only_detached || !member.attached)) names.push_back(wid);
      }
      for (const auto& wid : names) MarkLost(run, wid, why);
    };
    if (run.grace_deadline && now >= *run.grace_deadline) {
      run.grace_deadline.reset();
      lose_unsettled("it did not come back within " + Seconds(options_.restart_grace) +
                         " of the controller's restart",
                     true);
    }
    if (run.stop_deadline && now >= *run.stop_deadline) {
      run.stop_deadline.reset();
      lose_unsettled("it did not stop within " + Seconds(options_.stop_timeout), false);
    }
    // A done whose final snapshot never comes (the worker resends it while it lives).
    std::vector<std::string> incomplete;
    for (const auto& [wid, at] : run.done_at) {
      const RunMember& member = run.members.at(wid);
      if (!member.Settled() && now - at > options_.worker_timeout + options_.stop_timeout) {
        incomplete.push_back(wid);
      }
    }
    for (const auto& wid : incomplete) {
      MarkLost(run, wid, "its final results never arrived after its done");
    }
    MaybeFinish(run);
  }
  if (now >= next_interval_) {
    std::erase_if(retired_, [&](const auto& entry) { return entry.second <= now; });
    std::erase_if(rejoins_,
                  [&](const auto& entry) { return now - entry.second > std::chrono::minutes(1); });
    // Windows of one second: the live view of every run in progress.
    for (auto& [id, run] : runs_) {
      if (Ended(run)) continue;
      run.view.last_interval = std::move(run.current_interval);
      run.current_interval = common::RunStats();
      run.view.last_interval_end = clock_->WallNow();
      if (metrics_) metrics_->SetQuantiles(id, run.view.stats);
      ++generation_;
    }
    if (metrics_) {
      int64_t idle = 0, busy = 0;
      for (const auto& [wid, worker] : workers_) (worker.run_id.empty() ? idle : busy)++;
      metrics_->SetWorkers(idle, busy);
      std::map<std::string, int64_t> by_state;
      for (const auto& [rid, run] : runs_) ++by_state[std::string(RunStateName(run.view.state))];
      metrics_->SetRuns(by_state);
      metrics_->Expire();
    }
    next_interval_ = now + std::chrono::seconds(1);
  }
  if (now >= next_heartbeat_) {
    for (const auto& [id, worker] : workers_) {
      Send(worker.route, Message(MessageType::kHeartbeat));
    }
    next_heartbeat_ = now + options_.heartbeat;
  }
  if (now >= next_prune_) {
    Prune();
    next_prune_ = now + std::chrono::minutes(1);
  }
}

void BrokerCore::Prune() {
  std::vector<const RunView*> over;
  for (const auto& [id, run] : runs_) {
    if (IsOver(run.view.state)) over.push_back(&run.view);
  }
  std::sort(over.begin(), over.end(), [](const RunView* a, const RunView* b) {
    return a->ended > b->ended;  // newest first
  });
  const auto oldest = clock_->WallNow() - options_.max_run_age;
  std::vector<std::string> doomed;
  for (size_t i = 0; i < over.size(); ++i) {
    if (i >= options_.max_runs || over[i]->ended < oldest) doomed.push_back(over[i]->run_id);
  }
  for (const auto& id : doomed) {
    runs_.erase(id);
    pruned_.push_back(id);
  }
  if (!doomed.empty()) ++generation_;
}

// ---------------------------------------------------------------------------------------------
// Persistence

CommitBatch BrokerCore::TakeCommit(bool records) {
  CommitBatch batch;
  for (auto& [id, run] : runs_) {
    if (!run.dirty) continue;
    run.dirty = false;
    if (!records) {
      // Nothing is written: only the end of a run needs to go through Committed.
      if (run.ending) {
        RunRecord ended;
        ended.view.run_id = id;
        ended.view.state = *run.ending;
        batch.runs.push_back(std::move(ended));
      }
      continue;
    }
    RunRecord record;
    record.view = run.view;
    if (run.ending) record.view.state = *run.ending;
    record.view.last_interval = common::RunStats();
    record.policy = run.policy;
    record.stop_requested = run.stop_requested;
    record.waiting = run.waiting.has_value();
    record.members = run.members;
    batch.runs.push_back(std::move(record));
  }
  batch.deleted = std::move(pruned_);
  pruned_.clear();
  batch.acks = std::move(pending_acks_);
  pending_acks_.clear();
  return batch;
}

void BrokerCore::Committed(CommitBatch batch, bool ok) {
  if (ok) {
    // What was stored over is now seen over.
    for (const auto& record : batch.runs) {
      auto it = runs_.find(record.view.run_id);
      if (it == runs_.end() || !it->second.ending || !IsOver(record.view.state)) continue;
      it->second.view.state = *it->second.ending;
      it->second.ending.reset();
      ++generation_;
    }
    for (auto& ack : batch.acks) Send(ack.route, ack.message);
    return;
  }
  // Written again with the next batch; the acknowledgements wait for it.
  for (const auto& record : batch.runs) {
    auto it = runs_.find(record.view.run_id);
    if (it != runs_.end()) it->second.dirty = true;
  }
  pruned_.insert(pruned_.end(), batch.deleted.begin(), batch.deleted.end());
  pending_acks_.insert(pending_acks_.begin(), std::make_move_iterator(batch.acks.begin()),
                       std::make_move_iterator(batch.acks.end()));
}

// ---------------------------------------------------------------------------------------------
// Views

std::optional<RunView> BrokerCore::GetRun(const std::string& run_id) const {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return std::nullopt;
  return it->second.view;
}

bool BrokerCore::IsRunOver(const std::string& run_id) const {
  auto it = runs_.find(run_id);
  return it != runs_.end() && IsOver(it->second.view.state);
}

std::vector<const RunView*> BrokerCore::Runs() const {
  std::vector<const RunView*> out;
  out.reserve(runs_.size());
  for (const auto& [id, run] : runs_) out.push_back(&run.view);
  std::sort(out.begin(), out.end(), [](const RunView* a, const RunView* b) {
    return a->started != b->started ? a->started > b->started : a->run_id < b->run_id;
  });
  return out;
}

std::vector<RunSummary> BrokerCore::ListRunSummaries() const {
  std::vector<RunSummary> out;
  out.reserve(runs_.size());
  for (const auto& [id, run] : runs_) {
    out.push_back({id, run.view.state, run.waiting.has_value(), run.view.workers});
  }
  return out;
}

std::vector<WorkerView> BrokerCore::ListWorkers() const {
  std::vector<WorkerView> out;
  for (const auto& [id, worker] : workers_) out.push_back({id, worker.threads, worker.run_id});
  return out;
}

size_t BrokerCore::IdleWorkers() const {
  size_t idle = 0;
  for (const auto& [id, worker] : workers_) idle += worker.run_id.empty();
  // Those the waiting runs will take are not free for another.
  for (const auto& id : waiting_) {
    const auto wanted = static_cast<size_t>(runs_.at(id).waiting->workers);
    idle -= std::min(idle, wanted);
  }
  return idle;
}

}  // namespace loads::controller
