// A scenario file (JSON), as a user writes it or StartRun carries it.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "loads/common/scenario.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::string error;
  if (!loads::common::ParseScenario(text, &error) && error.empty()) std::abort();
  return 0;
}
