#pragma once

// The stackful coroutines virtual users run on (Boost.Asio's spawn over Boost.Coroutine).
//
// Several coroutines share a thread (a user and its WebSocket readers), so the yield context of
// the coroutine running now is kept in a thread-local pointer: a coroutine sets it when it starts
// and Await() restores it after every suspension. Test code never sees yield contexts: that is
// what lets it read top to bottom with no callbacks and no co_await.

#include <boost/asio/spawn.hpp>
#include <boost/coroutine/exceptions.hpp>
#include <stdexcept>
#include <type_traits>

namespace loads::internal {

boost::asio::yield_context*& CurrentYield();

// Runs one asynchronous operation, op(yield), on the calling coroutine and makes this coroutine
// current again when it resumes. Throws std::logic_error when called outside a virtual user.
template <typename Op>
auto Await(Op&& op) {
  boost::asio::yield_context* self = CurrentYield();
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
