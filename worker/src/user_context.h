#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "loads/common/stats.h"
#include "loads/loads.h"
#include "loads/worker/engine.h"

namespace boost::asio {
class io_context;
}

namespace loads::internal {

class NetShared;

// What one engine thread owns: its event loop, its statistics and its live users.
//
// Thread safety: everything here is used only from the thread running io, except the progress
// atomics, which the engine's calling thread reads.
struct ThreadState {
  explicit ThreadState(const worker::EngineOptions& options);
  ~ThreadState();

  const worker::EngineOptions& options;
  std::unique_ptr<boost::asio::io_context> io;
  std::unique_ptr<NetShared> net;  // TLS contexts and other per-thread network state
  common::RunStats stats;
  std::set<UserContext*> live_users;
  alignas(64) std::atomic<uint64_t> executions{0};
  std::atomic<uint64_t> hits{0};
  // For the stuck-user watchdog: the thread's watchdog timer counts beats while the thread's
  // users yield, and running_user is the user whose coroutine ran last (-1: none).
  std::atomic<uint64_t> beats{0};
  std::atomic<int64_t> running_user{-1};
};

// One virtual user: its session, its WebSockets, its place in the run. Lives on the user's
// coroutine stack for the user's whole life.
//
// Thread safety: used only from its thread.
class UserContext {
 public:
  UserContext(ThreadState* thread, int64_t user_index);
  ~UserContext();
  UserContext(const UserContext&) = delete;
  UserContext& operator=(const UserContext&) = delete;

  ThreadState& thread() { return *thread_; }
  const worker::EngineOptions& options() const { return thread_->options; }
  common::RunStats& stats() { return thread_->stats; }
  Session& session() { return session_; }

  void RecordHit(std::string_view name, std::string_view method, int status, common::HitError error,
                 uint64_t latency_ns);

  WebSocket& CreateWebSocket(std::string_view url, WebSocket::Callback callback,
                             const Headers& headers);
  // Closes the WebSockets opened during the execution that ends. Returns the first exception a
  // WebSocket callback raised during it, if any.
  std::exception_ptr CloseExecutionSockets();

  // Suspends this user for `seconds` (think time). Throws NetworkError(cancelled) once the run
  // is stopped.
  // After a cancellation, every call that would wait for the network or a timer fails at once;
  // this pauses the user up to 10 ms first, so that a test that catches `cancelled` in a loop
  // cannot spin its thread (other users still end, and the watchdog still beats).
  void PauseAfterCancel(std::chrono::duration<double> at_most = std::chrono::milliseconds(10));
  void Sleep(std::chrono::duration<double> seconds);
  // Suspends this user until `when` (the engine's pacing). False if the run was stopped first.
  bool SleepUntil(std::chrono::steady_clock::time_point when);

  // The intended start of the execution in progress (an open model's arrival, a paced user's
  // schedule): its hits also record their latency from it. Cleared between executions.
  void set_intended_start(std::optional<std::chrono::steady_clock::time_point> at) {
    intended_start_ = at;
  }

  // Interrupts whatever this user waits for (sockets closed, timer cancelled); every later
  // network call fails with a "cancelled" NetworkError.
  void Cancel();
  bool cancelled() const { return cancelled_; }

  // The deadline of the network wait in progress. When it passes, the thread's watchdog calls
  // abort(target) (which closes a socket or cancels a resolver, so the wait ends at once) and
  // TimedOut() becomes true. One timer per thread instead of one per operation keeps timeouts off
  // the hot path; their resolution is the watchdog's period.
  void ArmDeadline(std::chrono::steady_clock::time_point deadline, void (*abort)(void*),
                   void* target) {
    deadline_ = deadline;
    abort_ = abort;
    abort_target_ = target;
    timed_out_ = false;
  }
  void DisarmDeadline() { abort_ = nullptr; }
  bool TimedOut() const { return timed_out_; }
  void CheckDeadline(std::chrono::steady_clock::time_point now) {
    if (abort_ && now >= deadline_) {
      timed_out_ = true;
      auto abort = abort_;
      abort_ = nullptr;
      abort(abort_target_);
    }
  }

  // Records an execution reported by an external runner.
  void RecordExecution(common::Outcome outcome, std::string_view message) {
    thread_->stats.RecordExecution(outcome, message);
    thread_->executions.fetch_add(1, std::memory_order_relaxed);
  }
  // The users of this user's cycle, and whether the cycle is timed (for external runners).
  void set_cycle(int64_t users, bool timed) {
    cycle_users_ = users;
    cycle_timed_ = timed;
  }
  int64_t cycle_users() const { return cycle_users_; }

  int64_t user_index() const { return user_index_; }
  int64_t execution_index() const { return execution_index_; }
  void set_execution_index(int64_t index) { execution_index_ = index; }

 private:
  ThreadState* thread_;
  int64_t user_index_;
  int64_t execution_index_ = 0;
  bool cancelled_ = false;
  std::unique_ptr<SessionImpl, void (*)(SessionImpl*)> session_impl_;
  Session session_;
  std::vector<std::unique_ptr<WebSocket>> sockets_;
  void* sleep_timer_ = nullptr;  // the steady_timer of a sleep in progress, to cancel it
  std::chrono::steady_clock::time_point deadline_{};
  void (*abort_)(void*) = nullptr;
  void* abort_target_ = nullptr;
  bool timed_out_ = false;
  int64_t cycle_users_ = 0;
  bool cycle_timed_ = false;
  std::optional<std::chrono::steady_clock::time_point> intended_start_;
};

// Stops the thread's watchdog timer so that its io_context can run out of work. Thread-safe.
void StopWatchdog(ThreadState& thread);

// The context of the user whose TestCase is being constructed on this thread.
UserContext*& ConstructingContext();

}  // namespace loads::internal
