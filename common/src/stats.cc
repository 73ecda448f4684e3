#include "loads/common/stats.h"

namespace loads::common {
namespace {

template <typename Map, typename Value>
Value& BoundedSlot(Map& map, std::string_view key, size_t cap, std::string_view overflow) {
  auto it = map.find(key);
  if (it != map.end()) return it->second;
  // The overflow entry does not take one of the cap's places, so merging a map that has one
  // (it sorts first) keeps the other names apart.
  if (key != overflow && map.size() - map.count(overflow) >= cap) key = overflow;
  return map.try_emplace(std::string(key)).first->second;
}

}  // namespace

std::string_view HitErrorName(HitError error) {
  switch (error) {
    case HitError::kNone:
      return "none";
    case HitError::kConnectionRefused:
      return "connection_refused";
    case HitError::kConnectionReset:
      return "connection_reset";
    case HitError::kTimeout:
      return "timeout";
    case HitError::kDns:
      return "dns";
    case HitError::kTls:
      return "tls";
    case HitError::kMalformedResponse:
      return "malformed_response";
    case HitError::kCancelled:
      return "cancelled";
    case HitError::kNetwork:
      return "network";
    case HitError::kBodyTooLarge:
      return "body_too_large";
    case HitError::kHeaderTooLarge:
      return "header_too_large";
    case HitError::kForbiddenTarget:
      return "forbidden_target";
  }
  return "network";
}

void UrlStats::Merge(const UrlStats& other) {
  hits = SaturatingAdd(hits, other.hits);
  errors = SaturatingAdd(errors, other.errors);
  latency.Merge(other.latency);
}

void RunStats::RecordHit(std::string_view name, std::string_view method, int status, HitError error,
                         uint64_t latency_ns) {
  ++hits;
  ++BoundedSlot<decltype(methods), StatusClasses>(methods, method, kMaxMethods,
                                                  kOtherMethods)[StatusClassIndex(status, error)];
  UrlStats& url = BoundedSlot<decltype(urls), UrlStats>(urls, name, kMaxUrlNames, kOtherUrls);
  ++url.hits;
  if (error != HitError::kNone) {
    ++hit_errors[static_cast<size_t>(error)];
    ++url.errors;
    return;
  }
  if (status >= 0 && status < static_cast<int>(status_codes.size())) ++status_codes[status];
  if (status >= 400) ++url.errors;
  latency.Record(latency_ns);
  url.latency.Record(latency_ns);
}

void RunStats::RecordExecution(Outcome outcome, std::string_view message) {
  switch (outcome) {
    case Outcome::kSuccess:
      ++successes;
      return;
    case Outcome::kFailure:
      ++failures;
      break;
    case Outcome::kError:
      ++errors;
      break;
  }
  ++BoundedSlot<decltype(error_messages), uint64_t>(error_messages, message, kMaxErrorMessages,
                                                    kOtherErrors);
}

void RunStats::IncrCounter(std::string_view name, int64_t by) {
  BoundedSlot<decltype(counters), int64_t>(counters, name, kMaxCounters, kOtherCounters) += by;
}

void RunStats::Merge(const RunStats& other) {
  const auto add = [](uint64_t& total, uint64_t n) { total = SaturatingAdd(total, n); };
  add(hits, other.hits);
  latency.Merge(other.latency);
  for (size_t i = 0; i < status_codes.size(); ++i) add(status_codes[i], other.status_codes[i]);
  for (size_t i = 0; i < hit_errors.size(); ++i) add(hit_errors[i], other.hit_errors[i]);
  for (const auto& [name, url] : other.urls) {
    BoundedSlot<decltype(urls), UrlStats>(urls, name, kMaxUrlNames, kOtherUrls).Merge(url);
  }
  for (const auto& [method, classes] : other.methods) {
    auto& mine =
        BoundedSlot<decltype(methods), StatusClasses>(methods, method, kMaxMethods, kOtherMethods);
    for (size_t i = 0; i < mine.size(); ++i) add(mine[i], classes[i]);
  }
  add(successes, other.successes);
  add(failures, other.failures);
  add(errors, other.errors);
  add(started, other.started);
  corrected_latency.Merge(other.corrected_latency);
  schedule_lag.Merge(other.schedule_lag);
  add(dropped, other.dropped);
  add(missed_pace, other.missed_pace);
  for (const auto& [message, count] : other.error_messages) {
    add(BoundedSlot<decltype(error_messages), uint64_t>(error_messages, message, kMaxErrorMessages,
                                                        kOtherErrors),
        count);
  }
  add(ws_opened, other.ws_opened);
  add(ws_closed, other.ws_closed);
  add(ws_messages_received, other.ws_messages_received);
  add(ws_bytes_received, other.ws_bytes_received);
  add(ws_messages_sent, other.ws_messages_sent);
  add(ws_bytes_sent, other.ws_bytes_sent);
  ws_connect.Merge(other.ws_connect);
  ws_round_trip.Merge(other.ws_round_trip);
  for (const auto& [name, value] : other.counters) {
    int64_t& mine =
        BoundedSlot<decltype(counters), int64_t>(counters, name, kMaxCounters, kOtherCounters);
    if (__builtin_add_overflow(mine, value, &mine)) mine = value > 0 ? INT64_MAX : INT64_MIN;
  }
}

bool RunStats::MergeWouldOverflow(const RunStats& other) const {
  uint64_t sum = 0;
  const auto over = [&sum](uint64_t a, uint64_t b) { return __builtin_add_overflow(a, b, &sum); };
  if (over(hits, other.hits) || over(latency.Count(), other.latency.Count()) ||
      over(successes, other.successes) || over(failures, other.failures) ||
      over(errors, other.errors) || over(Executions(), other.Executions()) ||
      over(ws_opened, other.ws_opened) || over(ws_closed, other.ws_closed) ||
      over(ws_messages_received, other.ws_messages_received) ||
      over(ws_bytes_received, other.ws_bytes_received) ||
      over(ws_messages_sent, other.ws_messages_sent) || over(ws_bytes_sent, other.ws_bytes_sent)) {
    return true;
  }
  for (size_t i = 0; i < status_codes.size(); ++i) {
    if (over(status_codes[i], other.status_codes[i])) return true;
  }
  for (size_t i = 0; i < hit_errors.size(); ++i) {
    if (over(hit_errors[i], other.hit_errors[i])) return true;
  }
  return false;
}

}  // namespace loads::common
