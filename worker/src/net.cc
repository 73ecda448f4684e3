// The network side of the test API: the HTTP session, the WebSocket client and the parts of a
// virtual user that wait (sleep, cancel). All Boost.Beast code of the engine lives in this one
// translation unit to keep build times down.
//
// Error handling: every Asio/Beast operation runs with an error_code (y[ec]), never throwing; a
// failure is classified into a HitError, counted, and only then turned into the NetworkError that
// ends the test's execution (test code reads like blocking code, so an exception is how a failed
// request stops it, exactly as in the seed).

#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <map>

#include "loads/common/url.h"
#include "worker/src/cookie_jar.h"
#include "worker/src/fiber.h"
#include "worker/src/http_response.h"
#include "worker/src/user_context.h"

namespace loads::internal {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using common::HitError;
using common::Url;
using SteadyClock = std::chrono::steady_clock;

Yield*& CurrentYield() {
  thread_local Yield* current = nullptr;
  return current;
}

int64_t& CurrentUserIndex() {
  thread_local int64_t current = -1;
  return current;
}

std::atomic<int64_t>*& RunningUserSlot() {
  thread_local std::atomic<int64_t>* slot = nullptr;
  return slot;
}

// Per-thread network state shared by the users of one engine thread.
class NetShared {
 public:
  explicit NetShared(asio::io_context& io) : tls(ssl::context::tls_client), watchdog(io) {
    tls.set_default_verify_paths();
    tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3);
  }
  ssl::context tls;
  asio::steady_timer watchdog;  // enforces the users' deadlines (UserContext::ArmDeadline)
  bool watchdog_stopped = false;
};

namespace {
// The watchdog's period bounds how late a timeout fires.
constexpr auto kWatchdogPeriod = std::chrono::milliseconds(10);

void StartWatchdog(ThreadState* thread) {
  thread->net->watchdog.expires_after(kWatchdogPeriod);
  thread->net->watchdog.async_wait([thread](const boost::system::error_code& ec) {
    if (ec || thread->net->watchdog_stopped) return;
    // The engine's stuck-user check watches this: a thread whose users yield keeps beating.
    thread->beats.fetch_add(1, std::memory_order_relaxed);
    const auto now = std::chrono::steady_clock::now();
    for (UserContext* user : thread->live_users) user->CheckDeadline(now);
    StartWatchdog(thread);
  });
}
}  // namespace

void StopWatchdog(ThreadState& thread) {
  asio::post(*thread.io, [net = thread.net.get()] {
    net->watchdog_stopped = true;
    net->watchdog.cancel();
  });
}

ThreadState::ThreadState(const worker::EngineOptions& opts)
    : options(opts),
      io(std::make_unique<asio::io_context>(1)),
      net(std::make_unique<NetShared>(*io)) {
  StartWatchdog(this);
}

ThreadState::~ThreadState() = default;

namespace {

using worker::kBodyLimit;
using worker::kHeaderLimit;
using worker::ResponseReader;

constexpr char kUserAgent[] = "loads/" LOADS_SDK_VERSION;

struct Failure {
  HitError kind = HitError::kNone;
  std::string message;
  bool sent = true;  // false when the request never left (the run was interrupted first)
};

bool IsTlsError(const beast::error_code& ec) {
  return ec.category() == asio::error::get_ssl_category() ||
         ec.category() == asio::ssl::error::get_stream_category();
}

// Maps an Asio/Beast error to the kind of failure reports count it under.
HitError Classify(const beast::error_code& ec, bool cancelled) {
  if (cancelled) return HitError::kCancelled;
  if (ec == asio::error::connection_refused) return HitError::kConnectionRefused;
  if (ec == beast::error::timeout || ec == asio::error::timed_out) return HitError::kTimeout;
  if (ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
      ec == asio::error::eof || ec == http::error::end_of_stream ||
      ec == http::error::partial_message || ec == asio::error::connection_aborted ||
      ec == websocket::error::closed) {
    return HitError::kConnectionReset;
  }
  if (ec.category() == asio::error::get_netdb_category() ||
      ec.category() == asio::error::get_addrinfo_category()) {
    return HitError::kDns;
  }
  if (IsTlsError(ec)) return HitError::kTls;
  if (ec == http::error::body_limit) return HitError::kBodyTooLarge;
  if (ec == http::error::header_limit) return HitError::kHeaderTooLarge;
  if (ec.category() == http::make_error_code(http::error::bad_version).category()) {
    return HitError::kMalformedResponse;
  }
  return HitError::kNetwork;
}

// Why a TLS handshake failed, in words: for a refused certificate OpenSSL's verify result
// (self-signed, unknown issuer, expired, host name mismatch...), which its error code alone does
// not say ("certificate verify failed").
std::string TlsFailureReason(SSL* ssl, const beast::error_code& ec) {
  const long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    return "certificate verify failed: " + std::string(X509_verify_cert_error_string(verify));
  }
  return ec.message();
}

std::string ErrorText(const beast::error_code& ec) {
  if (ec == http::error::body_limit) {
    return "response body larger than " + std::to_string(kBodyLimit >> 20) + " MiB (the limit)";
  }
  if (ec == http::error::header_limit) {
    return "response header section larger than " + std::to_string(kHeaderLimit >> 10) +
           " KiB (the limit)";
  }
  if (ec == websocket::error::message_too_big) {
    return "message larger than " + std::to_string(kBodyLimit >> 20) + " MiB (the limit)";
  }
  return ec.message();
}

Failure MakeFailure(const beast::error_code& ec, bool cancelled, std::string_view what) {
  Failure f;
  f.kind = Classify(ec, cancelled);
  f.message = std::string(what) + ": " +
              (cancelled ? std::string("the run was interrupted") : ErrorText(ec));
  return f;
}

[[noreturn]] void ThrowFailure(const Failure& f) {
  throw NetworkError(std::string(common::HitErrorName(f.kind)), f.message);
}

void CheckHeaderText(std::string_view text, std::string_view what) {
  if (text.find_first_of("\r\n") != std::string_view::npos) {
    throw std::invalid_argument(std::string(what) + " contains a line break");
  }
}

bool IsIpLiteral(const std::string& host) {
  beast::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// The allow-list is the engine's own check, before every connection (HTTP, each redirect hop,
// WebSocket): a test library can compute any URL, and a server can redirect anywhere. Nothing
// is resolved or sent for a refused host.
bool Forbidden(UserContext& ctx, const Url& url, Failure* failure) {
  const auto& allow = ctx.options().allow_targets;
  if (!allow || allow->Allows(url.host, url.port)) return false;
  failure->kind = HitError::kForbiddenTarget;
  failure->message =
      url.host + ":" + std::to_string(url.port) + " is not an allowed target (--allow-target)";
  return true;
}

// Resolves and connects a TCP stream to url, within the connect timeout.
void ConnectTcp(UserContext& ctx, beast::tcp_stream& stream, const Url& url,
                std::chrono::milliseconds timeout, Failure* failure) {
  if (Forbidden(ctx, url, failure)) return;
  beast::error_code ec;
  tcp::resolver resolver(stream.get_executor());
  auto results = Await(
      [&](Yield& y) { return resolver.async_resolve(url.host, std::to_string(url.port), y[ec]); });
  if (ec) {
    *failure = MakeFailure(ec, ctx.cancelled(), "resolve " + url.host);
    return;
  }
  stream.expires_after(timeout);
  Await([&](Yield& y) { stream.async_connect(results, y[ec]); });
  if (ec) {
    *failure =
        MakeFailure(ec, ctx.cancelled(), "connect to " + url.host + ":" + std::to_string(url.port));
    return;
  }
  stream.socket().set_option(tcp::no_delay(true), ec);
}

// Sets up SNI and certificate verification on a TLS stream about to shake hands with url.
template <typename TlsStream>
void PrepareTls(TlsStream& tls, const Url& url, bool verify) {
  if (!IsIpLiteral(url.host)) SSL_set_tlsext_host_name(tls.native_handle(), url.host.c_str());
  if (verify) {
    tls.set_verify_mode(ssl::verify_peer);
    // OpenSSL checks the name itself (rather than a verify callback) so that a mismatch has a
    // verify result of its own: "hostname mismatch", "IP address mismatch".
    X509_VERIFY_PARAM* param = SSL_get0_param(tls.native_handle());
    if (IsIpLiteral(url.host)) {
      X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str());
    } else {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, url.host.c_str(), 0);
    }
  } else {
    tls.set_verify_mode(ssl::verify_none);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// HTTP session
//
// The hot path: a request is serialized by hand into one reused string and written with a single
// send on a socket typed on the io_context's own executor (no type-erased executors, no per-op
// timers); the response is parsed by Beast's parser fed from the connection's buffer. Timeouts are
// enforced by the thread's watchdog (UserContext::ArmDeadline).

using Socket = asio::basic_stream_socket<tcp, asio::io_context::executor_type>;
using TlsSocket = ssl::stream<Socket>;

namespace {
void AbortSocket(void* socket) {
  beast::error_code ec;
  static_cast<Socket*>(socket)->close(ec);
}
void CancelResolver(void* resolver) { static_cast<tcp::resolver*>(resolver)->cancel(); }

bool IEqualsAscii(std::string_view a, std::string_view b) {
  return beast::iequals(beast::string_view(a.data(), a.size()),
                        beast::string_view(b.data(), b.size()));
}

bool HasHeader(const Headers& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (IEqualsAscii(key, name)) return true;
  }
  return false;
}

void AppendHeader(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += value;
  out += "\r\n";
}
}  // namespace

// One kept-alive connection to an origin.
struct Connection {
  std::unique_ptr<Socket> plain;
  std::unique_ptr<TlsSocket> tls;
  beast::flat_buffer buffer;  // bytes received and not parsed yet

  Socket& Lowest() { return plain ? *plain : tls->next_layer(); }
  void Abort() {
    beast::error_code ec;
    Lowest().shutdown(tcp::socket::shutdown_both, ec);
    Lowest().close(ec);
  }
};

class SessionImpl {
 public:
  explicit SessionImpl(UserContext* ctx)
      : verify_tls_(ctx->options().verify_tls),
        connect_timeout_(ctx->options().connect_timeout),
        timeout_(ctx->options().timeout),
        ctx_(ctx) {}

  Response Request(std::string_view method, std::string_view url_text,
                   const RequestOptions& options);

  void CloseAll() {
    for (auto& [origin, conn] : connections_) conn->Abort();
  }
  void DropAll() { connections_.clear(); }

  Headers headers;
  worker::CookieJar cookies;
  bool verify_tls_;
  std::chrono::milliseconds connect_timeout_;
  std::chrono::milliseconds timeout_;
  int max_redirects_ = 10;

 private:
  struct Hop {
    int status = 0;
    std::string reason;
    Headers headers;
    std::string body;
    std::chrono::nanoseconds elapsed{};
  };

  Failure SendOne(const Url& url, std::string_view method, std::string_view wire,
                  std::chrono::milliseconds timeout, Hop* hop);
  Connection* Connect(const Url& url, Failure* failure);
  template <typename Stream>
  beast::error_code Exchange(Stream& stream, Connection& conn, std::string_view wire, bool head,
                             Hop* hop, bool* got_some, bool* keep_alive);
  void Serialize(std::string_view method, const Url& url, const std::string& body,
                 const RequestOptions& options, bool drop_credentials);
  const Url& ParseCached(std::string_view url_text);
  bool SameOriginAsCached(const Url& url) const {
    return url.port == cached_url_.port && url.host == cached_url_.host &&
           url.scheme == cached_url_.scheme;
  }

  UserContext* ctx_;
  std::map<std::string, std::unique_ptr<Connection>, std::less<>> connections_;
  std::string wire_;  // the request being sent, reused to avoid an allocation per request
  // The last URL parsed and the last default hit name: a test usually repeats its requests.
  std::string cached_url_text_;
  Url cached_url_;
  std::string cached_origin_;
  std::string cached_host_header_;
  std::string cached_name_method_;
  std::string cached_name_url_;
  std::string cached_name_;
};

const Url& SessionImpl::ParseCached(std::string_view url_text) {
  if (url_text != cached_url_text_ || cached_url_text_.empty()) {
    auto parsed = common::ParseUrl(url_text);
    if (!parsed.ok()) {
      throw std::invalid_argument("invalid URL '" + std::string(url_text) +
                                  "': " + parsed.status().message());
    }
    if (parsed->scheme != "http" && parsed->scheme != "https") {
      throw std::invalid_argument("the session sends HTTP requests; use create_ws() for " +
                                  std::string(url_text));
    }
    cached_url_ = std::move(*parsed);
    cached_url_text_ = std::string(url_text);
    cached_origin_ = cached_url_.Origin();
    cached_host_header_ = cached_url_.HostHeader();
  }
  return cached_url_;
}

Connection* SessionImpl::Connect(const Url& url, Failure* failure) {
  if (Forbidden(*ctx_, url, failure)) return nullptr;
  auto conn = std::make_unique<Connection>();
  asio::io_context& io = *ctx_->thread().io;
  if (url.Tls()) {
    conn->tls = std::make_unique<TlsSocket>(io.get_executor(), ctx_->thread().net->tls);
  } else {
    conn->plain = std::make_unique<Socket>(io.get_executor());
  }
  Socket& socket = conn->Lowest();
  const auto deadline = SteadyClock::now() + connect_timeout_;
  const std::string where = url.host + ":" + std::to_string(url.port);
  beast::error_code ec;
  const auto address = asio::ip::make_address(url.host, ec);
  if (!ec) {
    // An IP literal needs no resolver (whose asynchronous form runs on a helper thread).
    ctx_->ArmDeadline(deadline, &AbortSocket, &socket);
    Await([&](Yield& y) { socket.async_connect(tcp::endpoint(address, url.port), y[ec]); });
  } else {
    tcp::resolver resolver(io);
    ctx_->ArmDeadline(deadline, &CancelResolver, &resolver);
    auto results = Await([&](Yield& y) {
      return resolver.async_resolve(url.host, std::to_string(url.port), y[ec]);
    });
    if (!ec) {
      ctx_->ArmDeadline(deadline, &AbortSocket, &socket);
      Await([&](Yield& y) { asio::async_connect(socket, results, y[ec]); });
    } else if (!ctx_->TimedOut()) {
      ctx_->DisarmDeadline();
      *failure = MakeFailure(ec, ctx_->cancelled(), "resolve " + url.host);
      if (!ctx_->cancelled()) failure->kind = HitError::kDns;
      return nullptr;
    }
  }
  ctx_->DisarmDeadline();
  if (ec) {
    *failure = MakeFailure(ec, ctx_->cancelled(), "connect to " + where);
    if (ctx_->TimedOut() && !ctx_->cancelled()) {
      failure->kind = HitError::kTimeout;
      failure->message = "connect to " + where + ": no connection within the connect timeout";
    }
    return nullptr;
  }
  socket.set_option(tcp::no_delay(true), ec);
  if (conn->tls) {
    PrepareTls(*conn->tls, url, verify_tls_);
    ctx_->ArmDeadline(deadline, &AbortSocket, &socket);
    Await([&](Yield& y) { conn->tls->async_handshake(ssl::stream_base::client, y[ec]); });
    ctx_->DisarmDeadline();
    if (ec) {
      *failure = MakeFailure(ec, ctx_->cancelled(), "TLS handshake with " + where);
      if (ctx_->cancelled()) {
        failure->kind = HitError::kCancelled;
      } else if (ctx_->TimedOut()) {
        failure->kind = HitError::kTimeout;
        failure->message = "TLS handshake with " + where + ": not done within the connect timeout";
      } else {
        failure->kind = HitError::kTls;
        failure->message =
            "TLS handshake with " + where + ": " + TlsFailureReason(conn->tls->native_handle(), ec);
      }
      return nullptr;
    }
  }
  auto& slot = connections_[url.Origin()];
  slot = std::move(conn);
  return slot.get();
}

template <typename Stream>
beast::error_code SessionImpl::Exchange(Stream& stream, Connection& conn, std::string_view wire,
                                        bool head, Hop* hop, bool* got_some, bool* keep_alive) {
  beast::error_code ec;
  Await(
      [&](Yield& y) { asio::async_write(stream, asio::buffer(wire.data(), wire.size()), y[ec]); });
  if (ec) return ec;
  ResponseReader reader(head);
  beast::flat_buffer& buffer = conn.buffer;
  bool need_read = buffer.size() == 0;
  while (true) {
    if (need_read) {
      const size_t n =
          Await([&](Yield& y) { return stream.async_read_some(buffer.prepare(16 * 1024), y[ec]); });
      buffer.commit(n);
      if (ec) {
        *got_some = *got_some || reader.got_some() || buffer.size() > 0;
        if (ec != asio::error::eof) return ec;
        // A body delimited by the end of the connection is complete now; anything else was cut.
        ec = reader.End();
        if (ec) return ec;
        break;
      }
    }
    ec = reader.Feed(buffer);
    *got_some = *got_some || reader.got_some();
    if (ec == http::error::need_more) {
      ec = {};
      need_read = true;
      continue;
    }
    if (ec) return ec;
    break;
  }
  auto& message = reader.message();
  hop->status = static_cast<int>(message.result_int());
  hop->reason = std::string(message.reason());
  hop->headers.clear();
  for (const auto& field : message) {
    hop->headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  hop->body = std::move(message.body());
  *keep_alive = message.keep_alive() && !reader.need_eof();
  return ec;
}

Failure SessionImpl::SendOne(const Url& url, std::string_view method, std::string_view wire,
                             std::chrono::milliseconds timeout, Hop* hop) {
  Failure failure;
  // Redirect hops may go elsewhere; the first hop's origin is usually the cached one.
  const bool cached = SameOriginAsCached(url);
  const std::string origin_storage = cached ? std::string() : url.Origin();
  const std::string& origin = cached ? cached_origin_ : origin_storage;
  const bool head = method == "HEAD";
  // A kept-alive connection may have been closed by the server since its last use; such a
  // connection fails before any byte of the answer, and the request is sent once more on a new
  // connection, as browsers and other HTTP clients do.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (ctx_->cancelled()) {
      ctx_->PauseAfterCancel();
      failure =
          Failure{HitError::kCancelled, "request to " + url.host + ": the run was interrupted"};
      failure.sent = false;
      return failure;
    }
    const auto start = SteadyClock::now();
    Connection* conn = nullptr;
    bool reused = false;
    if (auto it = connections_.find(origin); it != connections_.end()) {
      conn = it->second.get();
      reused = true;
    } else {
      conn = Connect(url, &failure);
      if (!conn) {
        // Which request it was: the test may make many.
        failure.message = std::string(method) + " " + url.WithoutQuery() + ": " + failure.message;
        return failure;
      }
    }
    bool got_some = false;
    bool keep_alive = false;
    ctx_->ArmDeadline(SteadyClock::now() + timeout, &AbortSocket, &conn->Lowest());
    beast::error_code ec =
        conn->plain ? Exchange(*conn->plain, *conn, wire, head, hop, &got_some, &keep_alive)
                    : Exchange(*conn->tls, *conn, wire, head, hop, &got_some, &keep_alive);
    ctx_->DisarmDeadline();
    if (!ec) {
      hop->elapsed = SteadyClock::now() - start;
      if (!keep_alive) connections_.erase(origin);
      return failure;
    }
    conn->Abort();
    connections_.erase(origin);
    const std::string what = std::string(method) + " " + url.WithoutQuery();
    if (ctx_->TimedOut() && !ctx_->cancelled()) {
      return Failure{HitError::kTimeout, what + ": no complete response within " +
                                             std::to_string(timeout.count()) + " ms"};
    }
    const HitError kind = Classify(ec, ctx_->cancelled());
    if (reused && !got_some && kind == HitError::kConnectionReset) continue;
    return MakeFailure(ec, ctx_->cancelled(), what);
  }
  return Failure{HitError::kConnectionReset,
                 std::string(method) + " " + url.WithoutQuery() +
                     ": the connection was closed before a response, twice"};
}

void SessionImpl::Serialize(std::string_view method, const Url& url, const std::string& body,
                            const RequestOptions& options, bool drop_credentials) {
  // After a redirect to another origin, credentials meant for the first one are not sent.
  auto skipped = [&](std::string_view name) {
    return drop_credentials &&
           (IEqualsAscii(name, "authorization") || IEqualsAscii(name, "proxy-authorization"));
  };
  auto user_has = [&](std::string_view name) {
    return HasHeader(options.headers, name) || HasHeader(headers, name);
  };
  std::string& wire = wire_;
  wire.clear();
  wire += method;
  wire += ' ';
  wire += url.target;
  wire += " HTTP/1.1\r\n";
  if (!user_has("host")) {
    AppendHeader(wire, "Host", SameOriginAsCached(url) ? cached_host_header_ : url.HostHeader());
  }
  if (!user_has("user-agent")) AppendHeader(wire, "User-Agent", kUserAgent);
  if (!user_has("accept")) AppendHeader(wire, "Accept", "*/*");
  for (const auto& [name, value] : headers) {
    if (!HasHeader(options.headers, name) && !skipped(name)) AppendHeader(wire, name, value);
  }
  for (const auto& [name, value] : options.headers) {
    if (!skipped(name)) AppendHeader(wire, name, value);
  }
  if (!user_has("cookie") && cookies.size() > 0) {
    const std::string cookie = cookies.HeaderFor(url, std::chrono::system_clock::now());
    if (!cookie.empty()) AppendHeader(wire, "Cookie", cookie);
  }
  if (!options.json.is_null() && !user_has("content-type")) {
    AppendHeader(wire, "Content-Type", "application/json");
  }
  const bool has_body_method = method == "POST" || method == "PUT" || method == "PATCH";
  if ((!body.empty() || has_body_method) && !user_has("content-length") &&
      !user_has("transfer-encoding")) {
    AppendHeader(wire, "Content-Length", std::to_string(body.size()));
  }
  wire += "\r\n";
  wire += body;
}

Response SessionImpl::Request(std::string_view method_in, std::string_view url_text,
                              const RequestOptions& options) {
  std::string full;
  if (!options.params.empty()) {
    full = std::string(url_text);
    full += full.find('?') == std::string::npos ? '?' : '&';
    for (size_t i = 0; i < options.params.size(); ++i) {
      if (i) full += '&';
      full += common::UrlEncode(options.params[i].first) + "=" +
              common::UrlEncode(options.params[i].second);
    }
    url_text = full;
  }
  Url url = ParseCached(url_text);
  std::string method(method_in);
  if (!common::IsHttpMethod(method)) {
    throw std::invalid_argument("invalid HTTP method '" + method + "'");
  }
  std::string body = options.json.is_null() ? options.body : options.json.dump();
  for (const Headers* list : std::initializer_list<const Headers*>{&headers, &options.headers}) {
    for (const auto& [name, value] : *list) {
      CheckHeaderText(name, "header name");
      CheckHeaderText(value, "header value");
      if (name.empty() || name.find_first_of(" \t:") != std::string::npos) {
        throw std::invalid_argument("invalid header name '" + name + "'");
      }
    }
  }
  const auto timeout = options.timeout.value_or(timeout_);
  std::string first_origin;  // set at the first redirect
  Response response;
  for (int redirects = 0;; ++redirects) {
    Serialize(method, url, body, options, redirects > 0 && url.Origin() != first_origin);
    const std::string* name = &options.name;
    if (options.name.empty()) {
      if (redirects > 0 || method != cached_name_method_ || url_text != cached_name_url_) {
        cached_name_ = method + " " + url.WithoutQuery();
        cached_name_method_ = redirects > 0 ? std::string() : method;
        cached_name_url_ = redirects > 0 ? std::string() : std::string(url_text);
      }
      name = &cached_name_;
    }
    Hop hop;
    const Failure failure = SendOne(url, method, wire_, timeout, &hop);
    if (failure.kind != HitError::kNone) {
      // A request that never left (the run was interrupted first) is not a hit.
      if (failure.sent) ctx_->RecordHit(*name, method, 0, failure.kind, 0);
      ThrowFailure(failure);
    }
    ctx_->RecordHit(*name, method, hop.status, HitError::kNone,
                    static_cast<uint64_t>(hop.elapsed.count()));

    std::string_view location;
    for (const auto& [hname, value] : hop.headers) {
      if (IEqualsAscii(hname, "set-cookie")) {
        cookies.Store(url, value, std::chrono::system_clock::now());
      } else if (IEqualsAscii(hname, "location")) {
        location = value;
      }
    }
    const bool is_redirect = hop.status == 301 || hop.status == 302 || hop.status == 303 ||
                             hop.status == 307 || hop.status == 308;
    if (is_redirect && options.allow_redirects && !location.empty()) {
      if (redirects >= max_redirects_) {
        throw NetworkError("too_many_redirects", "more than " + std::to_string(max_redirects_) +
                                                     " redirects from " + std::string(url_text));
      }
      auto next = common::ResolveUrl(url, location);
      if (!next.ok() || (next->scheme != "http" && next->scheme != "https")) {
        throw NetworkError("malformed_response",
                           "invalid redirect location '" + std::string(location) + "'");
      }
      // 303, and 301/302 after a POST, turn into a GET without a body, as browsers do.
      if (hop.status == 303 || ((hop.status == 301 || hop.status == 302) && method == "POST")) {
        if (method != "HEAD") method = "GET";
        body.clear();
      }
      if (first_origin.empty()) first_origin = url.Origin();
      url = *next;
      continue;
    }
    response.status = hop.status;
    response.reason = std::move(hop.reason);
    response.headers = std::move(hop.headers);
    response.body = std::move(hop.body);
    response.url = url.ToString();
    response.redirects = redirects;
    response.elapsed = hop.elapsed;
    return response;
  }
}

// ---------------------------------------------------------------------------------------------
// WebSocket client

class WebSocketImpl : public std::enable_shared_from_this<WebSocketImpl> {
 public:
  WebSocketImpl(UserContext* ctx, std::string url)
      : thread_(&ctx->thread()), ctx_(ctx), url_(std::move(url)) {}

  void Open(const Headers& headers);
  void Send(std::string_view data, bool binary);
  std::optional<std::string> Receive();
  void Close();
  void Abort();
  void StartReader(WebSocket* owner, WebSocket::Callback callback);
  void Detach() {
    owner_ = nullptr;
    closing_ = true;
  }

  bool open() const { return open_; }
  const std::string& url() const { return url_; }
  std::exception_ptr callback_error() const { return callback_error_; }

 private:
  template <typename Fn>
  decltype(auto) Visit(Fn&& fn) {
    return plain_ ? fn(*plain_) : fn(*tls_);
  }
  beast::tcp_stream& Lowest() {
    return plain_ ? plain_->next_layer() : tls_->next_layer().next_layer();
  }
  void MarkClosed() {
    if (open_) {
      open_ = false;
      ++thread_->stats.ws_closed;
    }
  }
  bool Cancelled() const { return ctx_ ? ctx_->cancelled() : true; }
  [[noreturn]] void Throw(const beast::error_code& ec, std::string_view what) {
    Failure f = MakeFailure(ec, Cancelled(), std::string(what) + " " + url_);
    if (ec == websocket::error::message_too_big && !Cancelled()) {
      throw NetworkError("message_too_large", f.message);
    }
    throw NetworkError(
        f.kind == HitError::kNetwork ? "websocket" : std::string(common::HitErrorName(f.kind)),
        f.message);
  }
  void ReadLoop();
  // A message arrived: it answers the oldest send() not yet answered, if any.
  void Received(size_t bytes) {
    ++thread_->stats.ws_messages_received;
    thread_->stats.ws_bytes_received += bytes;
    if (unanswered_ == 0) return;
    const SteadyClock::time_point sent = sends_[first_unanswered_];
    first_unanswered_ = (first_unanswered_ + 1) % sends_.size();
    --unanswered_;
    thread_->stats.ws_round_trip.Record(Nanos(SteadyClock::now() - sent));
  }
  void Sent(SteadyClock::time_point at) {
    // A socket that only sends (or whose answers stopped) keeps its latest sends: the oldest
    // give way, so a late answer never pairs with a send long gone.
    if (unanswered_ == sends_.size()) {
      first_unanswered_ = (first_unanswered_ + 1) % sends_.size();
      --unanswered_;
    }
    sends_[(first_unanswered_ + unanswered_) % sends_.size()] = at;
    ++unanswered_;
  }
  static uint64_t Nanos(SteadyClock::duration d) {
    return static_cast<uint64_t>(
        std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()));
  }

  ThreadState* thread_;
  UserContext* ctx_;  // reset when the user's execution ends; the reader may outlive it
  std::string url_;
  std::unique_ptr<websocket::stream<beast::tcp_stream>> plain_;
  std::unique_ptr<websocket::stream<beast::ssl_stream<beast::tcp_stream>>> tls_;
  beast::flat_buffer buffer_;
  bool open_ = false;
  bool closing_ = false;
  bool writing_ = false;
  bool reader_ = false;
  WebSocket* owner_ = nullptr;
  WebSocket::Callback callback_;
  std::exception_ptr callback_error_;
  // Times of the sends not yet answered, oldest first (a ring).
  std::array<SteadyClock::time_point, 16> sends_{};
  size_t first_unanswered_ = 0;
  size_t unanswered_ = 0;

  friend class UserContext;
};

void WebSocketImpl::Open(const Headers& headers) {
  auto parsed = common::ParseUrl(url_);
  if (!parsed.ok()) {
    throw std::invalid_argument("invalid WebSocket URL '" + url_ +
                                "': " + parsed.status().message());
  }
  if (parsed->scheme != "ws" && parsed->scheme != "wss") {
    throw std::invalid_argument("create_ws() needs a ws:// or wss:// URL, got " + url_);
  }
  for (const auto& [name, value] : headers) {
    CheckHeaderText(name, "header name");
    CheckHeaderText(value, "header value");
  }
  const Url& url = *parsed;
  asio::io_context& io = *thread_->io;
  if (url.Tls()) {
    tls_ = std::make_unique<websocket::stream<beast::ssl_stream<beast::tcp_stream>>>(
        io, thread_->net->tls);
  } else {
    plain_ = std::make_unique<websocket::stream<beast::tcp_stream>>(io);
  }
  const auto& options = thread_->options;
  const auto started = SteadyClock::now();
  Failure failure;
  ConnectTcp(*ctx_, Lowest(), url, options.connect_timeout, &failure);
  if (failure.kind != HitError::kNone) {
    throw NetworkError(std::string(common::HitErrorName(failure.kind)), failure.message);
  }
  beast::error_code ec;
  if (tls_) {
    PrepareTls(tls_->next_layer(), url, options.verify_tls);
    Lowest().expires_after(options.connect_timeout);
    Await([&](Yield& y) { tls_->next_layer().async_handshake(ssl::stream_base::client, y[ec]); });
    if (ec && !Cancelled()) {
      throw NetworkError("tls", "TLS handshake with " + url_ + ": " +
                                    TlsFailureReason(tls_->next_layer().native_handle(), ec));
    }
    if (ec) Throw(ec, "TLS handshake with");
  }
  // The WebSocket stream keeps its own timeouts; the TCP stream's must be off.
  Lowest().expires_never();
  Visit([&](auto& ws) {
    websocket::stream_base::timeout timeouts;
    timeouts.handshake_timeout = options.connect_timeout;
    timeouts.idle_timeout = options.timeout;
    timeouts.keep_alive_pings = false;
    ws.set_option(timeouts);
    ws.set_option(websocket::stream_base::decorator([headers](websocket::request_type& req) {
      req.set(http::field::user_agent, kUserAgent);
      for (const auto& [name, value] : headers) req.set(name, value);
    }));
    ws.read_message_max(kBodyLimit);
    Await([&](Yield& y) { ws.async_handshake(url.HostHeader(), url.target, y[ec]); });
  });
  if (ec) Throw(ec, "WebSocket handshake with");
  open_ = true;
  ++thread_->stats.ws_opened;
  thread_->stats.ws_connect.Record(Nanos(SteadyClock::now() - started));
}

void WebSocketImpl::Send(std::string_view data, bool binary) {
  if (!open_) throw std::logic_error("send() on a closed WebSocket " + url_);
  if (writing_) throw std::logic_error("another send() is in progress on WebSocket " + url_);
  if (Cancelled()) throw NetworkError("cancelled", "send to " + url_ + ": the run was interrupted");
  writing_ = true;
  // Timed from before the write: an answer may arrive (and a callback reader take it) before
  // the write completes.
  Sent(SteadyClock::now());
  beast::error_code ec;
  Visit([&](auto& ws) {
    ws.binary(binary);
    Await([&](Yield& y) { ws.async_write(asio::buffer(data.data(), data.size()), y[ec]); });
  });
  writing_ = false;
  if (ec) {
    MarkClosed();
    Throw(ec, "send to");
  }
  ++thread_->stats.ws_messages_sent;
  thread_->stats.ws_bytes_sent += data.size();
}

std::optional<std::string> WebSocketImpl::Receive() {
  if (reader_) throw std::logic_error("receive() on WebSocket " + url_ + ", which has a callback");
  if (!open_) return std::nullopt;
  if (Cancelled())
    throw NetworkError("cancelled", "receive from " + url_ + ": the run was interrupted");
  buffer_.clear();
  beast::error_code ec;
  Visit([&](auto& ws) { Await([&](Yield& y) { ws.async_read(buffer_, y[ec]); }); });
  if (ec == websocket::error::closed) {
    MarkClosed();
    return std::nullopt;
  }
  if (ec) {
    MarkClosed();
    Throw(ec, "receive from");
  }
  Received(buffer_.size());
  return beast::buffers_to_string(buffer_.data());
}

void WebSocketImpl::Close() {
  if (!open_) return;
  closing_ = true;
  beast::error_code ec;
  if (!Cancelled()) {
    Visit([&](auto& ws) {
      Await([&](Yield& y) { ws.async_close(websocket::close_code::normal, y[ec]); });
    });
  }
  if (ec || Cancelled()) Abort();
  MarkClosed();
}

void WebSocketImpl::Abort() {
  beast::error_code ec;
  Lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
  Lowest().socket().close(ec);
}

void WebSocketImpl::StartReader(WebSocket* owner, WebSocket::Callback callback) {
  owner_ = owner;
  callback_ = std::move(callback);
  reader_ = true;
  auto self = shared_from_this();
  const int64_t user = ctx_ ? ctx_->user_index() : -1;
  SpawnCoroutine(*thread_->io, thread_->options.stack_size, [self, user](Yield yield) {
    CurrentYield() = &yield;
    SetCurrentUser(user);
    try {
      self->ReadLoop();
    } catch (const ForcedUnwind&) {
      throw;
    } catch (...) {
      if (!self->callback_error_) self->callback_error_ = std::current_exception();
    }
    CurrentYield() = nullptr;
  });
}

void WebSocketImpl::ReadLoop() {
  while (open_ && !closing_) {
    beast::error_code ec;
    buffer_.clear();
    Visit([&](auto& ws) { Await([&](Yield& y) { ws.async_read(buffer_, y[ec]); }); });
    if (ec) {
      const bool expected = closing_ || ec == websocket::error::closed;
      MarkClosed();
      if (!expected) Throw(ec, "receive from");
      return;
    }
    Received(buffer_.size());
    if (closing_ || !owner_ || !callback_) continue;
    const std::string message = beast::buffers_to_string(buffer_.data());
    try {
      callback_(*owner_, message);
    } catch (const ForcedUnwind&) {
      throw;
    } catch (...) {
      if (!callback_error_) callback_error_ = std::current_exception();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// UserContext and the public classes' members that need the network

namespace {
void DeleteSession(SessionImpl* impl) { delete impl; }
}  // namespace

namespace {
std::atomic<int64_t> g_active_users{0};
}  // namespace

UserContext::UserContext(ThreadState* thread, int64_t user_index)
    : thread_(thread),
      user_index_(user_index),
      session_impl_(nullptr, &DeleteSession),
      session_(nullptr) {
  session_impl_.reset(new SessionImpl(this));
  session_ = Session(session_impl_.get());
  thread_->live_users.insert(this);
  g_active_users.fetch_add(1, std::memory_order_relaxed);
}

UserContext::~UserContext() {
  g_active_users.fetch_sub(1, std::memory_order_relaxed);
  thread_->live_users.erase(this);
  for (auto& ws : sockets_) ws->impl_->Detach();
}

void UserContext::RecordHit(std::string_view name, std::string_view method, int status,
                            common::HitError error, uint64_t latency_ns) {
  thread_->stats.RecordHit(name, method, status, error, latency_ns);
  thread_->hits.fetch_add(1, std::memory_order_relaxed);
  if (intended_start_ && error == common::HitError::kNone) {
    // The closed model reads no clock here: only scheduled executions pay for it.
    const auto since = SteadyClock::now() - *intended_start_;
    thread_->stats.corrected_latency.Record(static_cast<uint64_t>(
        std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(since).count())));
  }
}

WebSocket& UserContext::CreateWebSocket(std::string_view url, WebSocket::Callback callback,
                                        const Headers& headers) {
  if (cancelled_) {
    PauseAfterCancel();
    throw NetworkError("cancelled", "WebSocket " + std::string(url) + ": the run was interrupted");
  }
  auto impl = std::make_shared<WebSocketImpl>(this, std::string(url));
  impl->Open(headers);
  sockets_.push_back(std::unique_ptr<WebSocket>(new WebSocket(impl)));
  WebSocket& ws = *sockets_.back();
  if (callback) impl->StartReader(&ws, std::move(callback));
  return ws;
}

std::exception_ptr UserContext::CloseExecutionSockets() {
  std::exception_ptr first;
  for (auto& ws : sockets_) {
    try {
      ws->impl_->Close();
    } catch (const ForcedUnwind&) {
      throw;
    } catch (...) {
      // A failed close handshake is not the test's fault; the socket is gone either way.
    }
    if (!first) first = ws->impl_->callback_error();
    ws->impl_->Detach();
    ws->impl_->ctx_ = nullptr;
  }
  sockets_.clear();
  return first;
}

void UserContext::PauseAfterCancel(std::chrono::duration<double> at_most) {
  asio::steady_timer pause(*thread_->io);
  pause.expires_after(std::chrono::duration_cast<SteadyClock::duration>(
      std::clamp(at_most, std::chrono::duration<double>(0), std::chrono::duration<double>(0.01))));
  beast::error_code ec;
  Await([&](Yield& y) { pause.async_wait(y[ec]); });
}

void UserContext::Sleep(std::chrono::duration<double> seconds) {
  if (cancelled_) {
    PauseAfterCancel(seconds);
    throw NetworkError("cancelled", "sleep: the run was interrupted");
  }
  if (seconds.count() <= 0) return;
  asio::steady_timer timer(*thread_->io);
  timer.expires_after(std::chrono::duration_cast<SteadyClock::duration>(seconds));
  sleep_timer_ = &timer;
  beast::error_code ec;
  Await([&](Yield& y) { timer.async_wait(y[ec]); });
  sleep_timer_ = nullptr;
  if (cancelled_) throw NetworkError("cancelled", "sleep: the run was interrupted");
}

bool UserContext::SleepUntil(SteadyClock::time_point when) {
  if (cancelled_) return false;
  if (SteadyClock::now() >= when) return true;
  asio::steady_timer timer(*thread_->io);
  timer.expires_at(when);
  sleep_timer_ = &timer;
  beast::error_code ec;
  Await([&](Yield& y) { timer.async_wait(y[ec]); });
  sleep_timer_ = nullptr;
  return !cancelled_;
}

void UserContext::Cancel() {
  cancelled_ = true;
  // Whatever the user waits for now ends at once, as if its deadline had passed.
  if (abort_) {
    auto abort = abort_;
    abort_ = nullptr;
    abort(abort_target_);
  }
  session_impl_->CloseAll();
  for (auto& ws : sockets_) ws->impl_->Abort();
  if (sleep_timer_) static_cast<asio::steady_timer*>(sleep_timer_)->cancel();
}

}  // namespace loads::internal

namespace loads::worker {
int64_t ActiveUsers() { return internal::g_active_users.load(std::memory_order_relaxed); }
}  // namespace loads::worker

namespace loads {

Response Session::request(std::string_view method, std::string_view url,
                          const RequestOptions& options) {
  return impl_->Request(method, url, options);
}
Response Session::get(std::string_view url, const RequestOptions& o) {
  return request("GET", url, o);
}
Response Session::post(std::string_view url, const RequestOptions& o) {
  return request("POST", url, o);
}
Response Session::put(std::string_view url, const RequestOptions& o) {
  return request("PUT", url, o);
}
Response Session::patch(std::string_view url, const RequestOptions& o) {
  return request("PATCH", url, o);
}
Response Session::delete_(std::string_view url, const RequestOptions& o) {
  return request("DELETE", url, o);
}
Response Session::head(std::string_view url, const RequestOptions& o) {
  return request("HEAD", url, o);
}
Response Session::options(std::string_view url, const RequestOptions& o) {
  return request("OPTIONS", url, o);
}
Headers& Session::headers() { return impl_->headers; }
void Session::set_verify_tls(bool verify) {
  if (verify != impl_->verify_tls_) impl_->DropAll();
  impl_->verify_tls_ = verify;
}
void Session::set_connect_timeout(std::chrono::milliseconds t) { impl_->connect_timeout_ = t; }
void Session::set_timeout(std::chrono::milliseconds t) { impl_->timeout_ = t; }
void Session::set_max_redirects(int n) { impl_->max_redirects_ = std::max(0, n); }
std::optional<std::string> Session::cookie(std::string_view url, std::string_view name) const {
  auto parsed = common::ParseUrl(url);
  if (!parsed.ok()) return std::nullopt;
  return impl_->cookies.Get(*parsed, name, std::chrono::system_clock::now());
}
void Session::clear_cookies() { impl_->cookies.Clear(); }
void Session::close_connections() { impl_->DropAll(); }

WebSocket::WebSocket(std::shared_ptr<internal::WebSocketImpl> impl) : impl_(std::move(impl)) {}
WebSocket::~WebSocket() = default;
void WebSocket::send(std::string_view text) { impl_->Send(text, false); }
void WebSocket::send_binary(std::string_view data) { impl_->Send(data, true); }
std::optional<std::string> WebSocket::receive() { return impl_->Receive(); }
void WebSocket::close() { impl_->Close(); }
bool WebSocket::is_open() const { return impl_->open(); }
const std::string& WebSocket::url() const { return impl_->url(); }

}  // namespace loads
