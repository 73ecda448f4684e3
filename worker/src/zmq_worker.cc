#include "worker/src/zmq_worker.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <sys/stat.h>

#include <cstdio>
#include <deque>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>
#include <zmq.hpp>

#include "loads/common/protocol.h"
#include "loads/common/snapshot.h"
#include "loads/worker/engine.h"
#include "loads/worker/scenario.h"
#include "loads/worker/test_loader.h"

namespace loads::worker {
namespace {

using common::ControlMessage;
using common::MessageType;
using common::UnixNanos;
using SteadyClock = std::chrono::steady_clock;

// Logs to stderr at most once per second per kind, so garbage sent at a high rate cannot flood
// the log.
class RateLimitedLog {
 public:
  void Count(prometheus::Counter* counter) { counter_ = counter; }
  void Log(const std::string& kind, const std::string& line) {
    const auto now = SteadyClock::now();
    ++count_;
    if (counter_) counter_->Increment();
    if (now - last_ < std::chrono::seconds(1)) return;
    last_ = now;
    std::fprintf(stderr, "loads-worker: %s: %s (%llu dropped so far)\n", kind.c_str(), line.c_str(),
                 static_cast<unsigned long long>(count_));
  }

 private:
  SteadyClock::time_point last_{};
  uint64_t count_ = 0;
  prometheus::Counter* counter_ = nullptr;
};

// One run on this worker: the assignment, its loaded test and the thread running it.
struct RunState {
  common::Assignment assignment;
  TestSpec test;
  std::thread thread;
  std::atomic<bool> stop{false};
  std::atomic<bool> finished{false};
  bool started = false;
};

// The worker's own metrics (docs/metrics.md), served when --metrics is given.
struct WorkerMetrics {
  explicit WorkerMetrics(const std::string& address) : exposer(address) {
    exposer.RegisterCollectable(registry);
  }
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  prometheus::Exposer exposer;
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
          .Help("Result snapshots this worker sent")
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
};

}  // namespace

ZmqWorker::ZmqWorker(WorkerOptions options) : options_(std::move(options)) {}

int ZmqWorker::Run(const std::atomic<bool>& stop) {
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::routing_id, options_.id);
  socket.set(zmq::sockopt::linger, 2000);
  socket.set(zmq::sockopt::reconnect_ivl, 100);
  socket.set(zmq::sockopt::maxmsgsize, int64_t{80} << 20);
  try {
    socket.connect(options_.controller);
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "loads-worker: cannot connect to %s: %s\n", options_.controller.c_str(),
                 e.what());
    return 2;
  }

  std::unique_ptr<WorkerMetrics> metrics;
  if (!options_.metrics.empty()) {
    try {
      metrics = std::make_unique<WorkerMetrics>(options_.metrics);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "loads-worker: cannot serve metrics on %s: %s\n",
                   options_.metrics.c_str(), e.what());
      return 1;
    }
    const auto ports = metrics->exposer.GetListeningPorts();
    std::fprintf(stderr, "loads-worker: metrics on http://%s:%d/metrics\n",
                 options_.metrics.substr(0, options_.metrics.rfind(':')).c_str(),
                 ports.empty() ? 0 : ports.front());
  }
  WorkerMetrics* m = metrics.get();
  std::mutex outbox_mu;
  std::deque<std::string> outbox;  // frames from the run thread, sent by this thread
  auto post = [&](std::string frame) {
    std::lock_guard lock(outbox_mu);
    outbox.push_back(std::move(frame));
  };
  auto send = [&](const std::string& frame) {
    socket.send(zmq::buffer(frame), zmq::send_flags::dontwait);
  };
  auto control = [&](MessageType type, const std::string& run_id = {}) {
    ControlMessage m;
    m.type = type;
    m.worker_id = options_.id;
    m.run_id = run_id;
    return m;
  };
  auto done = [&, m](const std::string& run_id, bool ok, const std::string& message) {
    if (m) m->runs.Add({{"result", ok ? "ok" : "failed"}}).Increment();
    ControlMessage msg = control(MessageType::kDone, run_id);
    msg.ok = ok;
    msg.message = message;
    return common::EncodeControl(msg);
  };

  RateLimitedLog dropped;
  if (m) dropped.Count(&m->dropped.Add({}));
  std::unique_ptr<RunState> run;
  bool welcomed = false;
  auto heartbeat = std::chrono::milliseconds(1000);
  auto last_heard = SteadyClock::now();
  auto next_hello = SteadyClock::now();
  auto next_heartbeat = SteadyClock::now();
  uint64_t run_counter = 0;

  auto stop_run = [&](const char* why) {
    if (!run) return;
    if (run->started) {
      run->stop = true;
    } else {
      send(done(run->assignment.run_id, false, why));
      run.reset();
    }
  };

  auto handle_assign = [&](const common::Assignment& a) {
    if (run) {
      send(done(a.run_id, false,
                "worker " + options_.id + " is busy with run " + run->assignment.run_id));
      return;
    }
    auto state = std::make_unique<RunState>();
    state->assignment = a;
    if (!a.url.empty()) {
      state->test = MakeUrlTest(a.url);
    } else if (!a.external_command.empty()) {
      state->test = MakeExternalTest(a.external_command);
    } else if (!a.scenario.empty()) {
      std::string error;
      auto scenario = ParseScenario(a.scenario, &error);
      if (!scenario) {
        send(done(a.run_id, false, "invalid scenario: " + error));
        return;
      }
      state->test = MakeScenarioTest(std::move(*scenario));
    } else {
      // A library is written to its own folder per run, named after its module, and loaded
      // from there like a local test library.
      const std::string dir = options_.work_dir + "/" + std::to_string(++run_counter);
      ::mkdir(options_.work_dir.c_str(), 0700);
      ::mkdir(dir.c_str(), 0700);
      const std::string module = a.test.substr(0, a.test.find('.'));
      {
        std::ofstream file(dir + "/" + module + ".so", std::ios::binary | std::ios::trunc);
        file.write(a.library.data(), static_cast<std::streamsize>(a.library.size()));
        if (!file) {
          send(done(a.run_id, false, "cannot write the test library to " + dir));
          return;
        }
      }
      LoadResult loaded = LoadTest(a.test, {dir});
      if (loaded.error != LoadError::kNone) {
        send(done(a.run_id, false, loaded.message));
        return;
      }
      state->test = loaded.test;
    }
    run = std::move(state);
    send(common::EncodeControl(control(MessageType::kReady, a.run_id)));
  };

  WorkerMetrics* metrics_ptr = m;
  auto handle_start = [&](const ControlMessage& m) {
    if (!run || run->assignment.run_id != m.run_id || run->started) {
      dropped.Log("start", "not assigned run " + m.run_id);
      return;
    }
    run->started = true;
    RunState* state = run.get();
    const std::string worker_id = options_.id;
    state->thread = std::thread([state, post, worker_id, start_at = m.start_at, done,
                                 m = metrics_ptr] {
      // Start together with the other workers: wait for the common start time (at most 10 s).
      const auto at = std::chrono::system_clock::time_point(
          std::chrono::duration_cast<std::chrono::system_clock::duration>(
              std::chrono::nanoseconds(start_at)));
      const auto latest = std::chrono::system_clock::now() + std::chrono::seconds(10);
      while (std::chrono::system_clock::now() < std::min(at, latest) && !state->stop) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      const common::Assignment& a = state->assignment;
      EngineOptions options;
      options.users = a.users;
      options.hits = a.hits;
      options.duration = a.duration;
      options.threads = static_cast<int>(a.threads);
      options.server_url = a.server_url;
      options.connect_timeout = std::chrono::milliseconds(a.connect_timeout_ms);
      options.timeout = std::chrono::milliseconds(a.timeout_ms);
      options.verify_tls = !a.insecure;
      options.run_id = a.run_id;
      Engine engine(options);
      uint64_t sequence = 0;
      engine.OnInterval(
          [&](const Interval& interval) {
            common::Snapshot snapshot;
            snapshot.run_id = a.run_id;
            snapshot.worker_id = worker_id;
            snapshot.sequence = ++sequence;
            snapshot.interval_start = UnixNanos(interval.start);
            snapshot.interval_end = UnixNanos(interval.end);
            snapshot.final = interval.final;
            snapshot.active_users =
                interval.final ? 0 : static_cast<uint64_t>(std::max<int64_t>(0, ActiveUsers()));
            snapshot.stats = interval.stats;
            post(common::EncodeSnapshot(snapshot));
            if (m) {
              const auto& st = interval.stats;
              m->hits.Add({}).Increment(static_cast<double>(st.hits));
              m->executions.Add({{"outcome", "success"}})
                  .Increment(static_cast<double>(st.successes));
              m->executions.Add({{"outcome", "failure"}})
                  .Increment(static_cast<double>(st.failures));
              m->executions.Add({{"outcome", "error"}}).Increment(static_cast<double>(st.errors));
              m->snapshots.Add({}).Increment();
            }
          },
          std::chrono::seconds(1));
      auto result = engine.Run(state->test, state->stop, nullptr, std::chrono::milliseconds(200));
      post(done(a.run_id, true, result.info.interrupted ? "stopped" : ""));
      state->finished = true;
    });
  };

  std::fprintf(stderr, "loads-worker: %s connecting to %s\n", options_.id.c_str(),
               options_.controller.c_str());
  while (true) {
    const auto now = SteadyClock::now();
    if (stop && !run) break;
    if (stop) stop_run("the worker is shutting down");
    zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 1, std::chrono::milliseconds(20));
    if (items[0].revents & ZMQ_POLLIN) {
      zmq::message_t frame;
      while (socket.recv(frame, zmq::recv_flags::dontwait)) {
        if (frame.more()) {
          // Every message is one frame; drain and drop a multipart one.
          while (frame.more() && socket.recv(frame, zmq::recv_flags::dontwait)) {
          }
          dropped.Log("dropped", "a multipart message");
          continue;
        }
        last_heard = SteadyClock::now();
        const std::string_view bytes(static_cast<const char*>(frame.data()), frame.size());
        ControlMessage m;
        std::string error;
        if (!common::DecodeControl(bytes, &m, &error)) {
          dropped.Log("dropped", "unreadable message: " + error);
          continue;
        }
        switch (m.type) {
          case MessageType::kWelcome:
            if (!welcomed) {
              std::fprintf(stderr, "loads-worker: registered with %s\n",
                           options_.controller.c_str());
            }
            welcomed = true;
            heartbeat = std::chrono::milliseconds(m.heartbeat_ms);
            break;
          case MessageType::kHeartbeat:
            break;
          case MessageType::kAssign:
            handle_assign(*m.assignment);
            break;
          case MessageType::kStart:
            handle_start(m);
            break;
          case MessageType::kStop:
            if (run && run->assignment.run_id == m.run_id) {
              stop_run("stopped before it started");
            } else {
              dropped.Log("stop", "not running run " + m.run_id);
            }
            break;
          default:
            dropped.Log("dropped", "a " + std::string(common::MessageTypeName(m.type)) +
                                       " message, which only workers send");
        }
      }
    }
    if (!welcomed && now >= next_hello) {
      ControlMessage hello = control(MessageType::kHello);
      hello.token = options_.token;
      hello.threads = options_.threads;
      hello.sdk_version = LOADS_SDK_VERSION;
      send(common::EncodeControl(hello));
      next_hello = now + std::chrono::seconds(1);
    }
    if (welcomed && now >= next_heartbeat) {
      send(common::EncodeControl(control(MessageType::kHeartbeat)));
      next_heartbeat = now + heartbeat;
    }
    if (welcomed && now - last_heard > options_.controller_timeout) {
      std::fprintf(stderr, "loads-worker: no word from the controller for %lld ms; %s\n",
                   static_cast<long long>(options_.controller_timeout.count()),
                   run ? "stopping the run and registering again" : "registering again");
      stop_run("the controller was lost");
      welcomed = false;
      next_hello = now;
    }
    if (m) {
      m->active_users.Add({}).Set(static_cast<double>(ActiveUsers()));
      m->registered.Add({}).Set(welcomed ? 1 : 0);
    }
    std::deque<std::string> frames;
    {
      std::lock_guard lock(outbox_mu);
      frames.swap(outbox);
    }
    for (const auto& frame : frames) send(frame);
    if (run && run->finished) {
      run->thread.join();
      run.reset();
    }
  }
  return 0;
}

}  // namespace loads::worker
