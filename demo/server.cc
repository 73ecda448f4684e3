// All Boost.Beast code of the demo target lives in this one translation unit:
// Beast is header-only and expensive to compile, so it must not leak into
// server.h.

#include "demo/server.h"

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace loads::demo {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::awaitable;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;
using tcp = asio::ip::tcp;

using Request = http::request<http::string_body>;
using StringResponse = http::response<http::string_body>;
using SpanResponse = http::response<http::span_body<const char>>;

constexpr std::string_view kServerName = "loads-demo-target";
constexpr std::size_t kMaxBytes = 10 * 1024 * 1024;
constexpr std::size_t kMaxRequestBody = 16 * 1024 * 1024;
// Beast's default (8 KiB) is easy to exceed when testing /headers or /cookies.
constexpr std::size_t kMaxHeader = 64 * 1024;
constexpr std::uint64_t kMaxDelayMs = 60000;
constexpr std::uint64_t kMaxRedirects = 100;
constexpr std::uint64_t kMaxWsSend = 1000000;
constexpr std::uint64_t kMaxWsSize = kMaxRequestBody;
constexpr std::uint64_t kDefaultWsSize = 16;
constexpr auto kIdleTimeout = std::chrono::seconds(60);
// Bounds how long a closing connection may keep us draining its input.
constexpr auto kLingerTimeout = std::chrono::seconds(2);
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

struct Stats {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> ws_messages_sent{0};
  std::atomic<std::uint64_t> ws_bytes_sent{0};
};

// Boost 1.74's beast::string_view is boost::string_view, not std::string_view.
std::string_view ToStd(beast::string_view s) { return {s.data(), s.size()}; }
beast::string_view ToBeast(std::string_view s) { return {s.data(), s.size()}; }

// Digits only: no sign, no whitespace, no overflow.
std::optional<std::uint64_t> ParseUint(std::string_view s) {
  std::uint64_t value = 0;
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, value);
  if (s.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

// "a=1&b&c=" -> {a,1} {b,""} {c,""}. No percent-decoding: the values are
// echoed into headers verbatim.
std::vector<std::pair<std::string_view, std::string_view>> ParseQuery(std::string_view query) {
  std::vector<std::pair<std::string_view, std::string_view>> pairs;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      pairs.emplace_back(item, std::string_view());
    } else {
      pairs.emplace_back(item.substr(0, eq), item.substr(eq + 1));
    }
  }
  return pairs;
}

// RFC 7230 tchar.
bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
  });
}

// RFC 6265 cookie-octet, so a query can never inject header syntax.
bool IsCookieValue(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return c == 0x21 || (c >= 0x23 && c <= 0x2B) || (c >= 0x2D && c <= 0x3A) ||
           (c >= 0x3C && c <= 0x5B) || (c >= 0x5D && c <= 0x7E);
  });
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// /bytes/N serves slices of one shared buffer so large bodies cost no
// allocation or fill per request. A repeating alphabet makes truncation or
// misaligned reads visible in a hex dump.
std::string_view ByteSource() {
  static const std::string data = [] {
    std::string s(kMaxBytes, '\0');
    for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>('a' + i % 26);
    return s;
  }();
  return data;
}

// Applies the headers every response carries. 204 and 304 never have a body
// (and 204 must not have Content-Length); HEAD gets the GET's Content-Length.
template <class Body>
void Finalize(http::response<Body>& res, unsigned version, bool head, bool keep_alive) {
  res.version(version);
  res.set(http::field::server, ToBeast(kServerName));
  if (http::int_to_status(res.result_int()) == http::status::unknown) res.reason("Unknown");
  res.keep_alive(keep_alive);
  const unsigned code = res.result_int();
  if (code == 204 || code == 304) {
    res.body() = {};
    res.erase(http::field::content_type);
    res.erase(http::field::content_length);
    return;
  }
  res.content_length(res.body().size());
  if (head) res.body() = {};
}

StringResponse Text(unsigned code, std::string body, std::string_view content_type = "text/plain") {
  StringResponse res;
  res.result(code);
  res.set(http::field::content_type, ToBeast(content_type));
  res.body() = std::move(body);
  return res;
}

// What the connection should do with a request once it has been routed.
struct Route {
  enum class Action { kRespond, kBytes, kDelay, kClose, kGarbage, kWebSocket };
  Action action = Action::kRespond;
  StringResponse response;  // kRespond, and kDelay (sent after the delay).
  std::size_t bytes = 0;    // kBytes.
  std::chrono::milliseconds delay{0};
  std::uint64_t ws_send = 0;
  std::uint64_t ws_size = kDefaultWsSize;
  bool ws_close = false;  // close the socket after the pushed messages instead of echoing
  bool counted = true;    // False for /stats, so polling it does not skew it.
};

Route Respond(StringResponse res) {
  Route route;
  route.response = std::move(res);
  return route;
}

Route Act(Route::Action action) {
  Route route;
  route.action = action;
  return route;
}

std::string CookiesOf(const Request& req) {
  std::vector<std::string> cookies;
  auto [begin, end] = req.equal_range(http::field::cookie);
  for (auto it = begin; it != end; ++it) {
    std::string_view value = ToStd(it->value());
    while (!value.empty()) {
      const std::size_t semi = value.find(';');
      std::string_view item = TrimSpaces(value.substr(0, semi));
      value = semi == std::string_view::npos ? std::string_view() : value.substr(semi + 1);
      if (item.empty()) continue;
      const std::size_t eq = item.find('=');
      if (eq == std::string_view::npos) {
        cookies.emplace_back(std::string(item) + "=");
      } else {
        cookies.emplace_back(std::string(TrimSpaces(item.substr(0, eq))) + "=" +
                             std::string(TrimSpaces(item.substr(eq + 1))));
      }
    }
  }
  std::sort(cookies.begin(), cookies.end());
  std::string body;
  for (const std::string& cookie : cookies) body += cookie + "\n";
  return body;
}

Route SetCookies(std::string_view query) {
  StringResponse res = Text(200, "");
  for (auto [name, value] : ParseQuery(query)) {
    if (!IsToken(name) || !IsCookieValue(value)) {
      return Respond(Text(400, "invalid cookie '" + std::string(name) + "'\n"));
    }
    std::string pair = std::string(name) + "=" + std::string(value);
    res.insert(http::field::set_cookie, pair + "; Path=/");
    res.body() += pair + "\n";
  }
  return Respond(std::move(res));
}

Route WebSocketRoute(const Request& req, std::string_view query) {
  if (!websocket::is_upgrade(req)) {
    StringResponse res = Text(426, "this endpoint requires a WebSocket upgrade\n");
    res.set(http::field::upgrade, "websocket");
    return Respond(std::move(res));
  }
  Route route = Act(Route::Action::kWebSocket);
  for (auto [name, value] : ParseQuery(query)) {
    if (name == "send") {
      auto n = ParseUint(value);
      if (!n || *n > kMaxWsSend) {
        return Respond(Text(400, "invalid send: expected 0.." + std::to_string(kMaxWsSend) + "\n"));
      }
      route.ws_send = *n;
    } else if (name == "size") {
      auto n = ParseUint(value);
      if (!n || *n > kMaxWsSize) {
        return Respond(Text(400, "invalid size: expected 0.." + std::to_string(kMaxWsSize) + "\n"));
      }
      route.ws_size = *n;
    } else if (name == "close") {
      if (value != "0" && value != "1")
        return Respond(Text(400, "invalid close: expected 0 or 1\n"));
      route.ws_close = value == "1";
    }
  }
  return route;
}

// Routes a request. Pure apart from reading the counters, so all I/O
// decisions stay in Connection.
Route Handle(const Request& req, const Stats& stats) {
  std::string_view target = ToStd(req.target());
  // Absolute-form ("GET http://host/path"), which servers must accept too.
  if (const std::size_t scheme = target.find("://");
      scheme != std::string_view::npos && target.substr(0, 1) != "/") {
    const std::size_t slash = target.find('/', scheme + 3);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  const std::size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  const std::string_view query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);

  // Returns the N of "/prefix/N", or nullopt when the path has another shape.
  auto suffix = [path](std::string_view prefix) -> std::optional<std::string_view> {
    if (path.size() < prefix.size() || path.substr(0, prefix.size()) != prefix) return {};
    return path.substr(prefix.size());
  };

  if (path == "/echo") {
    StringResponse res;
    res.result(http::status::ok);
    auto type = req.find(http::field::content_type);
    res.set(http::field::content_type,
            type != req.end() ? type->value() : beast::string_view("application/octet-stream"));
    res.body() = req.body();
    return Respond(std::move(res));
  }

  const bool known = path == "/" || path == "/headers" || path == "/cookies" ||
                     path == "/cookies/set" || path == "/close" || path == "/garbage" ||
                     path == "/stats" || path == "/ws" || suffix("/bytes/") || suffix("/delay/") ||
                     suffix("/status/") || suffix("/redirect/");
  if (!known) return Respond(Text(404, "not found\n"));
  // Only /echo accepts other methods; say so instead of pretending not to exist.
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    StringResponse res = Text(405, "method not allowed\n");
    res.set(http::field::allow, "GET, HEAD");
    return Respond(std::move(res));
  }

  if (path == "/") return Respond(Text(200, "Hello from loads-demo-target\n"));
  if (path == "/headers") {
    std::string body;
    for (const auto& field : req) {
      body.append(field.name_string().data(), field.name_string().size());
      body += ": ";
      body.append(field.value().data(), field.value().size());
      body += "\n";
    }
    return Respond(Text(200, std::move(body)));
  }
  if (path == "/cookies") return Respond(Text(200, CookiesOf(req)));
  if (path == "/cookies/set") return SetCookies(query);
  if (path == "/close") return Act(Route::Action::kClose);
  if (path == "/garbage") return Act(Route::Action::kGarbage);
  if (path == "/ws") return WebSocketRoute(req, query);
  if (path == "/stats") {
    std::string body =
        "{\"requests\": " + std::to_string(stats.requests.load()) +
        ", \"websocket_messages_sent\": " + std::to_string(stats.ws_messages_sent.load()) +
        ", \"websocket_bytes_sent\": " + std::to_string(stats.ws_bytes_sent.load()) + "}\n";
    Route route = Respond(Text(200, std::move(body), "application/json"));
    route.counted = false;
    return route;
  }
  if (auto arg = suffix("/bytes/")) {
    auto n = ParseUint(*arg);
    if (!n || *n > kMaxBytes) {
      return Respond(
          Text(400, "invalid byte count: expected 0.." + std::to_string(kMaxBytes) + "\n"));
    }
    Route route = Act(Route::Action::kBytes);
    route.bytes = static_cast<std::size_t>(*n);
    return route;
  }
  if (auto arg = suffix("/delay/")) {
    auto ms = ParseUint(*arg);
    if (!ms || *ms > kMaxDelayMs) {
      return Respond(
          Text(400, "invalid delay: expected 0.." + std::to_string(kMaxDelayMs) + " ms\n"));
    }
    Route route = Act(Route::Action::kDelay);
    route.delay = std::chrono::milliseconds(*ms);
    route.response = Text(200, "delayed " + std::to_string(*ms) + " ms\n");
    return route;
  }
  if (auto arg = suffix("/status/")) {
    auto code = ParseUint(*arg);
    if (!code || *code < 200 || *code > 599) {
      return Respond(Text(400, "invalid status code: expected 200..599\n"));
    }
    return Respond(Text(static_cast<unsigned>(*code), "status " + std::to_string(*code) + "\n"));
  }
  if (auto arg = suffix("/redirect/")) {
    auto n = ParseUint(*arg);
    if (!n || *n > kMaxRedirects) {
      return Respond(
          Text(400, "invalid redirect count: expected 0.." + std::to_string(kMaxRedirects) + "\n"));
    }
    // /redirect/N answers with exactly N redirects before a 200: N-1, ..., 1, then "/".
    if (*n == 0) return Respond(Text(200, "Hello from loads-demo-target\n"));
    const std::string location = *n == 1 ? "/" : "/redirect/" + std::to_string(*n - 1);
    StringResponse res = Text(302, "redirecting to " + location + "\n");
    res.set(http::field::location, location);
    return Respond(std::move(res));
  }
  return Respond(Text(404, "not found\n"));
}

const boost::system::error_category& HttpErrorCategory() {
  return make_error_code(http::error::bad_target).category();
}

// One client connection: reads requests in a loop and answers them in order.
// Everything here runs on the single thread of the io_context owning the
// socket, so no member needs synchronisation.
class Connection {
 public:
  Connection(tcp::socket socket, Stats& stats) : stream_(std::move(socket)), stats_(stats) {}

  awaitable<void> Run() {
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(kMaxHeader);
      parser.body_limit(kMaxRequestBody);
      error_code ec;
      stream_.expires_after(kIdleTimeout);
      co_await http::async_read_header(stream_, buffer_, parser, redirect_error(use_awaitable, ec));
      if (!ec && !parser.is_done()) {
        // curl and others wait (about a second) for this before sending
        // large bodies; answering keeps /echo fast.
        const auto& header = parser.get();
        if (header.version() == 11 && beast::iequals(header[http::field::expect], "100-continue")) {
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          co_await asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                                     redirect_error(use_awaitable, ec));
        }
        if (!ec) {
          stream_.expires_after(kIdleTimeout);
          co_await http::async_read(stream_, buffer_, parser, redirect_error(use_awaitable, ec));
        }
      }
      if (ec) {
        co_await OnReadError(ec);
        co_return;
      }

      Request req = parser.release();
      const bool head = req.method() == http::verb::head;
      const bool keep_alive = req.keep_alive();
      Route route = Handle(req, stats_);
      if (route.counted) stats_.requests.fetch_add(1, std::memory_order_relaxed);

      bool written = false;
      switch (route.action) {
        case Route::Action::kClose:
          // Fault injection: the peer sees EOF (or a reset) instead of a reply.
          stream_.socket().close(ec);
          co_return;
        case Route::Action::kGarbage: {
          static constexpr std::string_view kGarbage = "this is not http\r\n\r\n";
          stream_.expires_after(kIdleTimeout);
          co_await asio::async_write(stream_, asio::buffer(kGarbage.data(), kGarbage.size()),
                                     redirect_error(use_awaitable, ec));
          if (!ec) co_await LingeringClose();
          co_return;
        }
        case Route::Action::kWebSocket:
          co_await ServeWebSocket(std::move(req), route.ws_send, route.ws_size, route.ws_close);
          co_return;
        case Route::Action::kBytes: {
          SpanResponse res;
          res.result(http::status::ok);
          res.set(http::field::content_type, "application/octet-stream");
          res.body() = beast::span<const char>(ByteSource().data(), route.bytes);
          Finalize(res, req.version(), head, keep_alive);
          written = co_await Write(res);
          break;
        }
        case Route::Action::kDelay: {
          // A timer, not a sleep: the thread keeps serving other connections.
          asio::steady_timer timer(co_await asio::this_coro::executor);
          timer.expires_after(route.delay);
          co_await timer.async_wait(redirect_error(use_awaitable, ec));
          if (ec) co_return;
          Finalize(route.response, req.version(), head, keep_alive);
          written = co_await Write(route.response);
          break;
        }
        case Route::Action::kRespond:
          Finalize(route.response, req.version(), head, keep_alive);
          written = co_await Write(route.response);
          break;
      }
      if (!written) co_return;
      if (!keep_alive) {
        co_await LingeringClose();
        co_return;
      }
    }
  }

 private:
  template <class Body>
  awaitable<bool> Write(http::response<Body>& res) {
    error_code ec;
    // Also bounds writes, so a client that stops reading cannot pin us.
    stream_.expires_after(kIdleTimeout);
    co_await http::async_write(stream_, res, redirect_error(use_awaitable, ec));
    co_return !ec;
  }

  awaitable<void> OnReadError(error_code ec) {
    // Peer went away, idled out, or the stream broke: nothing to answer.
    if (ec == http::error::end_of_stream) {
      stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
      co_return;
    }
    if (ec.category() != HttpErrorCategory() || ec == http::error::partial_message) co_return;

    StringResponse res = Text(400, "bad request: " + ec.message() + "\n");
    if (ec == http::error::body_limit) {
      res = Text(413, "request body larger than " + std::to_string(kMaxRequestBody) + " bytes\n");
    } else if (ec == http::error::header_limit) {
      res = Text(431, "request header larger than " + std::to_string(kMaxHeader) + " bytes\n");
    }
    Finalize(res, 11, false, false);
    if (co_await Write(res)) co_await LingeringClose();
  }

  // Closing with unread input makes the kernel send RST, which can destroy
  // the response we just wrote before the client reads it. So half-close,
  // then drain until the peer closes too (bounded in time).
  awaitable<void> LingeringClose() {
    error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) co_return;
    stream_.expires_after(kLingerTimeout);
    char scratch[4096];
    for (;;) {
      co_await stream_.async_read_some(asio::buffer(scratch), redirect_error(use_awaitable, ec));
      if (ec) break;
    }
    stream_.socket().close(ec);
  }

  awaitable<void> ServeWebSocket(Request req, std::uint64_t send, std::uint64_t size, bool close) {
    // The websocket stream has its own timeouts; the HTTP one must not fire.
    stream_.expires_never();
    websocket::stream<beast::tcp_stream> ws(std::move(stream_));
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = std::chrono::seconds(30);
    timeouts.idle_timeout = kIdleTimeout;
    // Pings keep quiet-but-alive clients from being treated as idle.
    timeouts.keep_alive_pings = true;
    ws.set_option(timeouts);
    ws.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, ToBeast(kServerName)); }));
    ws.read_message_max(kMaxRequestBody);

    error_code ec;
    co_await ws.async_accept(req, redirect_error(use_awaitable, ec));
    if (ec) co_return;

    if (send > 0) {
      const std::string payload(static_cast<std::size_t>(size), 'x');
      ws.text(true);
      for (std::uint64_t i = 0; i < send; ++i) {
        // Beast's websocket timeouts only run while a read is pending, so a
        // client that never reads would pin this loop forever without this.
        beast::get_lowest_layer(ws).expires_after(kIdleTimeout);
        co_await ws.async_write(asio::buffer(payload), redirect_error(use_awaitable, ec));
        if (ec) co_return;
        CountSent(payload.size());
      }
      beast::get_lowest_layer(ws).expires_never();
    }
    if (close) {
      co_await ws.async_close(websocket::close_code::normal, redirect_error(use_awaitable, ec));
      co_return;
    }

    beast::flat_buffer message;
    for (;;) {
      // A close frame ends this with websocket::error::closed after Beast has
      // completed the close handshake; any other error just drops the link.
      co_await ws.async_read(message, redirect_error(use_awaitable, ec));
      if (ec) co_return;
      ws.text(ws.got_text());
      const std::size_t n = message.size();
      co_await ws.async_write(message.data(), redirect_error(use_awaitable, ec));
      if (ec) co_return;
      CountSent(n);
      message.consume(n);
    }
  }

  void CountSent(std::size_t bytes) {
    stats_.ws_messages_sent.fetch_add(1, std::memory_order_relaxed);
    stats_.ws_bytes_sent.fetch_add(bytes, std::memory_order_relaxed);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  Stats& stats_;
};

awaitable<void> ServeConnection(tcp::socket socket, Stats* stats) {
  Connection connection(std::move(socket), *stats);
  co_await connection.Run();
}

// Peer behaviour is handled through error codes; anything thrown here is a
// bug or resource exhaustion, and must cost one connection, not the process.
void LogException(std::exception_ptr error) {
  if (!error) return;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loads-demo-target: connection failed: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "loads-demo-target: connection failed: unknown exception\n");
  }
}

void RunContext(asio::io_context& context) {
  for (;;) {
    try {
      context.run();
      return;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "loads-demo-target: handler failed: %s\n", e.what());
    }
  }
}

}  // namespace

// Threading model: one io_context per thread, with accepted sockets handed
// out round-robin. Each connection then lives on exactly one thread, so its
// coroutine, its beast::tcp_stream timer and its websocket state need no
// strand, and the threads never contend on a shared scheduler queue. The
// cost (no work stealing between threads) does not matter for short, uniform
// demo requests.
class Server::Impl {
 public:
  explicit Impl(ServerOptions options) : options_(std::move(options)) {
    const int threads = std::max(1, options_.threads);
    for (int i = 0; i < threads; ++i) {
      // Hint 1: each context is run by exactly one thread.
      contexts_.push_back(std::make_unique<asio::io_context>(1));
      // Contexts other than the first may have no connection yet; keep their
      // run() from returning early.
      guards_.push_back(asio::make_work_guard(*contexts_.back()));
    }
  }

  ~Impl() {
    Stop();
    acceptor_.reset();
    guards_.clear();
    // Order matters: the accept coroutine on context 0 holds a socket that
    // belongs to another context, so context 0 (and the coroutine frames it
    // destroys) must go first.
    for (auto& context : contexts_) context.reset();
  }

  unsigned short Start() {
    if (acceptor_) throw std::logic_error("Server::Start called twice");
    error_code ec;
    const asio::ip::address address = asio::ip::make_address(options_.address, ec);
    if (ec) throw std::runtime_error("invalid address '" + options_.address + "'");
    const tcp::endpoint endpoint(address, options_.port);
    const std::string where = options_.address + " port " + std::to_string(options_.port);

    acceptor_.emplace(*contexts_[0]);
    auto fail = [&](const char* what) {
      acceptor_.reset();
      return std::runtime_error(std::string(what) + " " + where + ": " + ec.message());
    };
    acceptor_->open(endpoint.protocol(), ec);
    if (ec) throw fail("cannot open a socket for");
    // Lets a restarted server rebind while old connections sit in TIME_WAIT.
    acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
    acceptor_->bind(endpoint, ec);
    if (ec) throw fail("cannot bind to");
    acceptor_->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw fail("cannot listen on");
    const unsigned short port = acceptor_->local_endpoint(ec).port();
    if (ec) throw fail("cannot read the bound port of");

    asio::co_spawn(*contexts_[0], AcceptLoop(), LogException);
    return port;
  }

  void Run() {
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < contexts_.size(); ++i) {
      threads.emplace_back([context = contexts_[i].get()] { RunContext(*context); });
    }
    RunContext(*contexts_[0]);
    for (std::thread& thread : threads) thread.join();
  }

  // io_context::stop is thread-safe and sticky, so this works from any
  // thread and even before Run().
  void Stop() {
    for (auto& context : contexts_) context->stop();
  }

 private:
  awaitable<void> AcceptLoop() {
    for (;;) {
      asio::io_context& context = *contexts_[next_context_];
      next_context_ = (next_context_ + 1) % contexts_.size();
      tcp::socket socket(context);
      error_code ec;
      co_await acceptor_->async_accept(socket, redirect_error(use_awaitable, ec));
      if (ec == asio::error::operation_aborted) co_return;
      if (ec) {
        // Typically EMFILE/ENFILE under heavy load: back off rather than spin,
        // and keep serving the connections we already have.
        asio::steady_timer timer(*contexts_[0], kAcceptRetryDelay);
        co_await timer.async_wait(redirect_error(use_awaitable, ec));
        continue;
      }
      // Small responses must not wait for Nagle/delayed-ACK (40 ms stalls).
      socket.set_option(tcp::no_delay(true), ec);
      asio::co_spawn(context, ServeConnection(std::move(socket), &stats_), LogException);
    }
  }

  ServerOptions options_;
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::optional<tcp::acceptor> acceptor_;
  std::size_t next_context_ = 0;  // Only touched by AcceptLoop.
  Stats stats_;
};

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() = default;

unsigned short Server::Start() { return impl_->Start(); }

void Server::Run() { impl_->Run(); }

void Server::Stop() { impl_->Stop(); }

}  // namespace loads::demo
