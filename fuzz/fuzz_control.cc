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
  loads::Status read = loads::common::DecodeMessage(bytes, &type, &control, &snapshot);
  if (!read.ok() && read.message().empty()) std::abort();  // a refusal always says why
  loads::common::ControlMessage worker_side;
  read = loads::common::DecodeControl(bytes, &worker_side);
  if (!read.ok() && read.message().empty()) std::abort();
  return 0;
}
