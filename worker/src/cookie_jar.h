#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loads/common/url.h"

namespace loads::worker {

// The cookies of one virtual user's session: stores Set-Cookie headers and builds the Cookie
// header for a request (RFC 6265 domain, path, Secure, Max-Age and Expires rules; no public
// suffix list, which load tests against known hosts do not need).
//
// Thread safety: none; owned by one session.
class CookieJar {
 public:
  using Clock = std::chrono::system_clock;

  // Stores the cookie set by one Set-Cookie header received from `from`. Malformed or foreign
  // (domain not matching `from`) cookies are ignored, as browsers do.
  void Store(const common::Url& from, std::string_view set_cookie, Clock::time_point now);
  // The Cookie header value for a request to `to` ("" if no cookie applies).
  std::string HeaderFor(const common::Url& to, Clock::time_point now) const;
  std::optional<std::string> Get(const common::Url& to, std::string_view name,
                                 Clock::time_point now) const;
  void Clear() { cookies_.clear(); }
  size_t size() const { return cookies_.size(); }

 private:
  struct Cookie {
    std::string name;
    std::string value;
    std::string domain;  // lower case, no leading dot
    bool host_only = true;
    std::string path;
    bool secure = false;
    std::optional<Clock::time_point> expires;
  };
  bool Matches(const Cookie& cookie, const common::Url& to, Clock::time_point now) const;

  std::vector<Cookie> cookies_;
};

}  // namespace loads::worker
