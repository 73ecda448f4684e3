#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loads/common/load_model.h"
#include "loads/common/snapshot.h"

namespace loads::common {

// The control messages between the controller and a worker (docs/wire-protocol.md). Each is one
// msgpack map in one ZeroMQ frame, with "v" (the protocol version) and "type". Result snapshots
// are in snapshot.h.
// Version 2 added ack, rejoin, refused and bye, `run` in hello and welcome (re-attaching to a
// run), and `seq` and `left` in done.
inline constexpr uint64_t kProtocolVersion = 2;

// Run ids and worker ids: 1 to this many printable characters, no spaces (they become log lines,
// file names and metric labels).
inline constexpr size_t kMaxIdLength = 200;

enum class MessageType {
  kHello,      // worker -> controller: registration, repeated until welcomed
  kWelcome,    // controller -> worker
  kHeartbeat,  // both ways, every heartbeat period
  kAssign,     // controller -> worker: this worker's share of a run
  kReady,      // worker -> controller: the test is loaded
  kStart,      // controller -> worker: start at a common time
  kStop,       // controller -> worker: stop that run
  kDone,       // worker -> controller: the run is over on this worker (after the final snapshot)
  kSnapshot,   // worker -> controller: results (snapshot.h)
  kAck,        // controller -> worker: snapshots merged and stored up to `seq`; `closed`: forget
               // the run
  kRejoin,     // controller -> worker: you are not registered (lost, or I restarted): say hello
  kRefused,    // controller -> worker: your hello is refused for good (`message` says why)
  kBye,        // worker -> controller: I am leaving the pool (shutting down)
};

std::string_view MessageTypeName(MessageType type);

// The network timeouts of a run that does not set them.
inline constexpr int64_t kDefaultConnectTimeoutMs = 10'000;
inline constexpr int64_t kDefaultTimeoutMs = 30'000;

// A worker's share of a run.
struct Assignment {
  std::string run_id;
  std::string test;              // "module.Class.method", or the URL of a built-in GET test
  std::string url;               // set for the built-in GET test (then `library` is empty)
  std::string library;           // the test library's bytes (a .so), for a named test
  std::string scenario;          // a declarative scenario's JSON text (docs/scenarios.md)
  std::string external_command;  // an external runner command (docs/external-runners.md)
  std::vector<int64_t> users;
  std::vector<int64_t> hits;       // empty in duration mode
  std::optional<double> duration;  // seconds per user cycle; the open model's length
  LoadModel load;                  // ramps, arrival rate, pacing; this worker's share of them
  int64_t threads = 1;  // 0 in a plan: the broker picks for each worker (never 0 on the wire)
  std::string server_url;
  int64_t connect_timeout_ms = kDefaultConnectTimeoutMs;
  int64_t timeout_ms = kDefaultTimeoutMs;
  bool insecure = false;
  // The controller's --allow-target patterns: the worker sends nothing elsewhere (empty: any).
  std::vector<std::string> allow_targets;
};

// Any control message; which fields are meaningful depends on type (docs/wire-protocol.md).
struct ControlMessage {
  MessageType type = MessageType::kHeartbeat;
  std::string worker_id;  // hello, heartbeat (from a worker), ready, done, welcome, bye
  // ready, start, stop, done, ack; hello: the run the worker is in (re-attaching), welcome: the
  // run it is attached to ("" = none: it forgets any other)
  std::string run_id;
  std::string token;                     // hello: the shared secret that admits workers
  int64_t threads = 0;                   // hello: capacity, engine threads
  std::string sdk_version;               // hello
  int64_t heartbeat_ms = 1000;           // welcome: how often both sides send heartbeats
  uint64_t start_at = 0;                 // start: Unix time, nanoseconds
  bool ok = true;                        // done
  std::string message;                   // done: why it failed; refused: why
  uint64_t seq = 0;                      // done: its final snapshot (0 = none); ack: merged up to
  bool left = false;                     // done: the worker is shutting down
  bool closed = false;                   // ack: the run is closed for this worker
  std::optional<Assignment> assignment;  // assign
};

std::string EncodeControl(const ControlMessage& message);

// Decodes any message a controller receives, unpacking the frame once: a snapshot into
// *snapshot, anything else into *control, with its type in *type. Never throws; on failure says
// why (INVALID_ARGUMENT), naming the field at fault.
Status DecodeMessage(std::string_view bytes, MessageType* type, ControlMessage* control,
                     Snapshot* snapshot);

// Decodes and validates a control message (not a snapshot). Never throws; INVALID_ARGUMENT
// naming the field at fault.
Status DecodeControl(std::string_view bytes, ControlMessage* out);

// The run of an `assign` message that DecodeControl refused, so that the worker can answer it
// (done, ok=false, with why) instead of leaving the run waiting. nullopt for anything else.
std::optional<std::string> AssignmentRunId(std::string_view bytes);

}  // namespace loads::common
