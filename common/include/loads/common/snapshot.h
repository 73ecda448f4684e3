#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "loads/common/stats.h"
#include "loads/common/status.h"

namespace loads::common {

// A time as the wire protocol carries it: nanoseconds since the Unix epoch.
inline uint64_t UnixNanos(std::chrono::system_clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

// The time a count of nanoseconds since the Unix epoch stands for (UnixNanos' inverse).
inline std::chrono::system_clock::time_point FromUnixNanos(int64_t nanos) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(nanos)));
}

// Version of the snapshot message on the wire (docs/wire-protocol.md). Version 2 added `users`
// and `methods`, version 3 the load model's `started`, `dropped`, `missed_pace`, `corrected`,
// `lag` and `rate`, version 4 the hit error kinds `body_too_large` and `header_too_large`,
// version 5 the WebSocket timings `ws_connect` and `ws_round_trip`, version 6 the hit error kind
// `forbidden_target`; the decoder still accepts versions 1 to 5.
inline constexpr uint64_t kSnapshotVersion = 6;
inline constexpr uint64_t kOldestSnapshotVersion = 1;

// What a worker reports about one run at most a second apart: the statistics of one interval
// (a delta, not a running total), so that the controller adds snapshots up and merged
// percentiles stay exact.
struct Snapshot {
  std::string run_id;
  std::string worker_id;
  uint64_t sequence = 0;        // 1, 2, 3... per (run, worker); gaps show lost snapshots
  uint64_t interval_start = 0;  // Unix time, nanoseconds
  uint64_t interval_end = 0;
  bool final = false;         // the worker's last snapshot for this run
  uint64_t active_users = 0;  // virtual users running at interval_end (0 in a final snapshot)
  // The worker's target arrival rate at interval_end, executions per second (open model; 0 in
  // the closed model and in a final snapshot).
  double target_rate = 0;
  RunStats stats;  // this interval only
};

// Encodes a snapshot as one msgpack map, byte for byte as docs/wire-protocol.md describes.
std::string EncodeSnapshot(const Snapshot& snapshot);

// Decodes and validates a snapshot. Never throws: on any problem (not msgpack, wrong types,
// unknown version, inconsistent histogram, more entries than the bounds RunStats keeps, trailing
// bytes) INVALID_ARGUMENT naming the field at fault.
Status DecodeSnapshot(std::string_view bytes, Snapshot* out);

}  // namespace loads::common
