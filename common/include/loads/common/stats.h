#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "loads/common/histogram.h"

namespace loads::common {

// The outcome of one execution (setUp, test method, tearDown) of a test by one virtual user.
enum class Outcome { kSuccess, kFailure, kError };

// Why a hit (one HTTP request) got no usable response. kNone means a response was received,
// whatever its status code: a 500 is a response, not a hit error.
enum class HitError {
  kNone,
  kConnectionRefused,
  kConnectionReset,  // the peer closed or reset the connection before a complete response
  kTimeout,
  kDns,
  kTls,
  kMalformedResponse,
  kCancelled,        // the run was interrupted while the request was in flight
  kNetwork,          // any other socket error
  kBodyTooLarge,     // the response body was larger than the limit (64 MiB)
  kHeaderTooLarge,   // the response's header section was larger than the limit (64 KiB)
  kForbiddenTarget,  // not sent: the host is not in the allow-list (--allow-target)
};
inline constexpr int kHitErrorCount = 12;

// Stable lower_snake_case name of a hit error kind, used in reports and messages.
std::string_view HitErrorName(HitError error);

// Counters and histograms of one hit name (request name, by default "METHOD url").
struct UrlStats {
  uint64_t hits = 0;
  uint64_t errors = 0;  // hits with a HitError, or a response status >= 400
  Histogram latency;    // nanoseconds, hits that got a response only

  void Merge(const UrlStats& other);
};

// Everything a run measures. One instance per engine thread is written without locks; instances
// are merged for progress snapshots and the final report. Memory is bounded: hit names and error
// messages beyond a cap are folded into one overflow entry.
//
// Thread safety: none; the owner serializes access.
struct RunStats {
  static constexpr size_t kMaxUrlNames = 1000;
  static constexpr size_t kMaxErrorMessages = 1000;
  static constexpr size_t kMaxCounters = 1000;
  static constexpr std::string_view kOtherUrls = "(other URLs)";
  static constexpr std::string_view kOtherErrors = "(other errors)";
  static constexpr std::string_view kOtherCounters = "(other counters)";
  // Status classes of hits by HTTP method: [no response, 1xx, 2xx, 3xx, 4xx, 5xx].
  static constexpr size_t kMaxMethods = 16;
  static constexpr std::string_view kOtherMethods = "(other)";
  using StatusClasses = std::array<uint64_t, 6>;

  uint64_t hits = 0;
  Histogram latency;                          // nanoseconds, hits that got a response
  std::array<uint64_t, 1000> status_codes{};  // every 3-digit status HTTP allows
  std::array<uint64_t, kHitErrorCount> hit_errors{};
  std::map<std::string, UrlStats, std::less<>> urls;
  std::map<std::string, StatusClasses, std::less<>> methods;

  uint64_t successes = 0;
  uint64_t failures = 0;
  uint64_t errors = 0;
  // Executions started (finished ones are successes + failures + errors; the rest were in flight
  // at the end of the interval).
  uint64_t started = 0;

  // The load model's measures (docs/load-models.md). An execution with an intended start (the
  // open model's arrivals, a paced user) records how late it started, and each of its hits the
  // time from that intended start to the hit's response: the latency a user arriving on schedule
  // would have seen (wrk2's corrected latency), which includes the time spent waiting for a user.
  Histogram corrected_latency;  // nanoseconds, hits that got a response, from the intended start
  Histogram schedule_lag;       // nanoseconds, from an execution's intended start to its start
  uint64_t dropped = 0;         // arrivals that found no free user (open model): not run
  uint64_t missed_pace = 0;     // paced executions that started after their intended start
  // Failure and error messages of executions, with their counts.
  std::map<std::string, uint64_t, std::less<>> error_messages;

  uint64_t ws_opened = 0;
  uint64_t ws_closed = 0;
  uint64_t ws_messages_received = 0;
  uint64_t ws_bytes_received = 0;
  uint64_t ws_messages_sent = 0;
  uint64_t ws_bytes_sent = 0;
  // Nanoseconds from create_ws() to the end of the WebSocket handshake (TCP connect, TLS, HTTP
  // upgrade), one per WebSocket opened.
  Histogram ws_connect;
  // Nanoseconds from a send() to the message that answers it: each message received pairs with
  // the oldest send() of that socket not yet answered, so request/response exchanges (and
  // pipelined ones) measure their round trips; a message received with no send() waiting is
  // not timed.
  Histogram ws_round_trip;

  std::map<std::string, int64_t, std::less<>> counters;

  uint64_t Executions() const { return successes + failures + errors; }

  // Records one hit. status is the HTTP status (0 when error != kNone); latency in nanoseconds.
  void RecordHit(std::string_view name, std::string_view method, int status, HitError error,
                 uint64_t latency_ns);
  // Records one finished execution; message is ignored for kSuccess.
  void RecordExecution(Outcome outcome, std::string_view message);
  void IncrCounter(std::string_view name, int64_t by);

  // Adds other in. Every sum saturates (at the largest value of its type) instead of wrapping.
  void Merge(const RunStats& other);
  // Whether merging other would overflow one of the totals (hits, responses, outcomes, WebSocket
  // counts): a receiver refuses such a delta rather than saturate.
  bool MergeWouldOverflow(const RunStats& other) const;
};

// a + b, or the largest uint64_t when that overflows.
inline uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  uint64_t sum = 0;
  return __builtin_add_overflow(a, b, &sum) ? UINT64_MAX : sum;
}

// The index in RunStats::StatusClasses of a hit's status: 0 without a response, else its class.
inline size_t StatusClassIndex(int status, HitError error) {
  if (error != HitError::kNone || status < 100 || status > 599) return 0;
  return static_cast<size_t>(status / 100);
}

}  // namespace loads::common
