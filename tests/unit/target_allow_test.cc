#include "loads/common/target_allow.h"

#include <gtest/gtest.h>

namespace loads::common {
namespace {

TargetAllowList List(std::vector<std::string> patterns) {
  auto list = TargetAllowList::Parse(patterns);
  EXPECT_TRUE(list.ok()) << list.status().message();
  return list.ok() ? *list : TargetAllowList();
}

TEST(TargetAllowList, NamesPortsAndSuffixes) {
  const auto list = List({"Example.com", "api.test:8443", "*.corp.example"});
  EXPECT_TRUE(list.Allows("example.com", 80));
  EXPECT_TRUE(list.Allows("EXAMPLE.com", 1));
  EXPECT_FALSE(list.Allows("www.example.com", 80));
  EXPECT_TRUE(list.Allows("api.test", 8443));
  EXPECT_FALSE(list.Allows("api.test", 443));
  EXPECT_TRUE(list.Allows("a.b.corp.example", 80));
  EXPECT_FALSE(list.Allows("corp.example", 80));      // not the domain itself
  EXPECT_FALSE(list.Allows("evilcorp.example", 80));  // a suffix of labels, not of characters
}

TEST(TargetAllowList, AddressesAndNetworks) {
  const auto list = List({"10.0.0.0/8", "[::1]:9000", "192.168.1.7", "fd00::/8"});
  EXPECT_TRUE(list.Allows("10.255.0.1", 80));
  EXPECT_FALSE(list.Allows("11.0.0.1", 80));
  EXPECT_TRUE(list.Allows("::1", 9000));
  EXPECT_FALSE(list.Allows("::1", 9001));
  EXPECT_TRUE(list.Allows("192.168.1.7", 443));
  EXPECT_FALSE(list.Allows("192.168.1.8", 443));
  EXPECT_TRUE(list.Allows("fd12:3456::1", 80));
  EXPECT_FALSE(list.Allows("fe80::1", 80));
  // A name is not resolved: it never matches an address pattern.
  EXPECT_FALSE(list.Allows("localhost", 9000));
  EXPECT_FALSE(list.Allows("10.example.com", 80));
}

TEST(TargetAllowList, BadPatternsNameThemselves) {
  for (const char* bad : {"*.", "**.x", "10.0.0.0/33", "::/129", "host:0", "host:70000", "a b",
                          "[::1", "[::1]x", "1.2.3.4/x", ""}) {
    auto list = TargetAllowList::Parse({bad});
    ASSERT_FALSE(list.ok()) << bad;
    EXPECT_NE(list.status().message().find(std::string("'") + bad + "'"), std::string::npos)
        << list.status().message();
  }
}

// Every worker refuses an assignment with more (protocol.cc): a controller must not start with
// a list it cannot hand out.
TEST(TargetAllowList, AtMost100Patterns) {
  std::vector<std::string> patterns;
  for (int i = 0; i < 100; ++i) patterns.push_back("h" + std::to_string(i) + ".example.com");
  EXPECT_TRUE(TargetAllowList::Parse(patterns).ok());
  patterns.push_back("one-more.example.com");
  auto list = TargetAllowList::Parse(patterns);
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.status().message(), "--allow-target: at most 100 patterns (101 given)");
}

}  // namespace
}  // namespace loads::common
