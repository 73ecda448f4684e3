// A URL from the command line, a scenario or a test library, and a Location header resolved
// against it (a server chooses those bytes).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "loads/common/url.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const size_t split = text.find('\n');
  auto url = loads::common::ParseUrl(text.substr(0, split));
  if (!url.ok()) {
    if (url.status().message().empty()) std::abort();  // a refusal always says why
    return 0;
  }
  // What was accepted prints as a URL that parses to the same target.
  auto again = loads::common::ParseUrl(url->ToString());
  if (!again.ok() || again->host != url->host || again->port != url->port) std::abort();
  if (split != std::string_view::npos) {
    if (auto next = loads::common::ResolveUrl(*url, text.substr(split + 1)); next.ok()) {
      if (!loads::common::ParseUrl(next->ToString()).ok()) std::abort();
    }
  }
  return 0;
}
