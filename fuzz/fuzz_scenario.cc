// A scenario file (JSON), as a user writes it or StartRun carries it.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "loads/common/scenario.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto scenario = loads::common::ParseScenario(text);
  if (!scenario.ok() && scenario.status().message().empty()) std::abort();
  return 0;
}
