// A result snapshot as a worker (or anyone reaching the worker port) may send it: decoded and
// validated without a crash, a leak or undefined behaviour, whatever the bytes; a snapshot that
// is accepted encodes again and decodes to the same.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "loads/common/snapshot.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  loads::common::Snapshot snapshot;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (loads::Status read = loads::common::DecodeSnapshot(bytes, &snapshot); !read.ok()) {
    if (read.message().empty()) std::abort();  // a refusal always says why
    return 0;
  }
  const std::string again = loads::common::EncodeSnapshot(snapshot);
  loads::common::Snapshot round;
  if (!loads::common::DecodeSnapshot(again, &round).ok()) std::abort();
  if (round.stats.hits != snapshot.stats.hits || round.sequence != snapshot.sequence) std::abort();
  return 0;
}
