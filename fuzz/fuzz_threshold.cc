// A --threshold expression (command line, scenario, RunSpec.thresholds).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "loads/common/threshold.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto threshold = loads::common::ParseThreshold(text);
  if (!threshold.ok() && threshold.status().message().empty()) std::abort();
  return 0;
}
