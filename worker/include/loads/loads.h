#pragma once

// The Loads test API: what a test library includes.
//
//   #include <loads/loads.h>
//
//   class TestWebSite : public loads::TestCase {
//     void test_es() {
//       auto res = session().get("http://localhost:9200");
//       assert_equal(res.status, 200);
//     }
//   };
//   LOADS_TEST(TestWebSite, test_es);
//
// One TestCase object exists per virtual user; each execution runs setUp(), the test method and
// tearDown() on it. Test code reads top to bottom: session() and WebSocket calls look blocking,
// but each virtual user runs on its own stackful coroutine, so a call that waits for the network
// suspends only that user while thousands of others share a few threads. Never block the thread
// yourself (std::this_thread::sleep_for, blocking sockets, heavy locks): use sleep() for think
// time. The names of this API follow the original Loads (session, create_ws, incr_counter,
// assert_equal, setUp) rather than the project's internal C++ style, so tests read like the seed's.
//
// Outcomes: an execution whose method returns normally is a success; one ended by a failed
// assertion (loads::AssertionFailure) is a failure; anything else (a NetworkError, any other
// exception) is an error.

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <source_location>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loads/version.h"

// libloads.so is built with hidden visibility (its Boost, JSON and common code stay inside it):
// what this header declares is its interface, and exported.
#pragma GCC visibility push(default)

namespace loads {

namespace internal {
class UserContext;
class SessionImpl;
class WebSocketImpl;
}  // namespace internal

// Header name/value pairs, in order; names compare case-insensitively where looked up.
using Headers = std::vector<std::pair<std::string, std::string>>;

// Thrown when a request or WebSocket operation gets no usable answer (refused, reset, timeout,
// DNS or TLS failure, malformed response, too many redirects). It ends the execution as an error.
// A request that got no response is counted as a hit under its kind in the report's hit errors;
// too_many_redirects and an invalid redirect location follow a response that was counted
// normally.
class NetworkError : public std::runtime_error {
 public:
  NetworkError(std::string kind, const std::string& message);
  // The kind, as in reports: "connection_refused", "connection_reset", "timeout", "dns", "tls",
  // "malformed_response", "too_many_redirects", "cancelled", "websocket", "network".
  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
};

// Thrown by the assertions; ends the execution as a failure. It deliberately does not derive from
// std::exception, so that a test's `catch (const std::exception&)` does not hide a failure.
class AssertionFailure {
 public:
  explicit AssertionFailure(std::string message) : message_(std::move(message)) {}
  const std::string& what() const { return message_; }

 private:
  std::string message_;
};

// Per-request settings. Use designated initializers:
//   session().post(url, {.json = {{"name", "x"}}, .name = "create item"});
struct RequestOptions {
  Headers headers;  // sent after the session's; a name given here replaces the session's one
  std::vector<std::pair<std::string, std::string>> params;  // query, URL-encoded and appended
  std::string body;                                         // sent as is
  nlohmann::json json;          // unless null: sent as application/json instead of body
  bool allow_redirects = true;  // follow 301/302/303/307/308; each hop is a hit
  // Time allowed to send the request and receive the whole response (default: the session's).
  std::optional<std::chrono::milliseconds> timeout;
  // The name hits are counted under; default "METHOD scheme://host[:port]/path" (no query; the
  // port only when it is not the scheme's default).
  std::string name;
};

// A complete HTTP response. Any status is a response: a 500 is not an error unless the test
// asserts on it.
struct Response {
  int status = 0;
  std::string reason;
  Headers headers;
  std::string body;
  std::string url;                     // the URL that answered (after redirects)
  int redirects = 0;                   // redirect hops followed to get here
  std::chrono::nanoseconds elapsed{};  // from sending the last hop to its complete response

  // The first header with this name (case-insensitive), or "" if there is none.
  std::string_view header(std::string_view name) const;
  bool ok() const { return status >= 200 && status < 400; }
  // The body parsed as JSON; throws (an error outcome) if it is not JSON.
  nlohmann::json json() const;
};

// The HTTP client of one virtual user: keep-alive connections reused across executions, a cookie
// jar, redirects, http and https. Every request sent is one hit in the report.
//
// Thread safety: owned by its virtual user; use it only from that user's test code.
class Session {
 public:
  Response request(std::string_view method, std::string_view url,
                   const RequestOptions& options = {});
  Response get(std::string_view url, const RequestOptions& options = {});
  Response post(std::string_view url, const RequestOptions& options = {});
  Response put(std::string_view url, const RequestOptions& options = {});
  Response patch(std::string_view url, const RequestOptions& options = {});
  Response delete_(std::string_view url, const RequestOptions& options = {});
  Response head(std::string_view url, const RequestOptions& options = {});
  Response options(std::string_view url, const RequestOptions& opts = {});

  // Headers sent with every request of this session (a request's own headers come after).
  Headers& headers();
  // TLS certificate and host name verification; on by default (--insecure turns it off).
  void set_verify_tls(bool verify);
  void set_connect_timeout(std::chrono::milliseconds timeout);
  void set_timeout(std::chrono::milliseconds timeout);  // read timeout
  void set_max_redirects(int max_redirects);            // default 10
  // The value of the cookie `name` the session would send to `url`, if any.
  std::optional<std::string> cookie(std::string_view url, std::string_view name) const;
  void clear_cookies();
  // Closes the kept-alive connections; the next request opens a new one.
  void close_connections();

 private:
  friend class internal::UserContext;
  explicit Session(internal::SessionImpl* impl) : impl_(impl) {}
  internal::SessionImpl* impl_;
};

// A WebSocket client (ws:// or wss://) opened by TestCase::create_ws. It counts sockets opened and
// closed, messages and bytes received and sent. Sockets still open when an execution ends are
// closed then.
//
// Thread safety: owned by its virtual user; use it only from that user's test code or callback.
class WebSocket {
 public:
  // Called for every message received, when given to create_ws. The callback runs on the same
  // thread as the test, between its network waits; it may send() but not receive().
  using Callback = std::function<void(WebSocket& ws, const std::string& message)>;

  ~WebSocket();
  WebSocket(const WebSocket&) = delete;
  WebSocket& operator=(const WebSocket&) = delete;

  void send(std::string_view text);
  void send_binary(std::string_view data);
  // The next message, or nullopt once the server has closed the socket. Not usable with a
  // callback. Waits at most the run's --timeout (then throws a NetworkError "timeout"); the
  // session's settings (timeouts, TLS verification, headers, cookies) do not apply to WebSockets.
  std::optional<std::string> receive();
  // Closes the socket (a close handshake); does nothing if it is already closed.
  void close();
  bool is_open() const;
  const std::string& url() const;

 private:
  friend class internal::UserContext;
  explicit WebSocket(std::shared_ptr<internal::WebSocketImpl> impl);
  std::shared_ptr<internal::WebSocketImpl> impl_;
};

namespace internal {
template <typename T>
concept Printable = requires(std::ostream& out, const T& value) {
  out << value;
};

template <typename T>
std::string Describe(const T& value) {
  if constexpr (std::same_as<T, bool>) {
    return value ? "true" : "false";
  } else if constexpr (std::convertible_to<const T&, std::string_view>) {
    std::string out = "\"";
    out += std::string_view(value);
    out += '"';
    return out;
  } else if constexpr (Printable<T>) {
    std::ostringstream out;
    out << value;
    return out.str();
  } else {
    return "<value>";
  }
}

[[noreturn]] void Fail(std::string_view what, std::string_view message,
                       const std::source_location& where);
}  // namespace internal

// Base class of test cases. Derive, add test methods (void, no arguments) and register each with
// LOADS_TEST. A test case needs a default constructor; its constructor may use the API too.
class TestCase {
 public:
  TestCase();
  virtual ~TestCase();
  TestCase(const TestCase&) = delete;
  TestCase& operator=(const TestCase&) = delete;

  // Run before and after every execution of a test method. tearDown runs even when the method
  // failed, but not when setUp did.
  virtual void setUp() {}
  virtual void tearDown() {}

 protected:
  // This virtual user's HTTP session.
  Session& session();
  // Opens a WebSocket (ws:// or wss://); with a callback, every received message is passed to it.
  WebSocket& create_ws(std::string_view url, WebSocket::Callback callback = {},
                       const Headers& headers = {});
  // Adds `by` to the custom counter `name`, reported under "Custom metrics".
  void incr_counter(std::string_view name, int64_t by = 1);
  // Think time: suspends this virtual user only.
  void sleep(std::chrono::duration<double> seconds);
  // The target given with --server-url ("" if none).
  const std::string& server_url() const;
  // 0-based index of this virtual user in its cycle, and of the current execution for this user.
  int64_t user_index() const;
  int64_t execution_index() const;

  // Assertions: a failed one ends the execution as a failure with a message naming the values,
  // your message and the file and line.
  void assert_true(bool condition, std::string_view message = {},
                   std::source_location where = std::source_location::current()) {
    if (!condition) internal::Fail("condition is false", message, where);
  }
  void assert_false(bool condition, std::string_view message = {},
                    std::source_location where = std::source_location::current()) {
    if (condition) internal::Fail("condition is true", message, where);
  }
  template <typename A, typename B>
  void assert_equal(const A& actual, const B& expected, std::string_view message = {},
                    std::source_location where = std::source_location::current()) {
    if (!(actual == expected)) {
      internal::Fail(internal::Describe(actual) + " != " + internal::Describe(expected), message,
                     where);
    }
  }
  template <typename A, typename B>
  void assert_not_equal(const A& actual, const B& unexpected, std::string_view message = {},
                        std::source_location where = std::source_location::current()) {
    if (actual == unexpected) {
      internal::Fail(internal::Describe(actual) + " == " + internal::Describe(unexpected), message,
                     where);
    }
  }
  template <typename A, typename B>
  void assert_less(const A& a, const B& b, std::string_view message = {},
                   std::source_location where = std::source_location::current()) {
    if (!(a < b)) {
      internal::Fail(internal::Describe(a) + " is not less than " + internal::Describe(b), message,
                     where);
    }
  }
  template <typename A, typename B>
  void assert_greater(const A& a, const B& b, std::string_view message = {},
                      std::source_location where = std::source_location::current()) {
    if (!(b < a)) {
      internal::Fail(internal::Describe(a) + " is not greater than " + internal::Describe(b),
                     message, where);
    }
  }
  // The haystack string contains the needle.
  void assert_in(std::string_view needle, std::string_view haystack, std::string_view message = {},
                 std::source_location where = std::source_location::current()) {
    if (haystack.find(needle) == std::string_view::npos) {
      internal::Fail("\"" + std::string(needle) + "\" not found in " +
                         internal::Describe(haystack.substr(0, 200)),
                     message, where);
    }
  }
  [[noreturn]] void fail(std::string_view message,
                         std::source_location where = std::source_location::current()) {
    internal::Fail("fail()", message, where);
  }

 private:
  internal::UserContext* context_;
};

namespace internal {
using TestFactory = std::unique_ptr<TestCase> (*)();
using TestMethod = void (*)(TestCase&);

// Registers one test method. Called by LOADS_TEST while a test library is being loaded. The ABI
// and version are those the library was compiled against; the runner refuses a library whose ABI
// differs from its own. Returns true.
bool RegisterTest(int abi_version, const char* sdk_version, const char* class_name,
                  const char* method_name, TestFactory factory, TestMethod method);

}  // namespace internal

}  // namespace loads

#pragma GCC visibility pop

namespace loads_registration {
// Gives LOADS_TEST access to test methods even when they are private (as in the seed's example):
// access checks do not apply to the arguments of an explicit instantiation. The friend function
// this defines is the one each LOADS_TEST tag declares, so both live in this namespace.
template <typename Tag, typename Tag::Pointer kMethod>
struct MethodAccess {
  friend typename Tag::Pointer MethodOf(Tag) { return kMethod; }
};
}  // namespace loads_registration

// Registers Class::method as the test "<module>.Class.method", where <module> is the test
// library's name. Use it at global scope, after the class, with the class's unqualified name.
#define LOADS_TEST(Class, method)                                                                \
  namespace loads_registration {                                                                 \
  struct Class##_##method##_Tag {                                                                \
    using Pointer = void (Class::*)();                                                           \
    friend Pointer MethodOf(Class##_##method##_Tag);                                             \
  };                                                                                             \
  }                                                                                              \
  template struct ::loads_registration::MethodAccess<loads_registration::Class##_##method##_Tag, \
                                                     &Class::method>;                            \
  static const bool loads_registered_##Class##_##method = ::loads::internal::RegisterTest(       \
      LOADS_ABI_VERSION, LOADS_SDK_VERSION, #Class, #method,                                     \
      []() -> std::unique_ptr<::loads::TestCase> { return std::make_unique<Class>(); },          \
      [](::loads::TestCase& test) {                                                              \
        (static_cast<Class&>(test).*MethodOf(loads_registration::Class##_##method##_Tag{}))();   \
      })
