#include "worker/src/cookie_jar.h"

#include <gtest/gtest.h>

namespace loads::worker {
namespace {

using common::ParseUrl;
const auto kNow = CookieJar::Clock::from_time_t(1'700'000'000);

TEST(CookieJar, SendsCookiesBackToTheirHost) {
  CookieJar jar;
  jar.Store(*ParseUrl("http://a.example/login"), "sid=42; Path=/", kNow);
  EXPECT_EQ(jar.HeaderFor(*ParseUrl("http://a.example/x"), kNow), "sid=42");
  EXPECT_EQ(jar.HeaderFor(*ParseUrl("http://b.example/x"), kNow), "");
  EXPECT_EQ(jar.HeaderFor(*ParseUrl("http://sub.a.example/x"), kNow), "");  // host-only
}

TEST(CookieJar, DomainCookiesReachSubdomains) {
  CookieJar jar;
  jar.Store(*ParseUrl("http://www.example.com/"), "t=1; Domain=.example.com", kNow);
  EXPECT_EQ(jar.HeaderFor(*ParseUrl("http://api.example.com/"), kNow), "t=1");
  jar.Store(*ParseUrl("http://www.example.com/"), "evil=1; Domain=other.com", kNow);
  EXPECT_EQ(jar.size(), 1u);
}

TEST(CookieJar, HonoursPathAndSecure) {
  CookieJar jar;
  jar.Store(*ParseUrl("https://h/app/login"), "a=1; Path=/app; Secure", kNow);
  EXPECT_EQ(jar.HeaderFor(*ParseUrl("https://h/app/page"), kNow), "a=1");
  EXPECT_EQ(jar.HeaderFor(*ParseUrl("https://h/apple"), kNow), "");
  EXPECT_EQ(jar.HeaderFor(*ParseUrl("http://h/app/page"), kNow), "");
}

TEST(CookieJar, ReplacesAndExpires) {
  CookieJar jar;
  const auto url = *ParseUrl("http://h/");
  jar.Store(url, "a=1", kNow);
  jar.Store(url, "a=2", kNow);
  EXPECT_EQ(jar.HeaderFor(url, kNow), "a=2");
  jar.Store(url, "b=1; Max-Age=10", kNow);
  EXPECT_EQ(jar.HeaderFor(url, kNow + std::chrono::seconds(5)), "a=2; b=1");
  EXPECT_EQ(jar.HeaderFor(url, kNow + std::chrono::seconds(11)), "a=2");
  jar.Store(url, "a=gone; Expires=Thu, 01 Jan 1970 00:00:00 GMT", kNow);
  EXPECT_EQ(jar.HeaderFor(url, kNow), "b=1");
  EXPECT_EQ(jar.Get(url, "b", kNow), "1");
}

// Found by fuzz_http_response: a date past 2262 overflowed the clock's nanoseconds (undefined
// behaviour in the engine, from a server's header).
TEST(CookieJar, KeepsCookiesAtMost400Days) {
  CookieJar jar;
  const auto url = *ParseUrl("http://h/");
  jar.Store(url, "far=1; Expires=Thu, 01 Jan 2379 00:00:00 GMT", kNow);
  jar.Store(url, "huge=1; Max-Age=9223372036854775807", kNow);
  jar.Store(url, "month=1; Max-Age=2592000", kNow);
  const auto day = std::chrono::hours(24);
  EXPECT_EQ(jar.HeaderFor(url, kNow + 399 * day), "far=1; huge=1");
  EXPECT_EQ(jar.HeaderFor(url, kNow + 401 * day), "");
  jar.Store(url, "before=1; Expires=Mon, 01 Jan 1900 00:00:00 GMT", kNow);
  EXPECT_EQ(jar.Get(url, "before", kNow), std::nullopt);
}

TEST(CookieJar, IgnoresMalformedCookies) {
  CookieJar jar;
  jar.Store(*ParseUrl("http://h/"), "novalue", kNow);
  jar.Store(*ParseUrl("http://h/"), "=x", kNow);
  EXPECT_EQ(jar.size(), 0u);
}

}  // namespace
}  // namespace loads::worker
