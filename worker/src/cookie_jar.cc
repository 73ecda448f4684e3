#include "worker/src/cookie_jar.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>

namespace loads::worker {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IEquals(std::string_view a, std::string_view b) { return Lower(a) == Lower(b); }

// Cookies live 400 days at most, as RFC 6265bis asks of user agents; it also keeps a server's
// year 9999 (or Max-Age of 2^63) inside the clock's range, where the conversion to nanoseconds
// would overflow.
constexpr std::chrono::hours kMaxCookieAge{24 * 400};

// Parses an HTTP date ("Wed, 21 Oct 2015 07:28:00 GMT", also with dashes as old servers send),
// in seconds since the epoch.
std::optional<std::time_t> ParseHttpDate(std::string_view text) {
  std::string s(text);
  std::replace(s.begin(), s.end(), '-', ' ');
  std::tm tm{};
  const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S", &tm);
  if (!end) return std::nullopt;
  const std::time_t t = timegm(&tm);
  if (t == -1) return std::nullopt;
  return t;
}

std::string DefaultPath(const common::Url& url) {
  std::string path = url.target.substr(0, url.target.find('?'));
  const size_t slash = path.rfind('/');
  if (slash == 0 || slash == std::string::npos) return "/";
  return path.substr(0, slash);
}

bool DomainMatches(std::string_view host, std::string_view domain) {
  if (host == domain) return true;
  return host.size() > domain.size() && host.ends_with(domain) &&
         host[host.size() - domain.size() - 1] == '.';
}

bool PathMatches(std::string_view request_path, std::string_view cookie_path) {
  if (!request_path.starts_with(cookie_path)) return false;
  return request_path.size() == cookie_path.size() || cookie_path.ends_with("/") ||
         request_path[cookie_path.size()] == '/';
}

}  // namespace

void CookieJar::Store(const common::Url& from, std::string_view set_cookie, Clock::time_point now) {
  Cookie cookie;
  size_t semi = set_cookie.find(';');
  std::string_view pair = Trim(set_cookie.substr(0, semi));
  const size_t eq = pair.find('=');
  if (eq == std::string_view::npos) return;
  cookie.name = std::string(Trim(pair.substr(0, eq)));
  cookie.value = std::string(Trim(pair.substr(eq + 1)));
  if (cookie.name.empty()) return;
  cookie.domain = from.host;
  cookie.path = DefaultPath(from);
  std::optional<Clock::time_point> max_age_expiry;
  while (semi != std::string_view::npos) {
    const size_t next = set_cookie.find(';', semi + 1);
    std::string_view attr = Trim(set_cookie.substr(semi + 1, next - semi - 1));
    semi = next;
    const size_t aeq = attr.find('=');
    std::string_view key = Trim(attr.substr(0, aeq));
    std::string_view value = aeq == std::string_view::npos ? "" : Trim(attr.substr(aeq + 1));
    if (IEquals(key, "domain")) {
      if (value.starts_with(".")) value.remove_prefix(1);
      if (value.empty()) continue;
      std::string domain = Lower(value);
      if (!DomainMatches(from.host, domain)) return;  // a foreign domain: reject the cookie
      cookie.domain = domain;
      cookie.host_only = false;
    } else if (IEquals(key, "path")) {
      if (value.starts_with("/")) cookie.path = std::string(value);
    } else if (IEquals(key, "secure")) {
      cookie.secure = true;
    } else if (IEquals(key, "max-age")) {
      long long seconds = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
      if (ec == std::errc() && end == value.data() + value.size()) {
        max_age_expiry =
            seconds <= 0                                                ? Clock::time_point::min()
            : std::chrono::seconds(seconds) > kMaxCookieAge ? now + kMaxCookieAge
                                                            : now + std::chrono::seconds(seconds);
      }
    } else if (IEquals(key, "expires")) {
      if (auto t = ParseHttpDate(value)) {
        const std::time_t latest = Clock::to_time_t(now + kMaxCookieAge);
        cookie.expires = *t <= 0        ? Clock::time_point::min()
                         : *t > latest ? now + kMaxCookieAge
                                       : Clock::from_time_t(*t);
      }
    }
  }
  if (max_age_expiry) cookie.expires = max_age_expiry;  // Max-Age wins over Expires
  std::erase_if(cookies_, [&](const Cookie& c) {
    return c.name == cookie.name && c.domain == cookie.domain && c.path == cookie.path;
  });
  if (cookie.expires && *cookie.expires <= now) return;  // a deletion
  cookies_.push_back(std::move(cookie));
}

bool CookieJar::Matches(const Cookie& cookie, const common::Url& to, Clock::time_point now) const {
  if (cookie.expires && *cookie.expires <= now) return false;
  if (cookie.secure && !to.Tls()) return false;
  if (cookie.host_only ? to.host != cookie.domain : !DomainMatches(to.host, cookie.domain)) {
    return false;
  }
  return PathMatches(to.target.substr(0, to.target.find('?')), cookie.path);
}

std::string CookieJar::HeaderFor(const common::Url& to, Clock::time_point now) const {
  std::string header;
  for (const Cookie& cookie : cookies_) {
    if (!Matches(cookie, to, now)) continue;
    if (!header.empty()) header += "; ";
    header += cookie.name;
    header += '=';
    header += cookie.value;
  }
  return header;
}

std::optional<std::string> CookieJar::Get(const common::Url& to, std::string_view name,
                                          Clock::time_point now) const {
  for (const Cookie& cookie : cookies_) {
    if (cookie.name == name && Matches(cookie, to, now)) return cookie.value;
  }
  return std::nullopt;
}

}  // namespace loads::worker
