#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "loads/common/status.h"

namespace loads::common {

// An absolute http, https, ws or wss URL split into what a client needs.
struct Url {
  std::string scheme;  // lower case: "http", "https", "ws" or "wss"
  std::string host;    // lower case; IPv6 literals without brackets
  uint16_t port = 0;   // explicit or the scheme's default
  std::string target;  // path and query, at least "/"; no fragment

  bool Tls() const { return scheme == "https" || scheme == "wss"; }
  // "scheme://host:port", the key of a keep-alive connection.
  std::string Origin() const;
  // "host" or "host:port" when the port is not the scheme's default (the Host header).
  std::string HostHeader() const;
  // "scheme://host:port/path" without the query: the default hit name.
  std::string WithoutQuery() const;
  std::string ToString() const;
};

// Parses an absolute URL. INVALID_ARGUMENT saying what is wrong with it.
StatusOr<Url> ParseUrl(std::string_view text);

// Resolves a Location header value against the URL it came from (absolute, scheme-relative,
// absolute-path or relative-path references). INVALID_ARGUMENT when the result is no URL.
StatusOr<Url> ResolveUrl(const Url& base, std::string_view reference);

// Whether text is an HTTP method a metric label can carry: an RFC 9110 token of 1 to 32 chars.
bool IsHttpMethod(std::string_view text);

// `text` with ASCII letters in lower case (host names and schemes compare this way).
std::string AsciiLower(std::string_view text);

// Whether a listening host ("127.0.0.1", "localhost", "[::1]") is this machine's loopback: what
// may be served there without a credential.
bool IsLoopbackHost(std::string_view host);

// Percent-encodes a query component (RFC 3986 unreserved characters are kept).
std::string UrlEncode(std::string_view text);

}  // namespace loads::common
