#include "loads/common/url.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <vector>

namespace loads::common {
namespace {

uint16_t DefaultPort(std::string_view scheme) {
  return (scheme == "https" || scheme == "wss") ? 443 : 80;
}

bool ValidHostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

// Removes "." and ".." segments (RFC 3986 section 5.2.4) from an absolute path.
std::string RemoveDotSegments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t pos = 1;
  const bool trailing_slash = path.ends_with("/") || path.ends_with("/.") || path.ends_with("/..");
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view segment = path.substr(pos, end - pos);
    if (segment == "..") {
      if (!out.empty()) out.pop_back();
    } else if (segment != "." && !segment.empty()) {
      out.push_back(segment);
    }
    pos = end + 1;
  }
  std::string result;
  for (auto segment : out) {
    result += '/';
    result += segment;
  }
  if (result.empty() || trailing_slash) result += '/';
  return result;
}

}  // namespace

std::string Url::Origin() const {
  const bool v6 = host.find(':') != std::string::npos;
  return scheme + "://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string Url::HostHeader() const {
  const bool v6 = host.find(':') != std::string::npos;
  std::string h = v6 ? "[" + host + "]" : host;
  if (port != DefaultPort(scheme)) {
    // Appended in two steps: GCC 12 at -O3 warns falsely (-Wrestrict, its bug 105329) about
    // "literal" + std::string&&.
    h += ':';
    h += std::to_string(port);
  }
  return h;
}

std::string Url::WithoutQuery() const {
  const size_t q = target.find('?');
  return scheme + "://" + HostHeader() + (q == std::string::npos ? target : target.substr(0, q));
}

std::string Url::ToString() const { return scheme + "://" + HostHeader() + target; }

StatusOr<Url> ParseUrl(std::string_view text) {
  Url url;
  const size_t sep = text.find("://");
  if (sep == std::string_view::npos || sep == 0) {
    return InvalidArgumentError("missing scheme (expected http://, https://, ws:// or wss://)");
  }
  url.scheme = AsciiLower(text.substr(0, sep));
  if (url.scheme != "http" && url.scheme != "https" && url.scheme != "ws" && url.scheme != "wss") {
    return InvalidArgumentError("unsupported scheme '" + url.scheme +
                                "' (expected http, https, ws or wss)");
  }
  std::string_view rest = text.substr(sep + 3);
  const size_t hash = rest.find('#');
  if (hash != std::string_view::npos) rest = rest.substr(0, hash);
  const size_t path_start = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_start);
  std::string_view target = path_start == std::string_view::npos ? "" : rest.substr(path_start);
  if (authority.find('@') != std::string_view::npos) {
    return InvalidArgumentError(
        "credentials in URLs are not supported; use an Authorization header");
  }
  std::string_view host = authority;
  std::string_view port;
  if (authority.starts_with("[")) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return InvalidArgumentError("unterminated IPv6 address");
    }
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        return InvalidArgumentError("unexpected characters after the IPv6 address");
      }
      port = after.substr(1);
    }
    if (host.empty() || host.find_first_not_of("0123456789abcdefABCDEF:.") != host.npos) {
      return InvalidArgumentError("invalid IPv6 address");
    }
  } else {
    const size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
    if (host.empty()) {
      return InvalidArgumentError("missing host");
    }
    if (!std::all_of(host.begin(), host.end(), ValidHostChar)) {
      return InvalidArgumentError("invalid host '" + std::string(host) + "'");
    }
  }
  url.host = AsciiLower(host);
  if (port.empty()) {
    url.port = DefaultPort(url.scheme);
  } else {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
      return InvalidArgumentError("invalid port '" + std::string(port) + "'");
    }
    url.port = static_cast<uint16_t>(value);
  }
  if (target.empty()) {
    url.target = "/";
  } else if (target[0] == '?') {
    url.target = "/";  // two steps, as in HostHeader
    url.target += target;
  } else {
    url.target = std::string(target);
  }
  for (char c : url.target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return InvalidArgumentError("spaces or control characters in the path (percent-encode them)");
    }
  }
  return url;
}

StatusOr<Url> ResolveUrl(const Url& base, std::string_view ref) {
  if (ref.find("://") != std::string_view::npos) return ParseUrl(ref);
  if (ref.starts_with("//")) return ParseUrl(base.scheme + ":" + std::string(ref));
  Url url = base;
  const size_t hash = ref.find('#');
  if (hash != std::string_view::npos) ref = ref.substr(0, hash);
  if (ref.empty()) return url;
  std::string_view query;
  const size_t q = ref.find('?');
  std::string_view path = ref.substr(0, q);
  if (q != std::string_view::npos) query = ref.substr(q);
  std::string base_path = base.target.substr(0, base.target.find('?'));
  std::string merged;
  if (path.empty()) {
    merged = base_path;
  } else if (path[0] == '/') {
    merged = std::string(path);
  } else {
    merged = base_path.substr(0, base_path.rfind('/') + 1) + std::string(path);
  }
  url.target = RemoveDotSegments(merged) + std::string(query);
  for (char c : url.target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return InvalidArgumentError("spaces or control characters in the path (percent-encode them)");
    }
  }
  return url;
}

std::string AsciiLower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool IsLoopbackHost(std::string_view host) {
  return host == "127.0.0.1" || host == "localhost" || host == "[::1]" || host == "::1" ||
         host.starts_with("127.");
}

std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

bool IsHttpMethod(std::string_view text) {
  return !text.empty() && text.size() <= 32 &&
         text.find_first_not_of(
             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
             "0123456789!#$%&'*+-.^_`|~") == std::string_view::npos;
}

}  // namespace loads::common
