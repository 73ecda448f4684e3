#pragma once

#include <string>
#include <string_view>

namespace loads::common {

// The report as one self-contained HTML page (--output html:FILE): the JSON report embedded,
// rendered in the browser by the page code and charting library compiled into this binary, so
// the file needs no network access to be viewed. `json_report` is FormatJsonReport's document
// (or a controller's); the page shows what it holds, nothing else.
std::string FormatHtmlReport(std::string_view json_report);

// The page code and its charting library, for a server that renders reports live: the same
// script that draws the HTML report file (window.LoadsReport.render(root, report)).
std::string_view ReportPageScript();
std::string_view ReportPageStyle();
std::string_view ChartLibraryScript();
// The live page's own script and style (LivePageServer), on top of the report page's.
std::string_view LivePageScript();
std::string_view LivePageStyle();

}  // namespace loads::common
