#include "loads/controller/broker.h"

#include <algorithm>
#include <cstdio>
#include <zmq.hpp>

#include "loads/common/snapshot.h"

namespace loads::controller {
namespace {

using common::ControlMessage;
using common::MessageType;
using common::UnixNanos;
using SteadyClock = std::chrono::steady_clock;

// How far ahead of now the common start time is set, so that every worker has its start
// message before the time comes.
constexpr auto kStartDelay = std::chrono::milliseconds(200);

ControlMessage Message(MessageType type, const std::string& run_id = {}) {
  ControlMessage m;
  m.type = type;
  m.run_id = run_id;
  return m;
}

}  // namespace

struct Broker::Socket {
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::router};
  zmq::socket_t publisher{context, zmq::socket_type::pub};
};

bool IsOver(RunState state) {
  return state == RunState::kDone || state == RunState::kFailed || state == RunState::kStopped;
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
  }
  return "unknown";
}

Broker::Broker(BrokerOptions options)
    : options_(std::move(options)), socket_(std::make_unique<Socket>()) {}

Broker::~Broker() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

std::optional<std::string> Broker::Start() {
  try {
    socket_->socket.set(zmq::sockopt::linger, 0);
    socket_->socket.set(zmq::sockopt::maxmsgsize, int64_t{80} << 20);
    // A worker reconnecting under its id takes over the old connection's routing id.
    socket_->socket.set(zmq::sockopt::router_handover, 1);
    socket_->socket.bind(options_.bind);
    endpoint_ = socket_->socket.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return "cannot bind " + options_.bind + ": " + e.what();
  }
  if (!options_.publish.empty()) {
    try {
      socket_->publisher.set(zmq::sockopt::linger, 0);
      // A slow subscriber loses messages rather than holding the controller up.
      socket_->publisher.set(zmq::sockopt::sndhwm, 100'000);
      socket_->publisher.bind(options_.publish);
      publish_endpoint_ = socket_->publisher.get(zmq::sockopt::last_endpoint);
    } catch (const zmq::error_t& e) {
      return "cannot bind " + options_.publish + ": " + e.what();
    }
  }
  thread_ = std::thread([this] { Loop(); });
  return std::nullopt;
}

std::string Broker::endpoint() const { return endpoint_; }
std::string Broker::publish_endpoint() const { return publish_endpoint_; }

uint64_t Broker::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

void Broker::Send(const std::string& identity, std::string frame) {
  outbox_.emplace_back(identity, std::move(frame));
}

void Broker::Drop(const char* reason, const std::string& why) {
  ++dropped_;
  if (metrics_) metrics_->Dropped(reason);
  const auto now = SteadyClock::now();
  if (now - last_drop_log_ < std::chrono::seconds(1)) return;
  last_drop_log_ = now;
  std::fprintf(stderr, "loads-controller: dropped a message: %s (%llu dropped so far)\n",
               why.c_str(), static_cast<unsigned long long>(dropped_));
}

std::optional<std::string> Broker::StartRun(const std::string& run_id, RunRequest request) {
  if (run_id.empty()) return "the run id is empty";
  if (request.workers < 1) return "a run needs at least one worker";
  const common::Assignment& plan = request.plan;
  if (plan.users.empty()) return "the plan has no users";
  std::lock_guard lock(mu_);
  if (runs_.count(run_id)) return "run " + run_id + " exists already";
  std::vector<Worker*> idle;
  for (auto& [id, worker] : workers_) {
    if (worker.run_id.empty()) idle.push_back(&worker);
  }
  const bool enough = static_cast<int>(idle.size()) >= request.workers;
  if (!enough && request.wait_for_workers.count() <= 0) {
    return "run " + run_id + " needs " + std::to_string(request.workers) + " workers, " +
           std::to_string(idle.size()) + " idle";
  }
  // A run that may wait queues behind those already waiting, which keep their workers.
  const bool wait = request.wait_for_workers.count() > 0 && (!enough || !waiting_.empty());
  Run& run = runs_[run_id];
  run.view.run_id = run_id;
  run.view.started = std::chrono::system_clock::now();
  if (metrics_) {
    metrics_->RunStarted(run_id, plan.test,
                         *std::max_element(plan.users.begin(), plan.users.end()));
  }
  run.policy = request.loss_policy;
  if (wait) {
    run.wait_deadline = SteadyClock::now() + request.wait_for_workers;
    run.waiting = std::move(request);
    waiting_.push_back(run_id);
    AssignWaitingRuns();
    changed_.notify_all();
    return std::nullopt;
  }
  idle.resize(static_cast<size_t>(request.workers));
  Assign(run, request, idle);
  return std::nullopt;
}

void Broker::Assign(Run& run, const RunRequest& request, const std::vector<Worker*>& workers) {
  const std::string& run_id = run.view.run_id;
  // The report's duration and rates count from here, not from the wait for workers.
  run.view.started = std::chrono::system_clock::now();
  const common::Assignment& plan = request.plan;
  const size_t n = workers.size();
  for (size_t i = 0; i < n; ++i) {
    Worker& worker = *workers[i];
    worker.run_id = run_id;
    run.view.workers.push_back(worker.id);
    run.workers[worker.id] = WorkerInRun{};
    // Each cycle's users are split as evenly as possible; hits per user stay the same, so the
    // run's total executions are those of one process running the whole plan.
    common::Assignment share = plan;
    share.run_id = run_id;
    for (size_t c = 0; c < share.users.size(); ++c) {
      const int64_t users = plan.users[c];
      share.users[c] = users / static_cast<int64_t>(n) +
                       (static_cast<int64_t>(i) < users % static_cast<int64_t>(n) ? 1 : 0);
    }
    ControlMessage assign = Message(MessageType::kAssign, run_id);
    assign.assignment = std::move(share);
    Send(worker.id, common::EncodeControl(assign));
  }
}

void Broker::AssignWaitingRuns() {
  const auto now = SteadyClock::now();
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
      changed_.notify_all();
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

void Broker::EndWaitingRun(Run& run, RunState state, const std::string& why) {
  run.waiting.reset();
  std::erase(waiting_, run.view.run_id);
  run.view.state = state;
  if (state == RunState::kFailed) run.view.error = why;
  run.view.ended = std::chrono::system_clock::now();
  if (metrics_) metrics_->RunEnded(run.view.run_id);
  changed_.notify_all();
}

bool Broker::FailRun(const std::string& run_id, const std::string& why) {
  std::lock_guard lock(mu_);
  auto it = runs_.find(run_id);
  if (it == runs_.end() || IsOver(it->second.view.state)) return false;
  Run& run = it->second;
  if (run.waiting) {
    EndWaitingRun(run, RunState::kFailed, why);
    return true;
  }
  if (run.view.error.empty()) run.view.error = why;
  StopWorkers(run);
  return true;
}

std::vector<RunSummary> Broker::ListRunSummaries() const {
  std::lock_guard lock(mu_);
  std::vector<RunSummary> out;
  out.reserve(runs_.size());
  for (const auto& [id, run] : runs_) {
    out.push_back({id, run.view.state, run.waiting.has_value(), run.view.workers});
  }
  return out;
}

bool Broker::RetireWorker(const std::string& worker_id) {
  std::lock_guard lock(mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return true;
  if (!it->second.run_id.empty()) return false;
  workers_.erase(it);
  retired_[worker_id] = SteadyClock::now() + std::chrono::minutes(1);
  changed_.notify_all();
  return true;
}

bool Broker::StopRun(const std::string& run_id) {
  std::lock_guard lock(mu_);
  auto it = runs_.find(run_id);
  if (it == runs_.end() || IsOver(it->second.view.state)) return false;
  if (it->second.waiting) {
    EndWaitingRun(it->second, RunState::kStopped, "");
    return true;
  }
  it->second.stop_requested = true;
  StopWorkers(it->second);
  return true;
}

std::optional<RunView> Broker::GetRun(const std::string& run_id) const {
  std::lock_guard lock(mu_);
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return std::nullopt;
  return it->second.view;
}

std::vector<WorkerView> Broker::ListWorkers() const {
  std::lock_guard lock(mu_);
  std::vector<WorkerView> out;
  for (const auto& [id, worker] : workers_) out.push_back({id, worker.threads, worker.run_id});
  return out;
}

size_t Broker::IdleWorkers() const {
  std::lock_guard lock(mu_);
  size_t idle = 0;
  for (const auto& [id, worker] : workers_) idle += worker.run_id.empty();
  // Those the waiting runs will take are not free for another.
  for (const auto& id : waiting_) {
    const auto wanted = static_cast<size_t>(runs_.at(id).waiting->workers);
    idle -= std::min(idle, wanted);
  }
  return idle;
}

bool Broker::WaitForRun(const std::string& run_id, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, timeout, [&] {
    auto it = runs_.find(run_id);
    return it != runs_.end() && IsOver(it->second.view.state);
  });
}

void Broker::StopWorkers(Run& run) {
  for (const auto& [id, state] : run.workers) {
    if (!state.done && !state.lost)
      Send(id, common::EncodeControl(Message(MessageType::kStop, run.view.run_id)));
  }
}

void Broker::MaybeFinish(Run& run) {
  if (IsOver(run.view.state) || run.waiting) return;
  for (const auto& [id, state] : run.workers) {
    if (!state.done && !state.lost) return;
  }
  if (!run.view.error.empty()) {
    run.view.state = RunState::kFailed;
  } else if (run.stop_requested) {
    run.view.state = RunState::kStopped;
  } else {
    run.view.state = RunState::kDone;
  }
  run.view.ended = std::chrono::system_clock::now();
  if (metrics_) {
    metrics_->SetQuantiles(run.view.run_id, run.view.stats.latency);
    metrics_->RunEnded(run.view.run_id);
  }
  for (const auto& [id, state] : run.workers) {
    auto it = workers_.find(id);
    if (it != workers_.end() && it->second.run_id == run.view.run_id) it->second.run_id.clear();
  }
  changed_.notify_all();
}

void Broker::CountActiveUsers(Run& run) {
  uint64_t users = 0;
  for (const auto& [id, s] : run.workers) {
    if (!s.lost && !s.done) users += s.active_users;
  }
  run.view.active_users = users;
  if (metrics_) metrics_->SetActiveUsers(run.view.run_id, static_cast<int64_t>(users));
}

void Broker::Lose(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  const std::string run_id = it->second.run_id;
  workers_.erase(it);
  std::fprintf(stderr, "loads-controller: worker %s lost\n", worker_id.c_str());
  auto run_it = runs_.find(run_id);
  if (run_it == runs_.end()) return;
  Run& run = run_it->second;
  auto state = run.workers.find(worker_id);
  if (state == run.workers.end() || state->second.done || IsOver(run.view.state)) return;
  state->second.lost = true;
  CountActiveUsers(run);
  run.view.lost_workers.push_back(worker_id);
  run.view.degraded = true;
  if (run.policy == LossPolicy::kFail) {
    run.view.error = "worker " + worker_id + " was lost";
    StopWorkers(run);
  } else if (run.view.state == RunState::kAssigning) {
    // The others may all be ready already: start them without the lost one.
    bool all_ready = true;
    for (const auto& [id, s] : run.workers) all_ready = all_ready && (s.ready || s.lost);
    if (all_ready) {
      run.view.state = RunState::kRunning;
      ControlMessage start = Message(MessageType::kStart, run.view.run_id);
      start.start_at = UnixNanos(std::chrono::system_clock::now() + kStartDelay);
      for (const auto& [id, s] : run.workers) {
        if (!s.lost) Send(id, common::EncodeControl(start));
      }
    }
  }
  MaybeFinish(run);
  changed_.notify_all();
}

void Broker::Handle(const std::string& identity, std::string_view frame) {
  MessageType type;
  ControlMessage m;
  common::Snapshot snapshot;
  std::string error;
  if (!common::DecodeMessage(frame, &type, &m, &snapshot, &error)) {
    return Drop("malformed", error);
  }
  if (type == MessageType::kSnapshot) {
    auto run_it = runs_.find(snapshot.run_id);
    if (run_it == runs_.end())
      return Drop("unknown_run", "a snapshot of unknown run " + snapshot.run_id);
    Run& run = run_it->second;
    auto state = run.workers.find(identity);
    if (state == run.workers.end() || snapshot.worker_id != identity) {
      return Drop("not_in_run",
                  "a snapshot of run " + snapshot.run_id + " from a worker not in it");
    }
    if (auto w = workers_.find(identity); w != workers_.end()) {
      w->second.last_heard = SteadyClock::now();
    }
    WorkerInRun& in_run = state->second;
    if (snapshot.sequence <= in_run.last_sequence) {
      ++run.view.duplicates;
      return;
    }
    run.view.gaps += snapshot.sequence - in_run.last_sequence - 1;
    in_run.last_sequence = snapshot.sequence;
    in_run.active_users = snapshot.final ? 0 : snapshot.active_users;
    CountActiveUsers(run);
    run.view.stats.Merge(snapshot.stats);
    run.current_interval.Merge(snapshot.stats);
    if (metrics_) {
      const double delay = static_cast<double>(UnixNanos(std::chrono::system_clock::now())) / 1e9 -
                           static_cast<double>(snapshot.interval_end) / 1e9;
      metrics_->OnSnapshot(snapshot.run_id, snapshot.stats, delay);
    }
    if (!publish_endpoint_.empty()) {
      // The single stream: every accepted snapshot as received, under its run id as topic.
      published_.emplace_back(snapshot.run_id, std::string(frame));
    }
    ++run.view.snapshots;
    changed_.notify_all();
    return;
  }
  if (auto retired = retired_.find(identity); retired != retired_.end()) {
    // A worker whose pod is being deleted: its last heartbeats are not faults.
    if (SteadyClock::now() < retired->second) return;
    retired_.erase(retired);
  }
  if (type == MessageType::kHello) {
    if (!options_.token.empty() && m.token != options_.token) {
      return Drop("bad_token", "worker " + identity + " refused: wrong token");
    }
    if (m.worker_id != identity)
      return Drop("malformed", "hello whose worker id is not its routing id");
    if (workers_.count(identity)) Lose(identity);  // it restarted: its old run share is gone
    Worker& worker = workers_[identity];
    worker.id = identity;
    worker.threads = m.threads;
    worker.last_heard = SteadyClock::now();
    ControlMessage welcome = Message(MessageType::kWelcome);
    welcome.worker_id = identity;
    welcome.heartbeat_ms = options_.heartbeat.count();
    Send(identity, common::EncodeControl(welcome));
    changed_.notify_all();
    return;
  }
  auto worker = workers_.find(identity);
  if (worker == workers_.end())
    return Drop("unregistered", "a message from unregistered worker " + identity);
  worker->second.last_heard = SteadyClock::now();
  if (type == MessageType::kHeartbeat) return;
  if (type != MessageType::kReady && type != MessageType::kDone) {
    return Drop("unexpected",
                "a " + std::string(common::MessageTypeName(type)) + " message from a worker");
  }
  auto run_it = runs_.find(m.run_id);
  if (run_it == runs_.end()) return Drop("unknown_run", "a message about unknown run " + m.run_id);
  Run& run = run_it->second;
  auto state = run.workers.find(identity);
  if (state == run.workers.end())
    return Drop("not_in_run", "a message about a run the worker is not in");
  if (type == MessageType::kReady) {
    state->second.ready = true;
    bool all_ready = true;
    for (const auto& [id, s] : run.workers) all_ready = all_ready && (s.ready || s.lost);
    if (all_ready && run.view.state == RunState::kAssigning && !run.stop_requested &&
        run.view.error.empty()) {
      run.view.state = RunState::kRunning;
      ControlMessage start = Message(MessageType::kStart, run.view.run_id);
      start.start_at = UnixNanos(std::chrono::system_clock::now() + kStartDelay);
      for (const auto& [id, s] : run.workers) {
        if (!s.lost) Send(id, common::EncodeControl(start));
      }
    }
  } else {
    state->second.done = true;
    CountActiveUsers(run);
    if (!m.ok && run.view.error.empty()) {
      run.view.error = "worker " + identity + ": " + m.message;
      StopWorkers(run);
    }
    worker->second.run_id.clear();
    MaybeFinish(run);
  }
  changed_.notify_all();
}

void Broker::Loop() {
  zmq::socket_t& socket = socket_->socket;
  auto next_heartbeat = SteadyClock::now();
  auto next_interval = SteadyClock::now() + std::chrono::seconds(1);
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) break;
    }
    zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 1, std::chrono::milliseconds(10));
    std::lock_guard lock(mu_);
    if (items[0].revents & ZMQ_POLLIN) {
      std::vector<zmq::message_t> parts;
      while (true) {
        parts.clear();
        zmq::message_t part;
        if (!socket.recv(part, zmq::recv_flags::dontwait)) break;
        parts.push_back(std::move(part));
        while (parts.back().more()) {
          zmq::message_t next;
          if (!socket.recv(next, zmq::recv_flags::dontwait)) break;
          parts.push_back(std::move(next));
        }
        if (parts.size() != 2) {
          Drop("multipart",
               "a message of " + std::to_string(parts.size() - 1) + " frames (expected one)");
          continue;
        }
        Handle(parts[0].to_string(),
               std::string_view(static_cast<const char*>(parts[1].data()), parts[1].size()));
      }
    }
    const auto now = SteadyClock::now();
    std::vector<std::string> silent;
    for (const auto& [id, worker] : workers_) {
      if (now - worker.last_heard > options_.worker_timeout) silent.push_back(id);
    }
    for (const auto& id : silent) Lose(id);
    if (!waiting_.empty()) AssignWaitingRuns();
    if (now >= next_interval) {
      std::erase_if(retired_, [&](const auto& entry) { return entry.second <= now; });
      // Windows of one second: the live view of every run in progress.
      for (auto& [id, run] : runs_) {
        if (IsOver(run.view.state)) continue;
        run.view.last_interval = std::move(run.current_interval);
        run.current_interval = common::RunStats();
        run.view.last_interval_end = std::chrono::system_clock::now();
        if (metrics_) metrics_->SetQuantiles(id, run.view.stats.latency);
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
      next_interval = now + std::chrono::seconds(1);
    }
    if (now >= next_heartbeat) {
      for (const auto& [id, worker] : workers_) {
        Send(id, common::EncodeControl(Message(MessageType::kHeartbeat)));
      }
      next_heartbeat = now + options_.heartbeat;
    }
    while (!published_.empty()) {
      auto& [topic, frame] = published_.front();
      socket_->publisher.send(zmq::buffer(topic),
                              zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      socket_->publisher.send(zmq::buffer(frame), zmq::send_flags::dontwait);
      published_.pop_front();
    }
    while (!outbox_.empty()) {
      auto& [identity, frame] = outbox_.front();
      // ROUTER drops frames to unknown identities silently; nothing blocks.
      socket.send(zmq::buffer(identity), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      socket.send(zmq::buffer(frame), zmq::send_flags::dontwait);
      outbox_.pop_front();
    }
  }
}

}  // namespace loads::controller
