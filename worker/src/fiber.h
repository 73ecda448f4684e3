#pragma once

// The stackful coroutines virtual users run on (Boost.Asio's spawn over Boost.Coroutine).
//
// Several coroutines share a thread (a user and its WebSocket readers), so the yield context of
// the coroutine running now is kept in a thread-local pointer: a coroutine sets it when it starts
// and Await() restores it after every suspension. Test code never sees yield contexts: that is
// what lets it read top to bottom with no callbacks and no co_await.

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/spawn.hpp>
#include <boost/coroutine/exceptions.hpp>
#include <boost/coroutine/standard_stack_allocator.hpp>
#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace loads::internal {

// Coroutines are bound straight to their thread's io_context executor. asio::spawn on an
// io_context would wrap each in a strand, which costs on every resumption and buys nothing here:
// an io_context is only ever run by its one thread.
using CoroutineHandler =
    boost::asio::executor_binder<void (*)(), boost::asio::io_context::executor_type>;
using Yield = boost::asio::basic_yield_context<CoroutineHandler>;

Yield*& CurrentYield();

// The virtual user whose coroutine runs now on this thread (-1: none). Kept like CurrentYield()
// and mirrored into the thread's slot (ThreadState::running_user, set by the engine) so that the
// stuck-user watchdog, on another thread, and a crash report can name the user.
int64_t& CurrentUserIndex();
std::atomic<int64_t>*& RunningUserSlot();
inline void SetCurrentUser(int64_t user) {
  CurrentUserIndex() = user;
  if (std::atomic<int64_t>* slot = RunningUserSlot()) slot->store(user, std::memory_order_relaxed);
}

inline void CoroutineDone() {}

// Starts fn(Yield) as a new coroutine on io, with a stack of stack_size bytes. When called from a
// coroutine on io's thread, the new one starts at once (spawn dispatches) and runs until its first
// wait; the caller is made current again afterwards.
template <typename Fn>
void SpawnCoroutine(boost::asio::io_context& io, size_t stack_size, Fn&& fn) {
  Yield* caller = CurrentYield();
  const int64_t caller_user = CurrentUserIndex();
  boost::asio::spawn(boost::asio::bind_executor(io.get_executor(), &CoroutineDone),
                     std::forward<Fn>(fn), boost::coroutines::attributes(stack_size));
  CurrentYield() = caller;
  SetCurrentUser(caller_user);
}

// Runs one asynchronous operation, op(yield), on the calling coroutine and makes this coroutine
// current again when it resumes. Throws std::logic_error when called outside a virtual user.
template <typename Op>
auto Await(Op&& op) {
  Yield* self = CurrentYield();
  if (self == nullptr) {
    throw std::logic_error("network calls are only possible inside a running virtual user");
  }
  const int64_t user = CurrentUserIndex();
  if constexpr (std::is_void_v<decltype(op(*self))>) {
    op(*self);
    CurrentYield() = self;
    SetCurrentUser(user);
  } else {
    auto result = op(*self);
    CurrentYield() = self;
    SetCurrentUser(user);
    return result;
  }
}

// Boost.Coroutine unwinds a destroyed coroutine's stack with this exception; it must never be
// swallowed by a catch-all.
using ForcedUnwind = boost::coroutines::detail::forced_unwind;

}  // namespace loads::internal

// Boost.Coroutine's standard allocator takes coroutine stacks from malloc, with nothing below
// them: a test that recursed too deep would silently write over other users' stacks and the
// heap. These specializations (defined in crash.cc, declared here before any use) map each stack
// with an inaccessible guard page below it, so an overflow is a SIGSEGV the crash report can name.
namespace boost::coroutines {
template <>
void basic_standard_stack_allocator<stack_traits>::allocate(stack_context& ctx, std::size_t size);
template <>
void basic_standard_stack_allocator<stack_traits>::deallocate(stack_context& ctx);
}  // namespace boost::coroutines
