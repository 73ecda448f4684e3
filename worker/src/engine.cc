#include "loads/worker/engine.h"

#include <cxxabi.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <condition_variable>
#include <future>
#include <mutex>
#include <numeric>
#include <thread>

#include "worker/src/fiber.h"
#include "worker/src/user_context.h"

namespace loads::worker {
namespace {

namespace asio = boost::asio;
using internal::ThreadState;
using internal::UserContext;
using SteadyClock = std::chrono::steady_clock;

struct ExecutionOutcome {
  common::Outcome kind = common::Outcome::kSuccess;
  std::string message;

  // The first problem of an execution decides its outcome (a tearDown error does not hide the
  // assertion that failed before it).
  void Set(common::Outcome k, std::string m) {
    if (kind != common::Outcome::kSuccess) return;
    kind = k;
    message = std::move(m);
  }
};

std::string CurrentExceptionType() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  if (!type) return "unknown exception";
  int status = 0;
  char* name = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
  std::string result = (status == 0 && name) ? name : type->name();
  std::free(name);
  return result;
}

// Runs fn and turns what it throws into the execution's outcome. Returns whether fn returned
// normally. This is the boundary where test code's exceptions stop.
template <typename Fn>
bool Classify(Fn&& fn, ExecutionOutcome* outcome) {
  try {
    fn();
    return true;
  } catch (const internal::ForcedUnwind&) {
    throw;
  } catch (const AssertionFailure& failure) {
    outcome->Set(common::Outcome::kFailure, failure.what());
  } catch (const NetworkError& error) {
    outcome->Set(common::Outcome::kError, "NetworkError(" + error.kind() + "): " + error.what());
  } catch (const std::exception& error) {
    outcome->Set(common::Outcome::kError, CurrentExceptionType() + ": " + error.what());
  } catch (...) {
    outcome->Set(common::Outcome::kError, "exception of type " + CurrentExceptionType());
  }
  return false;
}

// One execution: setUp, the method, tearDown (unless setUp failed), then the WebSockets the
// execution left open are closed.
void RunExecution(UserContext& ctx, TestCase& test, internal::TestMethod method) {
  ExecutionOutcome outcome;
  if (Classify([&] { test.setUp(); }, &outcome)) {
    Classify([&] { method(test); }, &outcome);
    Classify([&] { test.tearDown(); }, &outcome);
  }
  if (std::exception_ptr ws_error = ctx.CloseExecutionSockets()) {
    Classify([&] { std::rethrow_exception(ws_error); }, &outcome);
  }
  ctx.stats().RecordExecution(outcome.kind, outcome.message);
  ctx.thread().executions.fetch_add(1, std::memory_order_relaxed);
}

// The users of one cycle; the engine's thread waits until they are all done.
struct Cycle {
  std::mutex mu;
  std::condition_variable cv;
  int64_t remaining = 0;
  int64_t users = 0;
  uint64_t executions_per_user = 0;  // 0 in duration mode
  std::optional<SteadyClock::time_point> deadline;

  void UserDone() {
    std::lock_guard lock(mu);
    if (--remaining == 0) cv.notify_all();
  }
};

void RunUser(ThreadState* thread, const TestSpec* test, int64_t user_index, Cycle* cycle,
             const std::atomic<bool>* stopping) {
  UserContext ctx(thread, user_index);
  std::unique_ptr<TestCase> instance;
  ExecutionOutcome construction;
  internal::ConstructingContext() = &ctx;
  const bool made = Classify([&] { instance = test->factory(); }, &construction);
  internal::ConstructingContext() = nullptr;
  if (!made || !instance) {
    // A test case that cannot be built fails this user's first execution, once.
    if (made) construction.Set(common::Outcome::kError, "the test factory returned no test case");
    ctx.stats().RecordExecution(construction.kind, "constructor: " + construction.message);
    thread->executions.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (test->once_per_user) {
    ctx.set_cycle(cycle->users, cycle->deadline.has_value());
    ExecutionOutcome outcome;
    if (!stopping->load() && !Classify([&] { test->method(*instance); }, &outcome)) {
      ctx.stats().RecordExecution(outcome.kind, outcome.message);
      thread->executions.fetch_add(1, std::memory_order_relaxed);
    }
    ctx.CloseExecutionSockets();
    return;
  }
  for (uint64_t i = 0;; ++i) {
    if (stopping->load(std::memory_order_relaxed)) break;
    if (cycle->deadline ? SteadyClock::now() >= *cycle->deadline
                        : i >= cycle->executions_per_user) {
      break;
    }
    ctx.set_execution_index(static_cast<int64_t>(i));
    RunExecution(ctx, *instance, test->method);
  }
  ctx.CloseExecutionSockets();
}

void SpawnUser(ThreadState* thread, const TestSpec* test, int64_t user_index, Cycle* cycle,
               const std::atomic<bool>* stopping) {
  internal::SpawnCoroutine(*thread->io, thread->options.stack_size, [=](internal::Yield yield) {
    internal::CurrentYield() = &yield;
    try {
      RunUser(thread, test, user_index, cycle, stopping);
    } catch (const internal::ForcedUnwind&) {
      throw;
    } catch (...) {
      // RunUser classifies everything test code throws; this only guards the engine thread.
    }
    internal::CurrentYield() = nullptr;
    cycle->UserDone();
  });
}

// Takes every thread's statistics since the last call, each swapped out on its own thread.
common::RunStats TakeInterval(const std::vector<std::unique_ptr<ThreadState>>& threads) {
  std::vector<std::promise<common::RunStats>> parts(threads.size());
  for (size_t i = 0; i < threads.size(); ++i) {
    asio::post(*threads[i]->io, [state = threads[i].get(), part = &parts[i]] {
      common::RunStats taken;
      std::swap(taken, state->stats);
      part->set_value(std::move(taken));
    });
  }
  common::RunStats delta;
  for (auto& part : parts) delta.Merge(part.get_future().get());
  return delta;
}

// The built-in test of --url.
std::string& UrlTestTarget() {
  static std::string url;
  return url;
}

class UrlTest : public TestCase {
 public:
  void Get() { session().get(UrlTestTarget()); }
};

}  // namespace

Engine::Engine(EngineOptions options) : options_(std::move(options)) {}
Engine::~Engine() = default;

void Engine::OnInterval(std::function<void(const Interval&)> on_interval,
                        std::chrono::milliseconds period) {
  on_interval_ = std::move(on_interval);
  interval_period_ = std::max(period, std::chrono::milliseconds(1));
}

RunResult Engine::Run(const TestSpec& test, const std::atomic<bool>& stop,
                      const std::function<void(const Progress&)>& on_progress,
                      std::chrono::milliseconds interval) {
  const int thread_count = std::clamp(options_.threads, 1, 1024);
  std::vector<std::unique_ptr<ThreadState>> threads;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::thread> workers;
  for (int i = 0; i < thread_count; ++i) {
    threads.push_back(std::make_unique<ThreadState>(options_));
    guards.push_back(asio::make_work_guard(*threads.back()->io));
  }
  for (auto& state : threads) {
    workers.emplace_back([io = state->io.get()] { io->run(); });
  }

  RunResult result;
  result.info.test = test.name;
  result.info.users = options_.users;
  result.info.hits = options_.duration ? std::vector<int64_t>{} : options_.hits;
  result.info.duration = options_.duration;
  result.info.threads = thread_count;
  result.info.started = std::chrono::system_clock::now();
  const auto start = SteadyClock::now();

  const uint64_t planned =
      options_.duration ? 0 : common::PlannedExecutions(options_.users, options_.hits);
  const uint64_t per_user = static_cast<uint64_t>(
      std::accumulate(options_.hits.begin(), options_.hits.end(), int64_t{0}));
  std::atomic<bool> stopping{false};

  Progress progress;
  progress.planned_executions = planned;
  progress.cycles = options_.users.size();
  SteadyClock::time_point cycle_start = start;
  auto report_progress = [&](size_t cycle_index) {
    progress.executions = 0;
    progress.hits = 0;
    for (const auto& state : threads) {
      progress.executions += state->executions.load(std::memory_order_relaxed);
      progress.hits += state->hits.load(std::memory_order_relaxed);
    }
    const auto now = SteadyClock::now();
    progress.elapsed_seconds = std::chrono::duration<double>(now - start).count();
    progress.cycle = cycle_index + 1;
    if (options_.duration) {
      const double in_cycle = std::chrono::duration<double>(now - cycle_start).count();
      const double part = *options_.duration > 0 ? std::min(1.0, in_cycle / *options_.duration) : 1;
      progress.fraction = (static_cast<double>(cycle_index) + part) / options_.users.size();
    } else {
      progress.fraction = planned ? static_cast<double>(progress.executions) / planned : 1;
    }
    progress.fraction = std::clamp(progress.fraction, 0.0, 1.0);
    if (on_progress) on_progress(progress);
  };
  auto interval_start = result.info.started;
  auto last_interval = start;
  auto emit_interval = [&](common::RunStats delta, bool final) {
    Interval interval;
    interval.start = interval_start;
    interval.end = std::chrono::system_clock::now();
    interval.final = final;
    interval.stats = std::move(delta);
    interval_start = interval.end;
    last_interval = SteadyClock::now();
    result.stats.Merge(interval.stats);
    on_interval_(interval);
  };
  // A finish lets the executions in progress end normally (a worker leaving gracefully); a
  // stop cancels them at once.
  bool cancelled = false;
  auto check_stop = [&] {
    const bool stop_now = stop.load();
    if ((stop_now || (options_.finish && options_.finish->load())) && !stopping.load()) {
      stopping = true;
      result.info.interrupted = true;
    }
    if (!stop_now || cancelled) return;
    cancelled = true;
    for (auto& state : threads) {
      asio::post(*state->io, [s = state.get()] {
        for (UserContext* user : s->live_users) user->Cancel();
      });
    }
  };

  size_t cycle_index = 0;
  for (; cycle_index < options_.users.size(); ++cycle_index) {
    check_stop();
    if (stopping) break;
    Cycle cycle;
    cycle.remaining = options_.users[cycle_index];
    cycle.users = cycle.remaining;
    cycle.executions_per_user = per_user;
    cycle_start = SteadyClock::now();
    if (options_.duration) {
      cycle.deadline = cycle_start + std::chrono::duration_cast<SteadyClock::duration>(
                                         std::chrono::duration<double>(*options_.duration));
    }
    if (cycle.remaining == 0) {
      // A worker given no user in this cycle (a cluster's split of a small cycle) still lets
      // the cycle last its duration, so that its next cycles start with the other workers'.
      while (cycle.deadline && SteadyClock::now() < *cycle.deadline && !stop.load() &&
             !(options_.finish && options_.finish->load())) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      continue;
    }
    for (int64_t user = 0; user < options_.users[cycle_index]; ++user) {
      ThreadState* state = threads[static_cast<size_t>(user % thread_count)].get();
      asio::post(*state->io, [state, &test, user, &cycle, &stopping] {
        SpawnUser(state, &test, user, &cycle, &stopping);
      });
    }
    // Stop requests are checked more often than progress is shown, so that Ctrl-C acts at
    // once even when progress is printed once a second.
    const auto poll = std::min(interval, std::chrono::milliseconds(50));
    auto last_report = SteadyClock::now();
    std::unique_lock lock(cycle.mu);
    while (cycle.remaining > 0) {
      cycle.cv.wait_for(lock, poll);
      if (cycle.remaining == 0) break;
      lock.unlock();
      check_stop();
      if (on_interval_ && SteadyClock::now() - last_interval >= interval_period_) {
        emit_interval(TakeInterval(threads), false);
      }
      if (SteadyClock::now() - last_report >= interval) {
        last_report = SteadyClock::now();
        report_progress(cycle_index);
      }
      lock.lock();
    }
  }
  report_progress(std::min(cycle_index, options_.users.size() - 1));

  result.info.duration_seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  for (auto& state : threads) internal::StopWatchdog(*state);
  guards.clear();
  for (auto& worker : workers) worker.join();
  common::RunStats rest;
  for (const auto& state : threads) rest.Merge(state->stats);
  if (on_interval_) {
    emit_interval(std::move(rest), true);
  } else {
    result.stats.Merge(rest);
  }
  return result;
}

EngineOptions EngineOptionsFor(const common::Assignment& plan) {
  EngineOptions options;
  options.users = plan.users;
  options.hits = plan.hits;
  options.duration = plan.duration;
  options.threads = static_cast<int>(plan.threads);
  if (options.threads <= 0) {
    const int64_t cpus = std::max(1u, std::thread::hardware_concurrency());
    const int64_t users = *std::max_element(plan.users.begin(), plan.users.end());
    options.threads = static_cast<int>(std::clamp<int64_t>(std::min(cpus, users), 1, 1024));
  }
  options.server_url = plan.server_url;
  options.connect_timeout = std::chrono::milliseconds(plan.connect_timeout_ms);
  options.timeout = std::chrono::milliseconds(plan.timeout_ms);
  options.verify_tls = !plan.insecure;
  options.run_id = plan.run_id.empty() ? "local" : plan.run_id;
  return options;
}

TestSpec MakeUrlTest(const std::string& url) {
  UrlTestTarget() = url;
  return TestSpec{
      "GET " + url,
      []() -> std::unique_ptr<TestCase> { return std::make_unique<UrlTest>(); },
      [](TestCase& test) { static_cast<UrlTest&>(test).Get(); },
  };
}

}  // namespace loads::worker
