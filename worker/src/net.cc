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
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <map>

#include "loads/common/url.h"
#include "worker/src/cookie_jar.h"
#include "worker/src/fiber.h"
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

asio::yield_context*& CurrentYield() {
  thread_local asio::yield_context* current = nullptr;
  return current;
}

// Per-thread network state shared by the users of one engine thread.
class NetShared {
 public:
  NetShared() : tls(ssl::context::tls_client) {
    tls.set_default_verify_paths();
    tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3);
  }
  ssl::context tls;
};

ThreadState::ThreadState(const worker::EngineOptions& opts)
    : options(opts),
      io(std::make_unique<asio::io_context>(1)),
      net(std::make_unique<NetShared>()) {}

ThreadState::~ThreadState() = default;

namespace {

constexpr uint64_t kBodyLimit = 64ull << 20;
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
  if (ec.category() == http::make_error_code(http::error::bad_version).category()) {
    return HitError::kMalformedResponse;
  }
  return HitError::kNetwork;
}

Failure MakeFailure(const beast::error_code& ec, bool cancelled, std::string_view what) {
  Failure f;
  f.kind = Classify(ec, cancelled);
  f.message = std::string(what) + ": " +
              (cancelled ? std::string("the run was interrupted") : ec.message());
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

// Resolves and connects a TCP stream to url, within the connect timeout.
void ConnectTcp(UserContext& ctx, beast::tcp_stream& stream, const Url& url,
                std::chrono::milliseconds timeout, Failure* failure) {
  beast::error_code ec;
  tcp::resolver resolver(stream.get_executor());
  auto results = Await([&](asio::yield_context& y) {
    return resolver.async_resolve(url.host, std::to_string(url.port), y[ec]);
  });
  if (ec) {
    *failure = MakeFailure(ec, ctx.cancelled(), "resolve " + url.host);
    return;
  }
  stream.expires_after(timeout);
  Await([&](asio::yield_context& y) { stream.async_connect(results, y[ec]); });
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
    tls.set_verify_callback(ssl::host_name_verification(url.host));
  } else {
    tls.set_verify_mode(ssl::verify_none);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// HTTP session

// One kept-alive connection to an origin.
struct Connection {
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;

  beast::tcp_stream& Lowest() { return plain ? *plain : tls->next_layer(); }
  void Abort() {
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    Lowest().socket().close(ec);
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

  Failure SendOne(const Url& url, const http::request<http::string_body>& request, bool head,
                  std::chrono::milliseconds timeout, Hop* hop);
  Connection* Connect(const Url& url, Failure* failure);
  template <typename Stream>
  beast::error_code Exchange(Stream& stream, Connection& conn,
                             const http::request<http::string_body>& request, bool head,
                             std::chrono::milliseconds timeout, Hop* hop, bool* got_some,
                             bool* keep_alive);

  UserContext* ctx_;
  std::map<std::string, std::unique_ptr<Connection>> connections_;
};

Connection* SessionImpl::Connect(const Url& url, Failure* failure) {
  auto conn = std::make_unique<Connection>();
  asio::io_context& io = *ctx_->thread().io;
  if (url.Tls()) {
    conn->tls = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(io, ctx_->thread().net->tls);
  } else {
    conn->plain = std::make_unique<beast::tcp_stream>(io);
  }
  ConnectTcp(*ctx_, conn->Lowest(), url, connect_timeout_, failure);
  if (failure->kind != HitError::kNone) return nullptr;
  if (conn->tls) {
    PrepareTls(*conn->tls, url, verify_tls_);
    beast::error_code ec;
    conn->Lowest().expires_after(connect_timeout_);
    Await([&](asio::yield_context& y) {
      conn->tls->async_handshake(ssl::stream_base::client, y[ec]);
    });
    if (ec) {
      *failure = MakeFailure(ec, ctx_->cancelled(), "TLS handshake with " + url.host);
      if (!ctx_->cancelled() && Classify(ec, false) != HitError::kTimeout) {
        failure->kind = HitError::kTls;
      }
      return nullptr;
    }
  }
  auto& slot = connections_[url.Origin()];
  slot = std::move(conn);
  return slot.get();
}

template <typename Stream>
beast::error_code SessionImpl::Exchange(Stream& stream, Connection& conn,
                                        const http::request<http::string_body>& request, bool head,
                                        std::chrono::milliseconds timeout, Hop* hop, bool* got_some,
                                        bool* keep_alive) {
  beast::error_code ec;
  conn.Lowest().expires_after(timeout);
  Await([&](asio::yield_context& y) { http::async_write(stream, request, y[ec]); });
  if (ec) return ec;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kBodyLimit);
  if (head) parser.skip(true);
  Await([&](asio::yield_context& y) { http::async_read(stream, conn.buffer, parser, y[ec]); });
  *got_some = parser.got_some();
  if (ec) return ec;
  auto message = parser.release();
  hop->status = static_cast<int>(message.result_int());
  hop->reason = std::string(message.reason());
  hop->headers.clear();
  for (const auto& field : message) {
    hop->headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  hop->body = std::move(message.body());
  *keep_alive = message.keep_alive() && !message.need_eof();
  return ec;
}

Failure SessionImpl::SendOne(const Url& url, const http::request<http::string_body>& request,
                             bool head, std::chrono::milliseconds timeout, Hop* hop) {
  Failure failure;
  const std::string origin = url.Origin();
  // A kept-alive connection may have been closed by the server since its last use; such a
  // connection fails before any byte of the answer, and the request is sent once more on a new
  // connection, as browsers and other HTTP clients do.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (ctx_->cancelled()) {
      return Failure{HitError::kCancelled, "request to " + url.host + ": the run was interrupted",
                     false};
    }
    const auto start = SteadyClock::now();
    Connection* conn = nullptr;
    bool reused = false;
    if (auto it = connections_.find(origin); it != connections_.end()) {
      conn = it->second.get();
      reused = true;
    } else {
      conn = Connect(url, &failure);
      if (!conn) return failure;
    }
    bool got_some = false;
    bool keep_alive = false;
    beast::error_code ec =
        conn->plain
            ? Exchange(*conn->plain, *conn, request, head, timeout, hop, &got_some, &keep_alive)
            : Exchange(*conn->tls, *conn, request, head, timeout, hop, &got_some, &keep_alive);
    if (!ec) {
      hop->elapsed = SteadyClock::now() - start;
      if (!keep_alive) connections_.erase(origin);
      return failure;
    }
    conn->Abort();
    connections_.erase(origin);
    const HitError kind = Classify(ec, ctx_->cancelled());
    if (reused && !got_some && kind == HitError::kConnectionReset) continue;
    return MakeFailure(ec, ctx_->cancelled(),
                       std::string(request.method_string()) + " " + url.WithoutQuery());
  }
  return Failure{HitError::kConnectionReset,
                 std::string(request.method_string()) + " " + url.WithoutQuery() +
                     ": the connection was closed before a response, twice"};
}

Response SessionImpl::Request(std::string_view method_in, std::string_view url_text,
                              const RequestOptions& options) {
  std::string error;
  std::string full(url_text);
  if (!options.params.empty()) {
    full += full.find('?') == std::string::npos ? '?' : '&';
    for (size_t i = 0; i < options.params.size(); ++i) {
      if (i) full += '&';
      full += common::UrlEncode(options.params[i].first) + "=" +
              common::UrlEncode(options.params[i].second);
    }
  }
  auto parsed = common::ParseUrl(full, &error);
  if (!parsed) throw std::invalid_argument("invalid URL '" + full + "': " + error);
  if (parsed->scheme != "http" && parsed->scheme != "https") {
    throw std::invalid_argument("the session sends HTTP requests; use create_ws() for " + full);
  }
  std::string method(method_in);
  if (method.empty() || method.find_first_of(" \t\r\n()<>@,;:\\\"/[]?={}") != std::string::npos) {
    throw std::invalid_argument("invalid HTTP method '" + method + "'");
  }
  std::string body = options.json ? options.json->dump() : options.body;
  for (const auto& [name, value] : headers) {
    CheckHeaderText(name, "header name");
    CheckHeaderText(value, "header value");
  }
  for (const auto& [name, value] : options.headers) {
    CheckHeaderText(name, "header name");
    CheckHeaderText(value, "header value");
  }
  const auto timeout = options.timeout.value_or(timeout_);
  Url url = *parsed;
  Response response;
  for (int redirects = 0;; ++redirects) {
    http::request<http::string_body> req;
    const http::verb verb = http::string_to_verb(method);
    if (verb == http::verb::unknown) {
      req.method_string(method);
    } else {
      req.method(verb);
    }
    req.target(url.target);
    req.version(11);
    req.set(http::field::host, url.HostHeader());
    req.set(http::field::user_agent, kUserAgent);
    req.set(http::field::accept, "*/*");
    for (const auto& [name, value] : headers) req.set(name, value);
    for (const auto& [name, value] : options.headers) req.set(name, value);
    if (req.find(http::field::cookie) == req.end()) {
      const std::string cookie = cookies.HeaderFor(url, std::chrono::system_clock::now());
      if (!cookie.empty()) req.set(http::field::cookie, cookie);
    }
    if (!body.empty()) {
      if (options.json && req.find(http::field::content_type) == req.end()) {
        req.set(http::field::content_type, "application/json");
      }
      req.body() = body;
    }
    req.prepare_payload();

    const std::string name =
        options.name.empty() ? method + " " + url.WithoutQuery() : options.name;
    Hop hop;
    const Failure failure = SendOne(url, req, method == "HEAD", timeout, &hop);
    if (failure.kind != HitError::kNone) {
      // A request that never left (the run was interrupted first) is not a hit.
      if (failure.sent) ctx_->RecordHit(name, 0, failure.kind, 0);
      ThrowFailure(failure);
    }
    ctx_->RecordHit(name, hop.status, HitError::kNone, static_cast<uint64_t>(hop.elapsed.count()));

    std::string_view location;
    for (const auto& [hname, value] : hop.headers) {
      if (beast::iequals(hname, "set-cookie")) {
        cookies.Store(url, value, std::chrono::system_clock::now());
      } else if (beast::iequals(hname, "location")) {
        location = value;
      }
    }
    const bool is_redirect = hop.status == 301 || hop.status == 302 || hop.status == 303 ||
                             hop.status == 307 || hop.status == 308;
    if (is_redirect && options.allow_redirects && !location.empty()) {
      if (redirects >= max_redirects_) {
        throw NetworkError("too_many_redirects", "more than " + std::to_string(max_redirects_) +
                                                     " redirects from " + parsed->ToString());
      }
      auto next = common::ResolveUrl(url, location);
      if (!next || (next->scheme != "http" && next->scheme != "https")) {
        throw NetworkError("malformed_response",
                           "invalid redirect location '" + std::string(location) + "'");
      }
      // 303, and 301/302 after a POST, turn into a GET without a body, as browsers do.
      if (hop.status == 303 || ((hop.status == 301 || hop.status == 302) && method == "POST")) {
        if (method != "HEAD") method = "GET";
        body.clear();
      }
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
    throw NetworkError(
        f.kind == HitError::kNetwork ? "websocket" : std::string(common::HitErrorName(f.kind)),
        f.message);
  }
  void ReadLoop();

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

  friend class UserContext;
};

void WebSocketImpl::Open(const Headers& headers) {
  std::string error;
  auto parsed = common::ParseUrl(url_, &error);
  if (!parsed) throw std::invalid_argument("invalid WebSocket URL '" + url_ + "': " + error);
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
  Failure failure;
  ConnectTcp(*ctx_, Lowest(), url, options.connect_timeout, &failure);
  if (failure.kind != HitError::kNone) {
    throw NetworkError(std::string(common::HitErrorName(failure.kind)), failure.message);
  }
  beast::error_code ec;
  if (tls_) {
    PrepareTls(tls_->next_layer(), url, options.verify_tls);
    Lowest().expires_after(options.connect_timeout);
    Await([&](asio::yield_context& y) {
      tls_->next_layer().async_handshake(ssl::stream_base::client, y[ec]);
    });
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
    Await([&](asio::yield_context& y) { ws.async_handshake(url.HostHeader(), url.target, y[ec]); });
  });
  if (ec) Throw(ec, "WebSocket handshake with");
  open_ = true;
  ++thread_->stats.ws_opened;
}

void WebSocketImpl::Send(std::string_view data, bool binary) {
  if (!open_) throw std::logic_error("send() on a closed WebSocket " + url_);
  if (writing_) throw std::logic_error("another send() is in progress on WebSocket " + url_);
  if (Cancelled()) throw NetworkError("cancelled", "send to " + url_ + ": the run was interrupted");
  writing_ = true;
  beast::error_code ec;
  Visit([&](auto& ws) {
    ws.binary(binary);
    Await([&](asio::yield_context& y) {
      ws.async_write(asio::buffer(data.data(), data.size()), y[ec]);
    });
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
  Visit([&](auto& ws) { Await([&](asio::yield_context& y) { ws.async_read(buffer_, y[ec]); }); });
  if (ec == websocket::error::closed) {
    MarkClosed();
    return std::nullopt;
  }
  if (ec) {
    MarkClosed();
    Throw(ec, "receive from");
  }
  ++thread_->stats.ws_messages_received;
  thread_->stats.ws_bytes_received += buffer_.size();
  return beast::buffers_to_string(buffer_.data());
}

void WebSocketImpl::Close() {
  if (!open_) return;
  closing_ = true;
  beast::error_code ec;
  if (!Cancelled()) {
    Visit([&](auto& ws) {
      Await([&](asio::yield_context& y) { ws.async_close(websocket::close_code::normal, y[ec]); });
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
  asio::spawn(
      *thread_->io,
      [self](asio::yield_context yield) {
        CurrentYield() = &yield;
        try {
          self->ReadLoop();
        } catch (const ForcedUnwind&) {
          throw;
        } catch (...) {
          if (!self->callback_error_) self->callback_error_ = std::current_exception();
        }
        CurrentYield() = nullptr;
      },
      boost::coroutines::attributes(thread_->options.stack_size));
}

void WebSocketImpl::ReadLoop() {
  while (open_ && !closing_) {
    beast::error_code ec;
    buffer_.clear();
    Visit([&](auto& ws) { Await([&](asio::yield_context& y) { ws.async_read(buffer_, y[ec]); }); });
    if (ec) {
      const bool expected = closing_ || ec == websocket::error::closed;
      MarkClosed();
      if (!expected) Throw(ec, "receive from");
      return;
    }
    ++thread_->stats.ws_messages_received;
    thread_->stats.ws_bytes_received += buffer_.size();
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

UserContext::UserContext(ThreadState* thread, int64_t user_index)
    : thread_(thread),
      user_index_(user_index),
      session_impl_(nullptr, &DeleteSession),
      session_(nullptr) {
  session_impl_.reset(new SessionImpl(this));
  session_ = Session(session_impl_.get());
  thread_->live_users.insert(this);
}

UserContext::~UserContext() {
  thread_->live_users.erase(this);
  for (auto& ws : sockets_) ws->impl_->Detach();
}

void UserContext::RecordHit(std::string_view name, int status, common::HitError error,
                            uint64_t latency_ns) {
  thread_->stats.RecordHit(name, status, error, latency_ns);
  thread_->hits.fetch_add(1, std::memory_order_relaxed);
}

WebSocket& UserContext::CreateWebSocket(std::string_view url, WebSocket::Callback callback,
                                        const Headers& headers) {
  if (cancelled_)
    throw NetworkError("cancelled", "WebSocket " + std::string(url) + ": the run was interrupted");
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

void UserContext::Sleep(std::chrono::duration<double> seconds) {
  if (cancelled_) throw NetworkError("cancelled", "sleep: the run was interrupted");
  if (seconds.count() <= 0) return;
  asio::steady_timer timer(*thread_->io);
  timer.expires_after(std::chrono::duration_cast<SteadyClock::duration>(seconds));
  sleep_timer_ = &timer;
  beast::error_code ec;
  Await([&](asio::yield_context& y) { timer.async_wait(y[ec]); });
  sleep_timer_ = nullptr;
  if (cancelled_) throw NetworkError("cancelled", "sleep: the run was interrupted");
}

void UserContext::Cancel() {
  cancelled_ = true;
  session_impl_->CloseAll();
  for (auto& ws : sockets_) ws->impl_->Abort();
  if (sleep_timer_) static_cast<asio::steady_timer*>(sleep_timer_)->cancel();
}

}  // namespace loads::internal

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
  if (!parsed) return std::nullopt;
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
