#include "loads/common/html_report.h"

#include <gtest/gtest.h>

#include <string>

namespace loads::common {
namespace {

size_t Count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

TEST(HtmlReport, EmbedsTheReportThePageCodeAndTheChartLibrary) {
  const std::string page = FormatHtmlReport(R"({"test": "a.B.c", "hits": 3})");
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(page.find(R"(window.LOADS_REPORT = {"test": "a.B.c", "hits": 3};)"), std::string::npos);
  EXPECT_NE(page.find(ReportPageScript()), std::string::npos);
  EXPECT_NE(page.find(ChartLibraryScript()), std::string::npos);
  EXPECT_NE(page.find("Chart.js v3"), std::string::npos);
  // Nothing is loaded from anywhere: no src= or href= attribute, and a policy that says so.
  EXPECT_EQ(Count(page, "src=\""), 0u);
  EXPECT_EQ(Count(page, "href=\""), 0u);
  EXPECT_NE(page.find("default-src 'none'"), std::string::npos);
}

TEST(HtmlReport, TextFromTheRunCannotEndTheScript) {
  const std::string page =
      FormatHtmlReport(R"({"test": "</script><script>alert(1)</script><!--", "x": "</SCRIPT>"})");
  // Only the page's own three script elements end.
  EXPECT_EQ(Count(page, "</script>"), 3u);
  EXPECT_EQ(Count(page, "</SCRIPT>"), 0u);
  EXPECT_EQ(Count(page, "<!--"), 0u);
  // The JSON still says the same: "<\/" is "</" and \u003c is "<".
  EXPECT_NE(page.find(R"("<\/script><script>alert(1)<\/script>\u003c!--")"), std::string::npos);
}

}  // namespace
}  // namespace loads::common
