// Any frame a controller or a worker receives: DecodeMessage (controller side) and
// DecodeControl (worker side) answer every input with a value or an error that says why.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "loads/common/protocol.h"
#include "loads/common/snapshot.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  loads::common::MessageType type;
  loads::common::ControlMessage control;
  loads::common::Snapshot snapshot;
  std::string error;
  if (!loads::common::DecodeMessage(bytes, &type, &control, &snapshot, &error) && error.empty()) {
    std::abort();
  }
  loads::common::ControlMessage worker_side;
  error.clear();
  if (!loads::common::DecodeControl(bytes, &worker_side, &error) && error.empty()) std::abort();
  return 0;
}
