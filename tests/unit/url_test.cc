#include "loads/common/url.h"

#include <gtest/gtest.h>

namespace loads::common {
namespace {

TEST(ParseUrl, SplitsAbsoluteUrls) {
  auto u = ParseUrl("HTTP://Example.COM:8080/a/b?x=1#frag");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->host, "example.com");
  EXPECT_EQ(u->port, 8080);
  EXPECT_EQ(u->target, "/a/b?x=1");
  EXPECT_EQ(u->HostHeader(), "example.com:8080");
  EXPECT_EQ(u->WithoutQuery(), "http://example.com:8080/a/b");
}

TEST(ParseUrl, DefaultsPortsAndPath) {
  EXPECT_EQ(ParseUrl("https://h")->port, 443);
  EXPECT_EQ(ParseUrl("wss://h")->port, 443);
  EXPECT_EQ(ParseUrl("ws://h")->port, 80);
  EXPECT_EQ(ParseUrl("http://h")->target, "/");
  EXPECT_EQ(ParseUrl("http://h?q=1")->target, "/?q=1");
  EXPECT_EQ(ParseUrl("http://h:80/")->HostHeader(), "h");
}

TEST(ParseUrl, AcceptsIpv6Literals) {
  auto u = ParseUrl("http://[::1]:9000/x");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->HostHeader(), "[::1]:9000");
}

TEST(ParseUrl, RejectsMalformedUrls) {
  for (const char* bad :
       {"notaurl", "ftp://h/", "http://", "http://h:0/", "http://h:99999/", "http://h:abc/",
        "http://user:pw@h/", "http://h/a b", "://h", "http://[::1/", "http://bad host/"}) {
    auto refused = ParseUrl(bad);
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_FALSE(refused.status().message().empty()) << bad;
  }
}

TEST(ResolveUrl, FollowsEveryKindOfReference) {
  const Url base = *ParseUrl("http://h:81/a/b/c?q=1");
  EXPECT_EQ(ResolveUrl(base, "https://o/x")->ToString(), "https://o/x");
  EXPECT_EQ(ResolveUrl(base, "//o:82/y")->ToString(), "http://o:82/y");
  EXPECT_EQ(ResolveUrl(base, "/root")->ToString(), "http://h:81/root");
  EXPECT_EQ(ResolveUrl(base, "d")->ToString(), "http://h:81/a/b/d");
  EXPECT_EQ(ResolveUrl(base, "../d?z=2")->ToString(), "http://h:81/a/d?z=2");
  EXPECT_EQ(ResolveUrl(base, "./")->ToString(), "http://h:81/a/b/");
}

TEST(UrlEncode, KeepsUnreservedCharacters) {
  EXPECT_EQ(UrlEncode("a b&c=d/é~"), "a%20b%26c%3Dd%2F%C3%A9~");
}

}  // namespace
}  // namespace loads::common
