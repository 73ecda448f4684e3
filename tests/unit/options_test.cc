#include "runner/options.h"

#include <gtest/gtest.h>

namespace loads::runner {
namespace {

ParseResult Parse(std::vector<std::string> args) { return ParseOptions(args); }

TEST(Options, ParsesTheSeedsCommandLine) {
  auto r = Parse({"example.TestWebSite.test_es", "-u", "10:20:30", "--hits", "5"});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.options.test, "example.TestWebSite.test_es");
  EXPECT_EQ(r.options.users, (std::vector<int64_t>{10, 20, 30}));
  EXPECT_EQ(r.options.hits, (std::vector<int64_t>{5}));
  EXPECT_FALSE(r.options.duration);
}

TEST(Options, DurationReplacesHits) {
  auto r = Parse({"--url", "http://127.0.0.1:8080/", "-u50", "-d", "2.5", "--threads=1"});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.options.users, (std::vector<int64_t>{50}));
  EXPECT_EQ(*r.options.duration, 2.5);
  EXPECT_TRUE(r.options.hits.empty());
  EXPECT_EQ(*r.options.threads, 1);
}

TEST(Options, RejectsBadInputWithOneMessage) {
  const std::vector<std::vector<std::string>> bad = {
      {"t.A.b", "--bogus"},
      {"t.A.b", "-u", "abc"},
      {"t.A.b", "-u", "-3"},
      {"t.A.b", "-u", "0"},
      {"t.A.b", "--hits", "0"},
      {"t.A.b", "--hits", "1::2"},
      {"t.A.b", "-d", "0"},
      {"t.A.b", "-d", "x"},
      {"t.A.b", "--hits", "5", "-d", "5"},
      {"--url", "notaurl"},
      {"--url", "ws://h/"},
      {},
      {"t.A.b", "c.D.e"},
      {"t.A.b", "--url", "http://h/"},
      {"t.A.b", "--output", "xml"},
      {"t.A.b", "--threads", "0"},
      {"t.A.b", "-u"},
      {"t.A.b", "--quiet=yes"},
      {"t.A.b", "--timeout", "-1"},
      {"t.A.b", "-x"},
  };
  for (const auto& args : bad) {
    auto r = Parse(args);
    EXPECT_FALSE(r.ok) << testing::PrintToString(args);
    EXPECT_FALSE(r.error.empty());
    EXPECT_EQ(r.error.find('\n'), std::string::npos) << r.error;
  }
}

TEST(Options, HelpAndVersionNeedNoTest) {
  EXPECT_TRUE(Parse({"--help"}).options.help);
  EXPECT_TRUE(Parse({"--version"}).ok);
}

TEST(Options, CyclesAreBounded) {
  EXPECT_FALSE(ParseCycles("99999999999", 1000));
  EXPECT_EQ(*ParseCycles("1:2:3", 10), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_FALSE(ParseCycles("", 10));
  EXPECT_FALSE(ParseCycles("1:", 10));
}

}  // namespace
}  // namespace loads::runner
