#include "loads/common/html_report.h"

namespace loads::web {
// Generated at build time by cmake/LoadsEmbed.cmake (common/CMakeLists.txt).
extern const std::string_view kReportScript;
extern const std::string_view kReportStyle;
extern const std::string_view kChartScript;
extern const std::string_view kLiveScript;
extern const std::string_view kLiveStyle;
}  // namespace loads::web

namespace loads::common {
namespace {

// Text that goes inside an inline <script> or <title>: "</" would let the run's own text (a test
// name, an error message from a server) close the element and become markup. In JSON, "<\/" is
// the same string.
std::string ScriptSafe(std::string_view json) {
  std::string out;
  out.reserve(json.size());
  for (size_t i = 0; i < json.size(); ++i) {
    if (json[i] == '<' && i + 1 < json.size() && json[i + 1] == '/') {
      out += "<\\/";
      ++i;
    } else if (json[i] == '<' && json.substr(i, 4) == "<!--") {
      out += "\\u003c!--";  // would start a comment state inside the script element
      i += 3;
    } else {
      out += json[i];
    }
  }
  return out;
}

}  // namespace

std::string_view ReportPageScript() { return web::kReportScript; }
std::string_view ReportPageStyle() { return web::kReportStyle; }
std::string_view ChartLibraryScript() { return web::kChartScript; }
std::string_view LivePageScript() { return web::kLiveScript; }
std::string_view LivePageStyle() { return web::kLiveStyle; }

std::string FormatHtmlReport(std::string_view json_report) {
  std::string page;
  page.reserve(json_report.size() + web::kChartScript.size() + web::kReportScript.size() + 4096);
  page +=
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      // Nothing may be loaded from anywhere: the file is the whole report.
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
      "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\n"
      "<title>Loads report</title>\n<style>\n";
  page += web::kReportStyle;
  page += "</style>\n<script>\n";
  page += web::kChartScript;
  page += "\n</script>\n</head>\n<body>\n<main id=\"loads-report\"></main>\n<script>\n";
  page += "window.LOADS_REPORT = ";
  page += ScriptSafe(json_report);
  page += ";\n</script>\n<script>\n";
  page += web::kReportScript;
  page += "\n</script>\n</body>\n</html>\n";
  return page;
}

}  // namespace loads::common
