#include "loads/worker/engine.h"

#include <cxxabi.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cmath>
#include <condition_variable>
#include <future>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>

#include "loads/common/target_allow.h"
#include "loads/worker/crash.h"
#include "worker/src/fiber.h"
#include "worker/src/user_context.h"

namespace loads::worker {
namespace {

namespace asio = boost::asio;
using internal::ThreadState;
using internal::UserContext;
using SteadyClock = std::chrono::steady_clock;
using SteadyTime = SteadyClock::time_point;

uint64_t Nanos(SteadyClock::duration d) {
  return static_cast<uint64_t>(
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()));
}

SteadyClock::duration Seconds(double s) {
  return std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(s));
}

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
// execution left open are closed. An execution with an intended start (an arrival, a pace)
// records how late it started, and its hits their latency from that start.
void RunExecution(UserContext& ctx, TestCase& test, internal::TestMethod method,
                  std::optional<SteadyTime> intended = std::nullopt) {
  common::RunStats& stats = ctx.stats();
  ++stats.started;
  if (intended) stats.schedule_lag.Record(Nanos(SteadyClock::now() - *intended));
  ctx.set_intended_start(intended);
  ExecutionOutcome outcome;
  if (Classify([&] { test.setUp(); }, &outcome)) {
    Classify([&] { method(test); }, &outcome);
    Classify([&] { test.tearDown(); }, &outcome);
  }
  if (std::exception_ptr ws_error = ctx.CloseExecutionSockets()) {
    Classify([&] { std::rethrow_exception(ws_error); }, &outcome);
  }
  ctx.set_intended_start(std::nullopt);
  ctx.stats().RecordExecution(outcome.kind, outcome.message);
  ctx.thread().executions.fetch_add(1, std::memory_order_relaxed);
}

// Makes the user's test case; on failure records one failed execution and returns null.
std::unique_ptr<TestCase> MakeTestCase(UserContext& ctx, const TestSpec& test) {
  std::unique_ptr<TestCase> instance;
  ExecutionOutcome construction;
  internal::ConstructingContext() = &ctx;
  const bool made = Classify([&] { instance = test.factory(); }, &construction);
  internal::ConstructingContext() = nullptr;
  if (made && instance) return instance;
  // A test case that cannot be built fails this user's first execution, once.
  if (made) construction.Set(common::Outcome::kError, "the test factory returned no test case");
  ++ctx.stats().started;
  ctx.stats().RecordExecution(construction.kind, "constructor: " + construction.message);
  ctx.thread().executions.fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

// What every user of a run shares: the test, the stop, the clock's zero, who is alive.
struct Shared {
  const TestSpec* test = nullptr;
  const EngineOptions* options = nullptr;
  std::atomic<bool> stopping{false};  // no new execution starts
  SteadyTime start;                   // the load's time zero
  std::atomic<int64_t> live{0};       // user coroutines alive
  std::mutex mu;
  std::condition_variable cv;  // signalled when the last user is done

  void UserStarted() { live.fetch_add(1); }
  void UserDone() {
    if (live.fetch_sub(1) == 1) {
      std::lock_guard lock(mu);
      cv.notify_all();
    }
  }
};

// Between a closed-model user's executions: pacing or think time (docs/load-models.md).
class Pace {
 public:
  Pace(const common::LoadModel& load, uint64_t seed) : load_(load), rng_(seed) {}

  // Before execution `i`: waits as the model asks. False when the run was stopped meanwhile.
  // *intended is the execution's intended start under pacing.
  bool Before(UserContext& ctx, uint64_t i, std::optional<SteadyTime>* intended) {
    intended->reset();
    const SteadyTime now = SteadyClock::now();
    if (load_.pacing) {
      if (i == 0) {
        next_ = now;
      } else {
        next_ += Seconds(*load_.pacing);
        if (now > next_) {
          ++ctx.stats().missed_pace;  // the previous one ran past this one's start
        } else if (!ctx.SleepUntil(next_)) {
          return false;
        }
      }
      *intended = next_;
      return true;
    }
    if (load_.pause_min && i > 0) {
      const double seconds =
          std::uniform_real_distribution<double>(*load_.pause_min, *load_.pause_max)(rng_);
      return ctx.SleepUntil(now + Seconds(seconds));
    }
    return true;
  }

 private:
  const common::LoadModel& load_;
  std::mt19937_64 rng_;
  SteadyTime next_{};
};

// A cycle of the closed model: its users, and the executions of each (or its deadline).
struct Cycle {
  int64_t users = 0;
  uint64_t executions_per_user = 0;  // 0 in duration mode
  std::optional<SteadyTime> deadline;
};

// The closed model, ramped: how many users this engine runs now, and which slots are taken.
struct Ramp {
  Ramp(double start, const std::vector<common::Stage>& stages) : schedule(start, stages) {}
  common::UserSchedule schedule;
  std::atomic<int64_t> target{0};
  std::vector<std::unique_ptr<std::atomic<bool>>> running;  // per user slot
  SteadyTime end;
};

struct PooledUser;

// The open model on one engine thread: its share of the arrivals, and the users that serve them.
struct Pool {
  ThreadState* thread = nullptr;
  Shared* shared = nullptr;
  const common::RateSchedule* schedule = nullptr;
  std::unique_ptr<asio::steady_timer> timer;
  int64_t max_users = 1;
  int64_t users = 0;              // alive in this pool
  std::vector<PooledUser*> idle;  // waiting for an arrival
  double next_count = 0;          // Λ of this thread's next arrival
  double stride = 1;              // arrivals of the whole run per arrival of this thread
  bool poisson = false;
  std::mt19937_64 rng;
  bool closed = false;        // no more arrivals
  bool looked_again = false;  // the next arrival was already looked for again
  uint64_t hits_at_look = 0;  // the thread's hits when it was
  std::atomic<bool>* all_closed_flag = nullptr;
  std::atomic<int>* open_pools = nullptr;
  int64_t next_index = 0;  // user_index of the next user made
};

// A user of the open model, between arrivals.
struct PooledUser {
  explicit PooledUser(asio::io_context& io) : wake(io) {}
  asio::steady_timer wake;
  std::optional<SteadyTime> job;  // the intended start of the arrival it was given
};

// An arrival due sooner than this is first looked for again after the handlers ready now: at
// high rates the thread is busy with responses and the arrival is due by then, which saves
// re-arming the timerfd (a system call that cost 15% of a busy thread). It looks again only
// while responses keep arriving in between: an idle thread would spin, burning a core the
// target may need (2 cores for 20,000 arrivals/s when every look was a post).
constexpr auto kLookAgainHorizon = std::chrono::microseconds(200);

void ClosePool(Pool* pool) {
  if (pool->closed) return;
  pool->closed = true;
  pool->timer->cancel();
  // Idle users leave; busy ones finish their execution first.
  for (PooledUser* user : pool->idle) {
    user->job.reset();
    user->wake.cancel();
  }
  pool->idle.clear();
  pool->open_pools->fetch_sub(1);
}

void SpawnPooledUser(Pool* pool, SteadyTime job) {
  ThreadState* thread = pool->thread;
  Shared* shared = pool->shared;
  ++pool->users;
  shared->UserStarted();
  const int64_t index = pool->next_index++;
  internal::SpawnCoroutine(*thread->io, thread->options.stack_size, [=](internal::Yield yield) {
    internal::CurrentYield() = &yield;
    internal::SetCurrentUser(index);
    try {
      UserContext ctx(thread, index);
      std::unique_ptr<TestCase> instance = MakeTestCase(ctx, *shared->test);
      if (instance) {
        PooledUser self(*thread->io);
        std::optional<SteadyTime> next = job;
        while (next) {
          RunExecution(ctx, *instance, shared->test->method, next);
          next.reset();
          if (pool->closed || shared->stopping) break;
          self.wake.expires_at(SteadyTime::max());
          pool->idle.push_back(&self);
          boost::system::error_code ec;
          internal::Await([&](internal::Yield& y) { self.wake.async_wait(y[ec]); });
          next = self.job;
          self.job.reset();
        }
        std::erase(pool->idle, &self);
      }
      ctx.CloseExecutionSockets();
    } catch (const internal::ForcedUnwind&) {
      throw;
    } catch (...) {
      // RunExecution classifies everything test code throws; this only guards the thread.
    }
    internal::CurrentYield() = nullptr;
    internal::SetCurrentUser(-1);
    --pool->users;
    shared->UserDone();
  });
}

// Starts the arrivals of this thread that are due, and waits for the next one.
void OnArrivals(Pool* pool) {
  if (pool->closed) return;
  const SteadyTime now = SteadyClock::now();
  while (true) {
    const std::optional<double> at = pool->schedule->TimeOf(pool->next_count);
    if (!at || pool->shared->stopping) return ClosePool(pool);
    const SteadyTime due = pool->shared->start + Seconds(*at);
    if (due > now) {
      const uint64_t hits = pool->thread->hits.load(std::memory_order_relaxed);
      if (due - now < kLookAgainHorizon && (!pool->looked_again || hits != pool->hits_at_look)) {
        pool->looked_again = true;
        pool->hits_at_look = hits;
        asio::post(*pool->thread->io, [pool] { OnArrivals(pool); });
        return;
      }
      pool->timer->expires_at(due);
      pool->timer->async_wait([pool](const boost::system::error_code& ec) {
        if (!ec) OnArrivals(pool);
      });
      return;
    }
    pool->looked_again = false;
    pool->next_count += pool->poisson
                            ? std::exponential_distribution<double>(1.0)(pool->rng) * pool->stride
                            : pool->stride;
    if (!pool->idle.empty()) {
      PooledUser* user = pool->idle.back();
      pool->idle.pop_back();
      user->job = due;
      user->wake.cancel();
    } else if (pool->users < pool->max_users) {
      SpawnPooledUser(pool, due);
    } else {
      ++pool->thread->stats.dropped;  // never delayed: an arrival without a user is not run
    }
  }
}

void RunClosedUser(ThreadState* thread, Shared* shared, int64_t user_index, Cycle* cycle,
                   Ramp* ramp) {
  UserContext ctx(thread, user_index);
  std::unique_ptr<TestCase> instance = MakeTestCase(ctx, *shared->test);
  if (!instance) return;
  const TestSpec& test = *shared->test;
  if (test.once_per_user) {
    ctx.set_cycle(cycle->users, cycle->deadline.has_value());
    ExecutionOutcome outcome;
    ++ctx.stats().started;
    if (!shared->stopping.load() && !Classify([&] { test.method(*instance); }, &outcome)) {
      ctx.stats().RecordExecution(outcome.kind, outcome.message);
      thread->executions.fetch_add(1, std::memory_order_relaxed);
    }
    ctx.CloseExecutionSockets();
    return;
  }
  Pace pace(shared->options->load,
            std::hash<int64_t>()(user_index) ^
                static_cast<uint64_t>(SteadyClock::now().time_since_epoch().count()));
  const auto over = [&](uint64_t i) {
    if (shared->stopping.load(std::memory_order_relaxed)) return true;
    if (ramp) {
      return SteadyClock::now() >= ramp->end ||
             user_index >= ramp->target.load(std::memory_order_relaxed);
    }
    return cycle->deadline ? SteadyClock::now() >= *cycle->deadline
                           : i >= cycle->executions_per_user;
  };
  for (uint64_t i = 0; !over(i); ++i) {
    std::optional<SteadyTime> intended;
    if (!pace.Before(ctx, i, &intended) || over(i)) break;
    ctx.set_execution_index(static_cast<int64_t>(i));
    RunExecution(ctx, *instance, test.method, intended);
  }
  ctx.CloseExecutionSockets();
}

void SpawnClosedUser(ThreadState* thread, Shared* shared, int64_t user_index, Cycle* cycle,
                     Ramp* ramp) {
  internal::SpawnCoroutine(*thread->io, thread->options.stack_size, [=](internal::Yield yield) {
    internal::CurrentYield() = &yield;
    internal::SetCurrentUser(user_index);
    try {
      RunClosedUser(thread, shared, user_index, cycle, ramp);
    } catch (const internal::ForcedUnwind&) {
      throw;
    } catch (...) {
      // RunClosedUser classifies everything test code throws; this only guards the thread.
    }
    internal::CurrentYield() = nullptr;
    internal::SetCurrentUser(-1);
    if (ramp) ramp->running[static_cast<size_t>(user_index)]->store(false);
    shared->UserDone();
  });
}

// Takes the engine threads' statistics for intervals, each swapped out on its own thread so that
// the threads never lock. A thread that does not answer within a short wait (a user holding it)
// is not waited for: its statistics come with a later interval, still counted once.
//
// Thread safety: Take from one thread; the swaps run on the engine threads. Must outlive the
// engine threads' handlers (it lives as long as the run).
class IntervalCollector {
 public:
  explicit IntervalCollector(const std::vector<std::unique_ptr<ThreadState>>& threads)
      : threads_(threads), parts_(threads.size()), pending_(threads.size(), false) {}

  common::RunStats Take(std::chrono::milliseconds wait) {
    std::unique_lock lock(mu_);
    for (size_t i = 0; i < threads_.size(); ++i) {
      if (pending_[i]) continue;  // still stuck since the last time
      pending_[i] = true;
      asio::post(*threads_[i]->io, [this, i, state = threads_[i].get()] {
        common::RunStats taken;
        std::swap(taken, state->stats);
        std::lock_guard hold(mu_);
        parts_[i].Merge(taken);
        pending_[i] = false;
        cv_.notify_all();
      });
    }
    cv_.wait_for(lock, wait, [&] {
      return std::none_of(pending_.begin(), pending_.end(), [](bool p) { return p; });
    });
    common::RunStats delta;
    for (auto& part : parts_) {
      delta.Merge(part);
      part = common::RunStats();
    }
    return delta;
  }

  // After the engine threads have ended: what they answered late.
  common::RunStats Rest() {
    std::lock_guard lock(mu_);
    common::RunStats rest;
    for (auto& part : parts_) rest.Merge(part);
    return rest;
  }

 private:
  const std::vector<std::unique_ptr<ThreadState>>& threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<common::RunStats> parts_;
  std::vector<bool> pending_;
};

// Watches the engine threads' beats: a thread whose beat stops for longer than the limit has a
// user that does not yield.
class StuckWatch {
 public:
  StuckWatch(const std::vector<std::unique_ptr<ThreadState>>& threads,
             std::chrono::milliseconds limit)
      : threads_(threads), limit_(limit), seen_(threads.size()) {
    const auto now = SteadyClock::now();
    for (size_t i = 0; i < threads.size(); ++i) seen_[i] = {threads[i]->beats.load(), now, false};
  }

  void Check(const std::function<void(const StuckUser&)>& report) {
    if (limit_.count() <= 0) return;
    const auto now = SteadyClock::now();
    for (size_t i = 0; i < threads_.size(); ++i) {
      Seen& seen = seen_[i];
      const uint64_t beats = threads_[i]->beats.load(std::memory_order_relaxed);
      const double silent = std::chrono::duration<double>(now - seen.since).count();
      if (beats != seen.beats) {
        if (seen.reported && report) {
          report({static_cast<int>(i), threads_[i]->running_user.load(), silent, true});
        }
        seen = {beats, now, false};
      } else if (!seen.reported && now - seen.since > limit_) {
        seen.reported = true;
        if (report) report({static_cast<int>(i), threads_[i]->running_user.load(), silent, false});
      }
    }
  }

 private:
  struct Seen {
    uint64_t beats = 0;
    SteadyTime since;
    bool reported = false;
  };
  const std::vector<std::unique_ptr<ThreadState>>& threads_;
  std::chrono::milliseconds limit_;
  std::vector<Seen> seen_;
};

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

void Engine::OnStuck(std::function<void(const StuckUser&)> on_stuck) {
  on_stuck_ = std::move(on_stuck);
}

void Engine::OnInterval(std::function<void(const Interval&)> on_interval,
                        std::chrono::milliseconds period) {
  on_interval_ = std::move(on_interval);
  interval_period_ = std::max(period, std::chrono::milliseconds(1));
}

RunResult Engine::Run(const TestSpec& test, const std::atomic<bool>& stop,
                      const std::function<void(const Progress&)>& on_progress,
                      std::chrono::milliseconds interval) {
  const common::LoadModel& load = options_.load;
  const int thread_count = std::clamp(options_.threads, 1, 1024);
  std::vector<std::unique_ptr<ThreadState>> threads;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::thread> workers;
  for (int i = 0; i < thread_count; ++i) {
    threads.push_back(std::make_unique<ThreadState>(options_));
    guards.push_back(asio::make_work_guard(*threads.back()->io));
  }
  for (auto& state : threads) {
    workers.emplace_back([state = state.get()] {
      internal::RunningUserSlot() = &state->running_user;
      CrashReportStack crash_stack;
      state->io->run();
    });
  }

  RunResult result;
  result.info.test = test.name;
  result.info.users = options_.users;
  result.info.hits = options_.duration ? std::vector<int64_t>{} : options_.hits;
  result.info.duration = options_.duration;
  result.info.threads = thread_count;
  result.info.load = load;
  result.info.started = std::chrono::system_clock::now();
  const auto start = SteadyClock::now();

  Shared shared;
  shared.test = &test;
  shared.options = &options_;
  shared.start = start;

  const uint64_t per_user = static_cast<uint64_t>(
      std::accumulate(options_.hits.begin(), options_.hits.end(), int64_t{0}));
  std::optional<common::RateSchedule> rates;
  if (load.open()) rates.emplace(load, options_.duration.value_or(0));
  std::optional<Ramp> ramp;
  if (load.ramped()) {
    ramp.emplace(options_.users.empty() ? 0.0 : static_cast<double>(options_.users[0]),
                 load.stages);
    ramp->end = start + Seconds(ramp->schedule.EndSeconds());
    const int64_t slots =
        common::ShareOf(ramp->schedule.PeakUsers(), load.share_offset, load.share_stride);
    for (int64_t i = 0; i < slots; ++i) {
      ramp->running.push_back(std::make_unique<std::atomic<bool>>(false));
    }
  }
  const auto share_target = [&](double seconds) {
    return rates ? rates->RateAt(seconds) / static_cast<double>(load.share_stride) : 0.0;
  };

  Progress progress;
  progress.planned_executions = options_.duration || load.ramped() ? 0
                                : rates                            ? 0
                                        : common::PlannedExecutions(options_.users, options_.hits);
  progress.cycles = load.open() || load.ramped() ? 1 : options_.users.size();
  progress.ramped = load.ramped();
  SteadyTime cycle_start = start;
  size_t cycle_index = 0;
  auto report_progress = [&] {
    progress.executions = 0;
    progress.hits = 0;
    for (const auto& state : threads) {
      progress.executions += state->executions.load(std::memory_order_relaxed);
      progress.hits += state->hits.load(std::memory_order_relaxed);
    }
    const auto now = SteadyClock::now();
    progress.elapsed_seconds = std::chrono::duration<double>(now - start).count();
    progress.cycle = std::min(cycle_index, progress.cycles - 1) + 1;
    progress.active_users = ActiveUsers();
    progress.target_rate = share_target(progress.elapsed_seconds);
    if (rates || ramp) {
      const double end = rates ? rates->EndSeconds() : ramp->schedule.EndSeconds();
      progress.fraction = end > 0 ? progress.elapsed_seconds / end : 1;
    } else if (options_.duration) {
      const double in_cycle = std::chrono::duration<double>(now - cycle_start).count();
      const double part = *options_.duration > 0 ? std::min(1.0, in_cycle / *options_.duration) : 1;
      progress.fraction = (static_cast<double>(cycle_index) + part) / options_.users.size();
    } else {
      progress.fraction = progress.planned_executions
                              ? static_cast<double>(progress.executions) /
                                    static_cast<double>(progress.planned_executions)
                              : 1;
    }
    progress.fraction = std::clamp(progress.fraction, 0.0, 1.0);
    if (on_progress) on_progress(progress);
  };
  auto interval_start = result.info.started;
  auto last_interval = start;
  auto emit_interval = [&](common::RunStats delta, bool final) {
    Interval out;
    out.start = interval_start;
    out.end = std::chrono::system_clock::now();
    out.final = final;
    out.stats = std::move(delta);
    out.target_rate =
        final ? 0 : share_target(std::chrono::duration<double>(SteadyClock::now() - start).count());
    interval_start = out.end;
    last_interval = SteadyClock::now();
    progress.dropped += out.stats.dropped;
    result.stats.Merge(out.stats);
    on_interval_(out);
  };

  IntervalCollector collector(threads);
  StuckWatch stuck_watch(threads, options_.stuck_limit);
  // Healthy threads answer an interval's swap within microseconds; a stuck one is not waited for.
  constexpr auto kIntervalWait = std::chrono::milliseconds(200);

  // The open model's pools, one per thread.
  std::vector<std::unique_ptr<Pool>> pools;
  std::atomic<int> open_pools{0};
  auto close_pools = [&] {
    for (size_t i = 0; i < pools.size(); ++i) {
      asio::post(*threads[i]->io, [pool = pools[i].get()] { ClosePool(pool); });
    }
  };

  // A finish lets the executions in progress end normally (a worker leaving gracefully); a
  // stop cancels them at once.
  bool cancelled = false;
  auto check_stop = [&] {
    const bool stop_now = stop.load();
    if ((stop_now || (options_.finish && options_.finish->load())) && !shared.stopping.load()) {
      shared.stopping = true;
      result.info.interrupted = true;
      close_pools();
      // What is counted up to the stop goes out now: if a stuck user keeps the run from ending,
      // the process may be ended before the next interval.
      if (on_interval_) emit_interval(collector.Take(kIntervalWait), false);
    }
    if (!stop_now || cancelled) return;
    cancelled = true;
    for (auto& state : threads) {
      asio::post(*state->io, [s = state.get()] {
        for (UserContext* user : s->live_users) user->Cancel();
      });
    }
  };

  // Waits until done() (checked under the users' lock whenever a user ends, and every poll),
  // minding stops, intervals, progress and the model's own tick meanwhile.
  const auto supervise = [&](std::chrono::milliseconds poll, const std::function<bool()>& done,
                             const std::function<void()>& tick) {
    poll = std::min(poll, interval);
    auto last_report = SteadyClock::now();
    std::unique_lock lock(shared.mu);
    while (!done()) {
      shared.cv.wait_for(lock, poll);
      if (done()) break;
      lock.unlock();
      check_stop();
      if (tick) tick();
      stuck_watch.Check(on_stuck_);
      if (on_interval_ && SteadyClock::now() - last_interval >= interval_period_) {
        emit_interval(collector.Take(kIntervalWait), false);
      }
      if (SteadyClock::now() - last_report >= interval) {
        last_report = SteadyClock::now();
        report_progress();
      }
      lock.lock();
    }
  };

  if (rates) {
    // The open model: each thread takes its share of the arrivals, k = offset + stride * m, and
    // of those every thread_count-th.
    const double stride = static_cast<double>(load.share_stride) * thread_count;
    int64_t max_users = load.max_users;
    if (max_users <= 0) {
      const double timeout = std::chrono::duration<double>(options_.timeout).count();
      max_users = static_cast<int64_t>(std::clamp(
          std::ceil(rates->PeakRate() * timeout / static_cast<double>(load.share_stride)), 1.0,
          static_cast<double>(common::kMaxDefaultUsers)));
    }
    result.info.load.max_users = max_users;
    std::random_device seed;
    for (int i = 0; i < thread_count; ++i) {
      auto pool = std::make_unique<Pool>();
      pool->thread = threads[static_cast<size_t>(i)].get();
      pool->shared = &shared;
      pool->schedule = &*rates;
      pool->timer = std::make_unique<asio::steady_timer>(*pool->thread->io);
      pool->max_users = std::max<int64_t>(1, (max_users + thread_count - 1 - i) / thread_count);
      pool->stride = stride;
      pool->poisson = load.poisson;
      pool->rng.seed((static_cast<uint64_t>(seed()) << 32) ^ seed());
      const double first =
          static_cast<double>(load.share_offset) + static_cast<double>(load.share_stride) * i;
      pool->next_count =
          load.poisson ? std::exponential_distribution<double>(1.0)(pool->rng) * stride : first;
      pool->open_pools = &open_pools;
      pool->next_index = i;
      pools.push_back(std::move(pool));
    }
    open_pools = thread_count;
    for (auto& pool : pools) {
      asio::post(*pool->thread->io, [p = pool.get()] { OnArrivals(p); });
    }
    supervise(
        std::chrono::milliseconds(50),
        [&] { return open_pools.load() == 0 && shared.live.load() == 0; }, nullptr);
  } else if (ramp) {
    // The closed model, ramped: user slots of this engine's share follow the schedule.
    Cycle unused;
    const auto tick = [&] {
      if (shared.stopping) return;
      const double t = std::chrono::duration<double>(SteadyClock::now() - start).count();
      const int64_t target =
          SteadyClock::now() >= ramp->end
              ? 0
              : common::ShareOf(ramp->schedule.UsersAt(t), load.share_offset, load.share_stride);
      ramp->target = target;
      for (int64_t slot = 0; slot < target; ++slot) {
        std::atomic<bool>& running = *ramp->running[static_cast<size_t>(slot)];
        if (running.load()) continue;
        running = true;
        shared.UserStarted();
        ThreadState* state = threads[static_cast<size_t>(slot % thread_count)].get();
        asio::post(*state->io, [state, &shared, slot, &unused, r = &*ramp] {
          SpawnClosedUser(state, &shared, slot, &unused, r);
        });
      }
    };
    tick();
    supervise(
        std::chrono::milliseconds(10),
        [&] {
          return (SteadyClock::now() >= ramp->end || shared.stopping.load()) &&
                 shared.live.load() == 0;
        },
        tick);
  } else {
    // The seed's closed model: user cycles, one after the other.
    for (; cycle_index < options_.users.size(); ++cycle_index) {
      check_stop();
      if (shared.stopping) break;
      Cycle cycle;
      cycle.users = options_.users[cycle_index];
      cycle.executions_per_user = per_user;
      cycle_start = SteadyClock::now();
      if (options_.duration) cycle.deadline = cycle_start + Seconds(*options_.duration);
      if (cycle.users == 0) {
        // A worker given no user in this cycle (a cluster's split of a small cycle) still lets
        // the cycle last its duration, so that its next cycles start with the other workers'.
        supervise(
            std::chrono::milliseconds(10),
            [&] {
              return !cycle.deadline || SteadyClock::now() >= *cycle.deadline ||
                     shared.stopping.load();
            },
            nullptr);
        continue;
      }
      for (int64_t user = 0; user < cycle.users; ++user) {
        shared.UserStarted();
        ThreadState* state = threads[static_cast<size_t>(user % thread_count)].get();
        asio::post(*state->io, [state, &shared, user, &cycle] {
          SpawnClosedUser(state, &shared, user, &cycle, nullptr);
        });
      }
      // Stop requests are checked more often than progress is shown, so that Ctrl-C acts at
      // once even when progress is printed once a second.
      supervise(
          std::chrono::milliseconds(50), [&] { return shared.live.load() == 0; }, nullptr);
    }
  }
  report_progress();

  result.info.duration_seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  for (auto& state : threads) internal::StopWatchdog(*state);
  guards.clear();
  for (auto& worker : workers) worker.join();
  pools.clear();
  common::RunStats rest = collector.Rest();
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
  options.load = plan.load;
  options.threads = static_cast<int>(plan.threads);
  if (options.threads <= 0) {
    const int64_t cpus = std::max(1u, std::thread::hardware_concurrency());
    int64_t users =
        plan.users.empty() ? 1 : *std::max_element(plan.users.begin(), plan.users.end());
    if (plan.load.ramped()) {
      users = common::UserSchedule(plan.users.empty() ? 0 : plan.users[0], plan.load.stages)
                  .PeakUsers();
    }
    if (plan.load.open()) users = cpus;  // arrivals are spread over every thread
    options.threads = static_cast<int>(std::clamp<int64_t>(std::min(cpus, users), 1, 1024));
  }
  options.server_url = plan.server_url;
  options.connect_timeout = std::chrono::milliseconds(plan.connect_timeout_ms);
  options.timeout = std::chrono::milliseconds(plan.timeout_ms);
  options.verify_tls = !plan.insecure;
  options.run_id = plan.run_id.empty() ? "local" : plan.run_id;
  if (!plan.allow_targets.empty()) {
    // Validated by the decoder (or the command line) already.
    if (auto list = common::TargetAllowList::Parse(plan.allow_targets); list.ok()) {
      options.allow_targets = std::make_shared<const common::TargetAllowList>(std::move(*list));
    }
  }
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
