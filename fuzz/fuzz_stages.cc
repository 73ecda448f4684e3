// --stages and --rate-stages ("30s:100,1m:100,30s:0").
#include <cstdint>
#include <cstdlib>
#include <string>

#include "loads/common/load_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto stages = loads::common::ParseStages(text);
  if (!stages.ok() && stages.status().message().empty()) std::abort();
  return 0;
}
