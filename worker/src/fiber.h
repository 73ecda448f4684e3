#pragma once

// The stackful coroutines virtual users run on (Boost.Asio's spawn over Boost.Coroutine).
//
// Several coroutines share a thread (a user and its WebSocket readers), so the yield context of
// the coroutine running now is kept in a thread-local pointer: a coroutine sets it when it starts
// and Await() restores it after every suspension. Test code never sees yield contexts: that is
// what lets it read top to bottom with no callbacks and no co_await.

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/spawn.hpp>
#include <boost/coroutine/exceptions.hpp>
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

inline void CoroutineDone() {}

// Starts fn(Yield) as a new coroutine on io, with a stack of stack_size bytes. When called from a
// coroutine on io's thread, the new one starts at once (spawn dispatches) and runs until its first
// wait; the caller is made current again afterwards.
template <typename Fn>
void SpawnCoroutine(boost::asio::io_context& io, size_t stack_size, Fn&& fn) {
  Yield* caller = CurrentYield();
  boost::asio::spawn(boost::asio::bind_executor(io.get_executor(), &CoroutineDone),
                     std::forward<Fn>(fn), boost::coroutines::attributes(stack_size));
  CurrentYield() = caller;
}

// Runs one asynchronous operation, op(yield), on the calling coroutine and makes this coroutine
// current again when it resumes. Throws std::logic_error when called outside a virtual user.
template <typename Op>
auto Await(Op&& op) {
  Yield* self = CurrentYield();
  if (self == nullptr) {
    throw std::logic_error("network calls are only possible inside a running virtual user");
  }
  if constexpr (std::is_void_v<decltype(op(*self))>) {
    op(*self);
    CurrentYield() = self;
  } else {
    auto result = op(*self);
    CurrentYield() = self;
    return result;
  }
}

// Boost.Coroutine unwinds a destroyed coroutine's stack with this exception; it must never be
// swallowed by a catch-all.
using ForcedUnwind = boost::coroutines::detail::forced_unwind;

}  // namespace loads::internal
