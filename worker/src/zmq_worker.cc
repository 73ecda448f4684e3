#include "worker/src/zmq_worker.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <sys/stat.h>

#include <cstdio>
#include <exception>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <zmq.hpp>

#include "loads/common/curve.h"
#include "loads/common/metrics_endpoint.h"
#include "loads/common/snapshot.h"
#include "loads/worker/engine.h"
#include "loads/worker/scenario.h"
#include "loads/worker/test_loader.h"

namespace loads::worker {
namespace {

using common::ControlMessage;
using common::FromUnixNanos;
using common::MessageType;
using common::UnixNanos;
using SteadyClock = std::chrono::steady_clock;

// Snapshots sent and not yet acknowledged, at most: past this, new intervals wait (merged into
// one) instead of being sent, so that a controller that does not answer costs bounded memory.
constexpr size_t kWindow = 16;
// Unacknowledged snapshots are sent again after this long without an acknowledgement.
constexpr auto kResendAfter = std::chrono::seconds(2);
// The longest wait between two hellos while the controller is away.
constexpr auto kMaxHelloBackoff = std::chrono::seconds(5);

ControlMessage Message(MessageType type, const std::string& worker_id,
                       const std::string& run_id = {}) {
  ControlMessage m;
  m.type = type;
  m.worker_id = worker_id;
  m.run_id = run_id;
  return m;
}

// A test library being loaded on a thread of its own: its static initializers may take long or
// never return, and the protocol loop must keep answering meanwhile.
struct Loading {
  std::mutex mu;
  bool finished = false;
  // An initializer threw: the loading thread is parked for good, holding the loader's lock.
  bool poisoned = false;
  LoadResult result;
};

// The Loading of the library this thread loads, if any.
thread_local Loading* t_loading = nullptr;
std::terminate_handler g_previous_terminate = nullptr;

// An exception thrown by a library's initializer cannot cross dlopen and ends in
// std::terminate on the loading thread. That is a load failure: it is told as one, and the
// thread parks (unwinding is impossible, and the loader's lock it holds is never released, so
// the worker leaves once it has told the controller).
[[noreturn]] void OnTerminate() {
  Loading* loading = t_loading;
  if (loading == nullptr) {
    (g_previous_terminate != nullptr ? g_previous_terminate : std::abort)();
    std::abort();
  }
  std::string what = "not a std::exception";
  try {
    if (auto current = std::current_exception()) std::rethrow_exception(current);
    what = "no exception";
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  {
    std::lock_guard lock(loading->mu);
    loading->result.error = LoadError::kLoadFailed;
    loading->result.message =
        "cannot load the test library: a global initializer threw (" + what + ")";
    loading->poisoned = true;
    loading->finished = true;
  }
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

}  // namespace

// The worker's own metrics (docs/metrics.md), served when --metrics is given.
struct ZmqWorker::Metrics {
  Metrics(const std::string& address, const std::string& token)
      : endpoint(std::make_unique<common::MetricsEndpoint>(address, registry, token)) {}
  ~Metrics() { endpoint.reset(); }  // its threads read the registry
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<common::MetricsEndpoint> endpoint;
  prometheus::Family<prometheus::Counter>& hits = prometheus::BuildCounter()
                                                      .Name("loads_worker_hits_total")
                                                      .Help("HTTP requests this worker sent")
                                                      .Register(*registry);
  prometheus::Family<prometheus::Counter>& executions =
      prometheus::BuildCounter()
          .Name("loads_worker_executions_total")
          .Help("Executions this worker ran, by outcome")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& snapshots =
      prometheus::BuildCounter()
          .Name("loads_worker_snapshots_sent_total")
          .Help("Result snapshots this worker sent (each once; resends are counted apart)")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& resent =
      prometheus::BuildCounter()
          .Name("loads_worker_snapshots_resent_total")
          .Help("Result snapshots this worker sent again for want of an acknowledgement")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& discarded =
      prometheus::BuildCounter()
          .Name("loads_worker_snapshots_discarded_total")
          .Help(
              "Result snapshots dropped unacknowledged because the controller no longer "
              "counted on this worker for their run")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& runs =
      prometheus::BuildCounter()
          .Name("loads_worker_runs_total")
          .Help("Runs this worker finished, by result (ok, failed)")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& dropped =
      prometheus::BuildCounter()
          .Name("loads_worker_messages_dropped_total")
          .Help("Controller messages this worker dropped")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& active_users =
      prometheus::BuildGauge()
          .Name("loads_worker_active_users")
          .Help("Virtual users running on this worker now")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& registered =
      prometheus::BuildGauge()
          .Name("loads_worker_registered")
          .Help("1 when the controller has welcomed this worker")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& unacked =
      prometheus::BuildGauge()
          .Name("loads_worker_unacknowledged_snapshots")
          .Help("Snapshots sent and not yet acknowledged by the controller")
          .Register(*registry);
};

// The run this worker has, from its assignment until the controller closes it.
struct ZmqWorker::Assigned {
  enum class Phase { kLoading, kReady, kRunning, kFinished };
  common::Assignment assignment;
  Phase phase = Phase::kLoading;
  std::shared_ptr<Loading> loading;  // while a library loads
  SteadyClock::time_point load_deadline;
  TestSpec test;
  std::thread engine;
  std::atomic<bool> stop{false};    // cancel what is in progress
  std::atomic<bool> finish{false};  // start nothing new, let what is in progress end
  SteadyClock::time_point finish_by = SteadyClock::time_point::max();  // then stop
  std::string stop_why;

  // Filled by the engine's thread: the intervals not yet sent, merged into one.
  std::mutex mu;
  std::optional<common::Snapshot> pending;
  bool engine_done = false;  // its last interval is in `pending` (or sent)
  bool interrupted = false;

  // The protocol thread's own.
  uint64_t next_seq = 1;
  std::deque<std::pair<uint64_t, std::string>> unacked;  // (sequence, frame), oldest first
  uint64_t acked = 0;
  std::optional<uint64_t> final_seq;  // the final snapshot's, once sent
  bool done_sent = false;
  bool ok = true;
  std::string done_message;
  SteadyClock::time_point last_progress{};  // last send or acknowledgement
};

ZmqWorker::ZmqWorker(WorkerOptions options) : options_(std::move(options)) {}

ZmqWorker::~ZmqWorker() {
  if (run_ && run_->engine.joinable()) {
    run_->stop = true;
    run_->engine.join();
  }
}

void ZmqWorker::Log(const std::string& line) {
  std::fprintf(stderr, "loads-worker: %s\n", line.c_str());
}

void ZmqWorker::Dropped(const std::string& why) {
  ++dropped_;
  if (metrics_) metrics_->dropped.Add({}).Increment();
  const auto now = SteadyClock::now();
  if (now - last_drop_log_ < std::chrono::seconds(1)) return;
  last_drop_log_ = now;
  Log("dropped: " + why + " (" + std::to_string(dropped_) + " dropped so far)");
}

void ZmqWorker::SendFrame(const std::string& frame) {
  // ZMQ_IMMEDIATE: with no connection the frame is not queued; whatever matters is sent again.
  try {
    socket_->send(zmq::buffer(frame), zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
    // EINTR or the like: the same.
  }
}

void ZmqWorker::Send(const ControlMessage& m) { SendFrame(common::EncodeControl(m)); }

bool ZmqWorker::Connected() const {
  return welcomed_ && SteadyClock::now() - last_heard_ <= options_.controller_timeout;
}

void ZmqWorker::SayHello() {
  ControlMessage hello = Message(MessageType::kHello, options_.id);
  hello.token = options_.token;
  hello.threads = options_.threads;
  hello.sdk_version = LOADS_SDK_VERSION;
  if (run_) hello.run_id = run_->assignment.run_id;
  Send(hello);
}

// ---------------------------------------------------------------------------------------------
// Messages

void ZmqWorker::OnFrame(std::string_view bytes) {
  ControlMessage m;
  if (Status read = common::DecodeControl(bytes, &m); !read.ok()) {
    const std::string& error = read.message();
    if (auto run = common::AssignmentRunId(bytes)) {
      // An assignment this worker cannot read fails its run at once, saying why.
      ControlMessage done = Message(MessageType::kDone, options_.id, *run);
      done.ok = false;
      done.message = "worker " + options_.id + " cannot read its assignment: " + error;
      Send(done);
    }
    return Dropped("unreadable message: " + error);
  }
  last_heard_ = SteadyClock::now();
  switch (m.type) {
    case MessageType::kWelcome:
      return OnWelcome(m);
    case MessageType::kHeartbeat:
      return;
    case MessageType::kAssign:
      return OnAssign(*m.assignment);
    case MessageType::kStart:
      return OnStart(m);
    case MessageType::kStop:
      return OnStop(m);
    case MessageType::kAck:
      return OnAck(m);
    case MessageType::kRejoin:
      // It does not know us (we were lost, or it restarted): hello at once.
      if (welcomed_) Log("the controller asks this worker to register again");
      welcomed_ = false;
      next_hello_ = SteadyClock::now();
      hello_backoff_ = std::chrono::milliseconds(0);
      return;
    case MessageType::kRefused:
      Log("the controller refused this worker: " + m.message);
      if (run_) StopRun("the controller refused this worker");
      exit_code_ = kWorkerExitRefused;
      return;
    default:
      return Dropped("a " + std::string(common::MessageTypeName(m.type)) +
                     " message, which only workers send");
  }
}

void ZmqWorker::OnWelcome(const ControlMessage& m) {
  if (!welcomed_) Log("registered with " + options_.controller);
  welcomed_ = true;
  hello_backoff_ = std::chrono::milliseconds(0);
  heartbeat_ = std::chrono::milliseconds(m.heartbeat_ms);
  if (!run_) return;
  if (m.run_id != run_->assignment.run_id) {
    // The controller does not count on us for our run (it is over, or we were lost from it).
    return Discard("the controller no longer counts on this worker for run " +
                   run_->assignment.run_id);
  }
  // Back in our run: everything not acknowledged goes again (the ack that follows trims it).
  Resend("back in the run");
}

void ZmqWorker::OnAssign(const common::Assignment& a) {
  if (run_ && run_->phase != Assigned::Phase::kFinished) {
    ControlMessage done = Message(MessageType::kDone, options_.id, a.run_id);
    done.ok = false;
    done.message = "worker " + options_.id + " is busy with run " + run_->assignment.run_id;
    return Send(done);
  }
  if (run_) {
    // A finished run the controller has closed (its ack went missing): nothing is owed on it.
    if (run_->engine.joinable()) run_->engine.join();
    run_.reset();
  }
  if (leaving_) {
    ControlMessage done = Message(MessageType::kDone, options_.id, a.run_id);
    done.ok = false;
    done.message = "worker " + options_.id + " is shutting down";
    return Send(done);
  }
  run_ = std::make_unique<Assigned>();
  run_->assignment = a;
  LoadTest();
}

void ZmqWorker::LoadTest() {
  const common::Assignment& a = run_->assignment;
  std::string error;
  if (!a.url.empty()) {
    run_->test = MakeUrlTest(a.url);
  } else if (!a.external_command.empty()) {
    run_->test = MakeExternalTest(a.external_command);
  } else if (!a.scenario.empty()) {
    auto scenario = common::ParseScenario(a.scenario);
    if (scenario.ok()) {
      run_->test = MakeScenarioTest(std::move(*scenario));
    } else {
      error = scenario.status().message();
    }
  } else {
    // A library is written to its own folder per run, named after its module, and loaded from
    // there like a local test library, on a thread of its own.
    const std::string dir = options_.work_dir + "/" + std::to_string(++run_counter_);
    ::mkdir(options_.work_dir.c_str(), 0700);
    ::mkdir(dir.c_str(), 0700);
    const std::string module = a.test.substr(0, a.test.find('.'));
    std::ofstream file(dir + "/" + module + ".so", std::ios::binary | std::ios::trunc);
    file.write(a.library.data(), static_cast<std::streamsize>(a.library.size()));
    file.close();
    if (!file) {
      error = "cannot write the test library to " + dir;
    } else {
      auto loading = std::make_shared<Loading>();
      run_->loading = loading;
      run_->load_deadline = SteadyClock::now() + options_.load_timeout;
      static std::once_flag terminate_installed;
      std::call_once(terminate_installed,
                     [] { g_previous_terminate = std::set_terminate(OnTerminate); });
      std::thread([loading, test = a.test, dir] {
        t_loading = loading.get();
        LoadResult result = worker::LoadTest(test, {dir});
        t_loading = nullptr;
        std::lock_guard lock(loading->mu);
        loading->result = std::move(result);
        loading->finished = true;
      }).detach();
      return;  // CheckLoading answers when it is done
    }
  }
  if (!error.empty()) {
    ControlMessage done = Message(MessageType::kDone, options_.id, a.run_id);
    done.ok = false;
    done.message = "invalid test: " + error;
    Send(done);
    if (metrics_) metrics_->runs.Add({{"result", "failed"}}).Increment();
    run_.reset();
    return;
  }
  run_->phase = Assigned::Phase::kReady;
  Send(Message(MessageType::kReady, options_.id, a.run_id));
}

void ZmqWorker::CheckLoading() {
  if (!run_ || run_->phase != Assigned::Phase::kLoading || !run_->loading) return;
  const std::string run_id = run_->assignment.run_id;
  std::unique_lock lock(run_->loading->mu);
  if (run_->loading->finished) {
    LoadResult result = std::move(run_->loading->result);
    const bool poisoned = run_->loading->poisoned;
    lock.unlock();
    run_->loading.reset();
    if (result.error != LoadError::kNone) {
      ControlMessage done = Message(MessageType::kDone, options_.id, run_id);
      done.ok = false;
      done.message = result.message;
      if (poisoned) done.message += "; worker " + options_.id + " exits to start clean";
      Send(done);
      if (metrics_) metrics_->runs.Add({{"result", "failed"}}).Increment();
      run_.reset();
      if (poisoned) {
        Log(done.message);
        exit_code_ = kWorkerExitFailure;
      }
      return;
    }
    run_->test = result.test;
    run_->phase = Assigned::Phase::kReady;
    if (run_->stop) {
      // Stopped while loading.
      ControlMessage done = Message(MessageType::kDone, options_.id, run_id);
      done.ok = false;
      done.message = "stopped before it started";
      done.left = leaving_;
      Send(done);
      run_.reset();
      return;
    }
    Send(Message(MessageType::kReady, options_.id, run_id));
    return;
  }
  lock.unlock();
  if (SteadyClock::now() < run_->load_deadline) return;
  // Its initializers still run: the library cannot be unloaded, and whatever it holds (the
  // loader's lock among others) stays held. The run fails, and the worker leaves so that it
  // comes back clean (Kubernetes restarts it).
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(options_.load_timeout);
  ControlMessage done = Message(MessageType::kDone, options_.id, run_id);
  done.ok = false;
  done.message = "loading the test library took more than " + std::to_string(seconds.count()) +
                 " s (its static initializers do not return); worker " + options_.id +
                 " exits to start clean";
  Send(done);
  if (metrics_) metrics_->runs.Add({{"result", "failed"}}).Increment();
  Log(done.message);
  exit_code_ = kWorkerExitFailure;
}

void ZmqWorker::OnStart(const ControlMessage& m) {
  if (!run_ || run_->assignment.run_id != m.run_id || run_->phase != Assigned::Phase::kReady) {
    return Dropped("start of run " + m.run_id + ", which is not ready here");
  }
  run_->phase = Assigned::Phase::kRunning;
  Assigned* run = run_.get();
  Metrics* metrics = metrics_.get();
  const std::string worker_id = options_.id;
  run->engine = std::thread([run, metrics, worker_id, start_at = m.start_at] {
    // Start together with the other workers: wait for the common start time (at most 10 s).
    const auto at = FromUnixNanos(static_cast<int64_t>(start_at));
    const auto latest = std::chrono::system_clock::now() + std::chrono::seconds(10);
    while (std::chrono::system_clock::now() < std::min(at, latest) && !run->stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const common::Assignment& a = run->assignment;
    EngineOptions options = EngineOptionsFor(a);
    options.finish = &run->finish;
    Engine engine(options);
    // A stuck user cannot be ended from here (the engine runs in this process): say so, so that
    // the worker's log explains a run that stops making progress.
    engine.OnStuck([run_id = a.run_id](const StuckUser& stuck) {
      std::fprintf(stderr, "loads-worker: run %s: user %lld %s engine thread %d %s %.1f s\n",
                   run_id.c_str(), static_cast<long long>(stuck.user),
                   stuck.resumed ? "yields again on" : "has held", stuck.thread,
                   stuck.resumed ? "after" : "without yielding for", stuck.seconds);
    });
    engine.OnInterval(
        [&](const Interval& interval) {
          std::lock_guard lock(run->mu);
          // Intervals not yet sent are merged: one snapshot covers them all.
          if (!run->pending) {
            run->pending.emplace();
            run->pending->run_id = a.run_id;
            run->pending->worker_id = worker_id;
            run->pending->interval_start = UnixNanos(interval.start);
          }
          run->pending->interval_end = UnixNanos(interval.end);
          run->pending->final = interval.final;
          run->pending->active_users =
              interval.final ? 0 : static_cast<uint64_t>(std::max<int64_t>(0, ActiveUsers()));
          run->pending->target_rate = interval.target_rate;
          run->pending->stats.Merge(interval.stats);
          if (metrics) {
            const auto& st = interval.stats;
            metrics->hits.Add({}).Increment(static_cast<double>(st.hits));
            metrics->executions.Add({{"outcome", "success"}})
                .Increment(static_cast<double>(st.successes));
            metrics->executions.Add({{"outcome", "failure"}})
                .Increment(static_cast<double>(st.failures));
            metrics->executions.Add({{"outcome", "error"}})
                .Increment(static_cast<double>(st.errors));
          }
        },
        std::chrono::seconds(1));
    auto result = engine.Run(run->test, run->stop, nullptr, std::chrono::milliseconds(200));
    std::lock_guard lock(run->mu);
    run->engine_done = true;
    run->interrupted = result.info.interrupted;
  });
}

void ZmqWorker::OnStop(const ControlMessage& m) {
  if (!run_ || run_->assignment.run_id != m.run_id) {
    return Dropped("stop of run " + m.run_id + ", which is not running here");
  }
  StopRun("stopped");
}

void ZmqWorker::StopRun(const std::string& why, bool drain) {
  if (!run_ || run_->stop) return;
  if (drain && run_->phase == Assigned::Phase::kRunning) {
    // Leaving: requests in flight end normally (every one the server saw is counted), for at
    // most half the shutdown time; then they are cancelled.
    if (run_->finish) return;
    run_->finish = true;
    run_->stop_why = why;
    run_->finish_by = SteadyClock::now() + options_.shutdown_timeout / 2;
    return;
  }
  run_->stop = true;
  run_->stop_why = why;
  if (run_->phase == Assigned::Phase::kReady) {
    // Loaded, never started: nothing to report but that.
    ControlMessage done = Message(MessageType::kDone, options_.id, run_->assignment.run_id);
    done.ok = false;
    done.message = "stopped before it started";
    done.left = leaving_;
    Send(done);
    run_.reset();
  }
  // Loading: CheckLoading answers once the library is loaded. Running: the engine stops its
  // users and hands over its last interval, which Pump sends with `done`.
}

void ZmqWorker::OnAck(const ControlMessage& m) {
  if (!run_ || run_->assignment.run_id != m.run_id) return;  // an old run's: nothing to do
  Assigned& run = *run_;
  if (m.seq > run.acked) {
    run.acked = m.seq;
    run.last_progress = SteadyClock::now();
  }
  while (!run.unacked.empty() && run.unacked.front().first <= run.acked) run.unacked.pop_front();
  if (m.closed) {
    if (run.phase == Assigned::Phase::kFinished && run.unacked.empty()) {
      if (run.engine.joinable()) run.engine.join();
      run_.reset();
      return;
    }
    // Closed while results are still coming: the controller is done with us for this run.
    Discard("the controller closed run " + run.assignment.run_id + " for this worker");
  }
}

void ZmqWorker::Discard(const std::string& why) {
  if (!run_) return;
  Assigned& run = *run_;
  run.stop = true;
  if (run.engine.joinable()) run.engine.join();
  size_t dropped = run.unacked.size();
  {
    std::lock_guard lock(run.mu);
    dropped += run.pending ? 1 : 0;
  }
  if (metrics_) metrics_->discarded.Add({}).Increment(static_cast<double>(dropped));
  Log(why +
      (dropped ? "; discarding " + std::to_string(dropped) + " unacknowledged result(s)" : ""));
  if (run.loading) {
    // The library thread still runs; the worker cannot wait for it.
    exit_code_ = kWorkerExitFailure;
  }
  run_.reset();
}

// ---------------------------------------------------------------------------------------------
// Results

void ZmqWorker::Pump() {
  if (!run_ || run_->phase < Assigned::Phase::kRunning) return;
  Assigned& run = *run_;
  if (!Connected()) return;  // results wait, merged, until a controller takes us back
  while (run.unacked.size() < kWindow && !run.final_seq) {
    std::optional<common::Snapshot> next;
    bool engine_done = false;
    {
      std::lock_guard lock(run.mu);
      next = std::move(run.pending);
      run.pending.reset();
      engine_done = run.engine_done;
    }
    if (!next) break;
    next->sequence = run.next_seq++;
    std::string frame = common::EncodeSnapshot(*next);
    SendFrame(frame);
    if (metrics_) metrics_->snapshots.Add({}).Increment();
    if (run.unacked.empty()) run.last_progress = SteadyClock::now();
    run.unacked.emplace_back(next->sequence, std::move(frame));
    if (next->final) {
      run.final_seq = next->sequence;
      (void)engine_done;
    }
  }
  if (run.final_seq && !run.done_sent) {
    if (run.engine.joinable()) run.engine.join();
    run.phase = Assigned::Phase::kFinished;
    bool interrupted = false;
    {
      std::lock_guard lock(run.mu);
      interrupted = run.interrupted;
    }
    run.ok = true;
    run.done_message = interrupted ? (run.stop_why.empty() ? "stopped" : run.stop_why) : "";
    ControlMessage done = Message(MessageType::kDone, options_.id, run.assignment.run_id);
    done.ok = run.ok;
    done.message = run.done_message;
    done.seq = *run.final_seq;
    done.left = leaving_;
    Send(done);
    run.done_sent = true;
    if (metrics_) metrics_->runs.Add({{"result", "ok"}}).Increment();
  }
}

void ZmqWorker::Resend(const char* why) {
  if (!run_ || !Connected()) return;
  Assigned& run = *run_;
  if (run.unacked.empty() && !run.done_sent) return;
  for (const auto& [seq, frame] : run.unacked) SendFrame(frame);
  if (metrics_) metrics_->resent.Add({}).Increment(static_cast<double>(run.unacked.size()));
  if (run.done_sent) {
    ControlMessage done = Message(MessageType::kDone, options_.id, run.assignment.run_id);
    done.ok = run.ok;
    done.message = run.done_message;
    done.seq = *run.final_seq;
    done.left = leaving_;
    Send(done);
  }
  if (!run.unacked.empty()) {
    Log("sending " + std::to_string(run.unacked.size()) + " unacknowledged snapshot(s) of run " +
        run.assignment.run_id + " again (" + why + ")");
  }
  run.last_progress = SteadyClock::now();
}

// ---------------------------------------------------------------------------------------------
// The loop

int ZmqWorker::Run(const std::atomic<int>& signals) {
  if (int failed = Connect(); failed >= 0) return failed;
  if (int failed = ServeMetrics(); failed >= 0) return failed;
  Log(options_.id + " connecting to " + options_.controller);
  next_hello_ = SteadyClock::now();
  disconnected_since_ = SteadyClock::now();
  while (exit_code_ < 0) {
    if (OnSignals(signals.load())) break;
    zmq::pollitem_t items[] = {{socket_->handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 1, std::chrono::milliseconds(20));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
      continue;  // a signal: looked at above
    }
    if (items[0].revents & ZMQ_POLLIN) Receive();
    const auto now = SteadyClock::now();
    OnTimers(now);
    CheckLoading();
    Pump();
    ResendOverdue(now);
    ExportMetrics();
  }
  if (run_ && run_->engine.joinable() && exit_code_ != kWorkerExitInterrupted) {
    run_->stop = true;
    run_->engine.join();
  }
  // Closing the socket lets what is queued (a done, a bye) go out, for at most the linger time.
  socket_.reset();
  context_.reset();
  return exit_code_;
}

int ZmqWorker::Connect() {
  context_ = std::make_unique<zmq::context_t>(1);
  socket_ = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::dealer);
  zmq::socket_t& socket = *socket_;
  // The routing id is this process's, unguessable: the controller binds our registration to it,
  // so that nobody else can speak for us (docs/wire-protocol.md#transport).
  char nonce[17];
  std::snprintf(
      nonce, sizeof nonce, "%016llx",
      static_cast<unsigned long long>(std::random_device()()) << 32 | std::random_device()());
  socket.set(zmq::sockopt::routing_id, options_.id + "/" + nonce);
  socket.set(zmq::sockopt::linger, 2000);
  socket.set(zmq::sockopt::reconnect_ivl, 100);
  socket.set(zmq::sockopt::reconnect_ivl_max, 2000);
  socket.set(zmq::sockopt::immediate, 1);
  socket.set(zmq::sockopt::heartbeat_ivl, 1000);
  socket.set(zmq::sockopt::heartbeat_timeout, 3000);
  socket.set(zmq::sockopt::maxmsgsize, int64_t{80} << 20);
  if (!options_.curve_server_key.empty()) {
    // Encrypted, and the controller is the one holding that key (CurveZMQ authenticates it).
    std::string public_key = options_.curve_public_key, secret_key = options_.curve_secret_key;
    if (secret_key.empty()) {
      auto keys = common::GenerateCurveKeys();
      if (!keys.ok()) {
        Log(keys.status().message());
        return kWorkerExitFailure;
      }
      public_key = keys->public_key;
      secret_key = keys->secret_key;
    }
    socket.set(zmq::sockopt::curve_serverkey, options_.curve_server_key);
    socket.set(zmq::sockopt::curve_publickey, public_key);
    socket.set(zmq::sockopt::curve_secretkey, secret_key);
  }
  try {
    socket.connect(options_.controller);
  } catch (const zmq::error_t& e) {
    Log("cannot connect to " + options_.controller + ": " + e.what());
    return kWorkerExitUsage;
  }
  return -1;
}

int ZmqWorker::ServeMetrics() {
  if (options_.metrics.empty()) return -1;
  try {
    metrics_ = std::make_unique<Metrics>(options_.metrics, options_.metrics_token);
  } catch (const std::exception& e) {
    Log("cannot serve metrics on " + options_.metrics + ": " + e.what());
    return kWorkerExitFailure;
  }
  Log("metrics on http://" + options_.metrics.substr(0, options_.metrics.rfind(':')) + ":" +
      std::to_string(metrics_->endpoint->port()) + "/metrics" +
      (options_.metrics_token.empty() ? "" : " (with a token)"));
  return -1;
}

bool ZmqWorker::OnSignals(int signaled) {
  if (signaled >= 2) {
    Log("second signal: leaving now");
    if (run_) run_->stop = true;
    exit_code_ = kWorkerExitInterrupted;
    return true;
  }
  if (signaled == 1 && !leaving_) {
    leaving_ = true;
    leave_by_ = SteadyClock::now() + options_.shutdown_timeout;
    Log(run_ ? "shutting down: stopping run " + run_->assignment.run_id + " and sending its results"
             : "shutting down");
    StopRun("the worker is shutting down", /*drain=*/true);
  }
  if (!leaving_) return false;
  if (run_ && SteadyClock::now() < leave_by_) return false;
  if (run_) {
    Log("shutdown timeout: leaving with " + std::to_string(run_->unacked.size()) +
        " unacknowledged snapshot(s) of run " + run_->assignment.run_id);
  }
  if (welcomed_) Send(Message(MessageType::kBye, options_.id));
  exit_code_ = kWorkerExitOk;
  return true;
}

void ZmqWorker::Receive() {
  zmq::message_t frame;
  while (exit_code_ < 0 && socket_->recv(frame, zmq::recv_flags::dontwait)) {
    if (frame.more()) {
      // Every message is one frame; drain and drop a multipart one.
      while (frame.more() && socket_->recv(frame, zmq::recv_flags::dontwait)) {
      }
      Dropped("a multipart message");
      continue;
    }
    OnFrame(std::string_view(static_cast<const char*>(frame.data()), frame.size()));
  }
}

void ZmqWorker::OnTimers(SteadyClock::time_point now) {
  if (welcomed_ && now - last_heard_ > options_.controller_timeout) {
    Log("no word from the controller for " + std::to_string(options_.controller_timeout.count()) +
        " ms; " + (run_ ? "run " + run_->assignment.run_id + " goes on, its results wait; " : "") +
        "registering again");
    welcomed_ = false;
    disconnected_since_ = now;
    next_hello_ = now;
  }
  if (!welcomed_ && now >= next_hello_) {
    SayHello();
    // Quick at first (a controller restarting is back in seconds), then every few seconds.
    hello_backoff_ = std::min<std::chrono::milliseconds>(
        kMaxHelloBackoff,
        std::max<std::chrono::milliseconds>(std::chrono::milliseconds(250), hello_backoff_ * 2));
    next_hello_ = now + hello_backoff_;
  }
  if (!welcomed_ && !run_ && !options_.curve_server_key_file.empty() && now >= next_key_check_) {
    // A worker that started before the controller wrote its new key cannot complete a CURVE
    // handshake, and would wait for ever: with nothing of a run to lose, it starts again.
    next_key_check_ = now + std::chrono::seconds(2);
    auto key = common::ReadCurvePublicKeyFile(options_.curve_server_key_file);
    if (key.ok() && *key != options_.curve_server_key) {
      Log("the controller's public key in " + options_.curve_server_key_file +
          " has changed: exiting, to start again with it");
      exit_code_ = kWorkerExitFailure;
    }
  }
  if (welcomed_ && now >= next_heartbeat_) {
    Send(Message(MessageType::kHeartbeat, options_.id));
    next_heartbeat_ = now + heartbeat_;
  }
  if (!run_) return;
  if (!welcomed_ && run_->phase == Assigned::Phase::kRunning && !run_->stop &&
      now - disconnected_since_ > options_.orphan_timeout) {
    Log("no controller for " +
        std::to_string(
            std::chrono::duration_cast<std::chrono::seconds>(options_.orphan_timeout).count()) +
        " s: stopping run " + run_->assignment.run_id + " (its results still wait)");
    StopRun("no controller for too long");
  }
  if (run_ && run_->finish && !run_->stop && now >= run_->finish_by) {
    Log("executions still in progress after the drain time: cancelling them");
    run_->stop = true;
  }
}

void ZmqWorker::ResendOverdue(SteadyClock::time_point now) {
  if (run_ && !run_->unacked.empty() && now - run_->last_progress > kResendAfter) {
    Resend("no acknowledgement");
  } else if (run_ && run_->done_sent && run_->unacked.empty() &&
             now - run_->last_progress > kResendAfter) {
    Resend("no acknowledgement of done");
  }
}

void ZmqWorker::ExportMetrics() {
  if (!metrics_) return;
  metrics_->active_users.Add({}).Set(static_cast<double>(ActiveUsers()));
  metrics_->registered.Add({}).Set(welcomed_ ? 1 : 0);
  metrics_->unacked.Add({}).Set(run_ ? static_cast<double>(run_->unacked.size()) : 0);
}

}  // namespace loads::worker
