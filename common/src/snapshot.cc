#include "loads/common/snapshot.h"

#include <algorithm>
#include <cmath>
#include <msgpack.hpp>
#include <vector>

#include "common/src/msgpack_reader.h"
#include "loads/common/url.h"

namespace loads::common {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

void PackHistogram(Packer& pk, const Histogram& h) {
  // [count, min, max, sum, [index, count, index delta, count, ...]]
  std::vector<uint64_t> buckets;
  uint64_t previous = 0;
  h.ForEachIndexedBucket([&](uint64_t index, uint64_t count) {
    buckets.push_back(index - previous);
    buckets.push_back(count);
    previous = index;
  });
  pk.pack_array(5);
  pk.pack(h.Count());
  pk.pack(h.Min());
  pk.pack(h.Max());
  pk.pack(h.Sum());
  pk.pack_array(static_cast<uint32_t>(buckets.size()));
  for (uint64_t v : buckets) pk.pack(v);
}

template <typename Map, typename PackValue>
void PackMap(Packer& pk, const Map& map, PackValue&& pack_value) {
  pk.pack_map(static_cast<uint32_t>(map.size()));
  for (const auto& [key, value] : map) {
    PackString(pk, key);
    pack_value(value);
  }
}

bool DecodeStats(Reader& r, std::string_view key, const msgpack::object& v, RunStats* s) {
  if (key == "hits") return r.Uint(v, key, &s->hits);
  if (key == "latency") return r.Histo(v, key, &s->latency);
  if (key == "started") return r.Uint(v, key, &s->started);
  if (key == "dropped") return r.Uint(v, key, &s->dropped);
  if (key == "missed_pace") return r.Uint(v, key, &s->missed_pace);
  if (key == "corrected") return r.Histo(v, key, &s->corrected_latency);
  if (key == "lag") return r.Histo(v, key, &s->schedule_lag);
  if (key == "ws_connect") return r.Histo(v, key, &s->ws_connect);
  if (key == "ws_round_trip") return r.Histo(v, key, &s->ws_round_trip);
  if (key == "status") {
    if (!r.Map(v, key, s->status_codes.size())) return false;
    for (uint32_t i = 0; i < v.via.map.size; ++i) {
      uint64_t code = 0, n = 0;
      if (!r.Uint(v.via.map.ptr[i].key, "status", &code) ||
          !r.Uint(v.via.map.ptr[i].val, "status", &n)) {
        return false;
      }
      if (code >= s->status_codes.size()) return r.Fail(key, "status code out of range");
      s->status_codes[code] = SaturatingAdd(s->status_codes[code], n);
    }
    return true;
  }
  if (key == "hit_errors") {
    if (!r.Map(v, key, kHitErrorCount)) return false;
    for (uint32_t i = 0; i < v.via.map.size; ++i) {
      std::string name;
      uint64_t n = 0;
      if (!r.String(v.via.map.ptr[i].key, key, &name) || !r.Uint(v.via.map.ptr[i].val, key, &n)) {
        return false;
      }
      int kind = 1;
      while (kind < kHitErrorCount && HitErrorName(static_cast<HitError>(kind)) != name) ++kind;
      if (kind == kHitErrorCount) return r.Fail(key, "unknown error kind '" + name + "'");
      s->hit_errors[kind] = SaturatingAdd(s->hit_errors[kind], n);
    }
    return true;
  }
  if (key == "outcomes") {
    if (!r.Array(v, key, 3)) return false;
    return r.Uint(v.via.array.ptr[0], key, &s->successes) &&
           r.Uint(v.via.array.ptr[1], key, &s->failures) &&
           r.Uint(v.via.array.ptr[2], key, &s->errors);
  }
  if (key == "methods") {
    if (!r.Map(v, key, RunStats::kMaxMethods + 1)) return false;
    for (uint32_t i = 0; i < v.via.map.size; ++i) {
      std::string method;
      const msgpack::object& counts = v.via.map.ptr[i].val;
      if (!r.String(v.via.map.ptr[i].key, key, &method) ||
          !r.Array(counts, key, RunStats::StatusClasses().size())) {
        return false;
      }
      // Methods become metric labels: HTTP tokens (or the overflow name) only.
      if (method != RunStats::kOtherMethods && !IsHttpMethod(method)) {
        return r.Fail(key, "'" + method + "' is not an HTTP method");
      }
      auto& classes = s->methods[method];
      for (size_t c = 0; c < classes.size(); ++c) {
        if (!r.Uint(counts.via.array.ptr[c], key, &classes[c])) return false;
      }
    }
    return true;
  }
  if (key == "ws") {
    if (!r.Array(v, key, 6)) return false;
    uint64_t* fields[] = {&s->ws_opened,         &s->ws_closed,        &s->ws_messages_received,
                          &s->ws_bytes_received, &s->ws_messages_sent, &s->ws_bytes_sent};
    for (int i = 0; i < 6; ++i) {
      if (!r.Uint(v.via.array.ptr[i], key, fields[i])) return false;
    }
    return true;
  }
  if (key == "errors") {
    if (!r.Map(v, key, RunStats::kMaxErrorMessages + 1)) return false;
    for (uint32_t i = 0; i < v.via.map.size; ++i) {
      std::string message;
      uint64_t n = 0;
      if (!r.String(v.via.map.ptr[i].key, key, &message) ||
          !r.Uint(v.via.map.ptr[i].val, key, &n)) {
        return false;
      }
      s->error_messages[message] = SaturatingAdd(s->error_messages[message], n);
    }
    return true;
  }
  if (key == "counters") {
    if (!r.Map(v, key, RunStats::kMaxCounters + 1)) return false;
    for (uint32_t i = 0; i < v.via.map.size; ++i) {
      std::string name;
      int64_t n = 0;
      if (!r.String(v.via.map.ptr[i].key, key, &name) || !r.Int(v.via.map.ptr[i].val, key, &n)) {
        return false;
      }
      int64_t& total = s->counters[name];
      if (__builtin_add_overflow(total, n, &total)) return r.Fail(key, "a counter overflows");
    }
    return true;
  }
  if (key == "urls") {
    if (!r.Map(v, key, RunStats::kMaxUrlNames + 1)) return false;
    for (uint32_t i = 0; i < v.via.map.size; ++i) {
      std::string name;
      const msgpack::object& entry = v.via.map.ptr[i].val;
      if (!r.String(v.via.map.ptr[i].key, key, &name) || !r.Array(entry, key, 3)) return false;
      UrlStats url;
      if (!r.Uint(entry.via.array.ptr[0], key, &url.hits) ||
          !r.Uint(entry.via.array.ptr[1], key, &url.errors) ||
          !r.Histo(entry.via.array.ptr[2], key, &url.latency)) {
        return false;
      }
      s->urls[name].Merge(url);
    }
    return true;
  }
  return r.Fail(key, "unknown field");
}

}  // namespace

std::string EncodeSnapshot(const Snapshot& snapshot) {
  const RunStats& s = snapshot.stats;
  msgpack::sbuffer buffer;
  Packer pk(&buffer);
  pk.pack_map(27);
  PackString(pk, "v");
  pk.pack(kSnapshotVersion);
  PackString(pk, "type");
  PackString(pk, "snapshot");
  PackString(pk, "run");
  PackString(pk, snapshot.run_id);
  PackString(pk, "worker");
  PackString(pk, snapshot.worker_id);
  PackString(pk, "seq");
  pk.pack(snapshot.sequence);
  PackString(pk, "t0");
  pk.pack(snapshot.interval_start);
  PackString(pk, "t1");
  pk.pack(snapshot.interval_end);
  PackString(pk, "final");
  pk.pack(snapshot.final);
  PackString(pk, "users");
  pk.pack(snapshot.active_users);
  PackString(pk, "rate");
  pk.pack_double(snapshot.target_rate);
  PackString(pk, "hits");
  pk.pack(s.hits);
  PackString(pk, "latency");
  PackHistogram(pk, s.latency);
  PackString(pk, "status");
  uint32_t codes = 0;
  for (uint64_t n : s.status_codes) codes += n != 0;
  pk.pack_map(codes);
  for (size_t code = 0; code < s.status_codes.size(); ++code) {
    if (s.status_codes[code] == 0) continue;
    pk.pack(static_cast<uint64_t>(code));
    pk.pack(s.status_codes[code]);
  }
  PackString(pk, "hit_errors");
  uint32_t kinds = 0;
  for (int k = 1; k < kHitErrorCount; ++k) kinds += s.hit_errors[k] != 0;
  pk.pack_map(kinds);
  for (int k = 1; k < kHitErrorCount; ++k) {
    if (s.hit_errors[k] == 0) continue;
    PackString(pk, HitErrorName(static_cast<HitError>(k)));
    pk.pack(s.hit_errors[k]);
  }
  PackString(pk, "outcomes");
  pk.pack_array(3);
  pk.pack(s.successes);
  pk.pack(s.failures);
  pk.pack(s.errors);
  PackString(pk, "started");
  pk.pack(s.started);
  PackString(pk, "dropped");
  pk.pack(s.dropped);
  PackString(pk, "missed_pace");
  pk.pack(s.missed_pace);
  PackString(pk, "corrected");
  PackHistogram(pk, s.corrected_latency);
  PackString(pk, "lag");
  PackHistogram(pk, s.schedule_lag);
  PackString(pk, "methods");
  PackMap(pk, s.methods, [&](const RunStats::StatusClasses& classes) {
    pk.pack_array(static_cast<uint32_t>(classes.size()));
    for (uint64_t n : classes) pk.pack(n);
  });
  PackString(pk, "ws");
  pk.pack_array(6);
  for (uint64_t v : {s.ws_opened, s.ws_closed, s.ws_messages_received, s.ws_bytes_received,
                     s.ws_messages_sent, s.ws_bytes_sent}) {
    pk.pack(v);
  }
  PackString(pk, "ws_connect");
  PackHistogram(pk, s.ws_connect);
  PackString(pk, "ws_round_trip");
  PackHistogram(pk, s.ws_round_trip);
  PackString(pk, "errors");
  PackMap(pk, s.error_messages, [&](uint64_t n) { pk.pack(n); });
  PackString(pk, "counters");
  PackMap(pk, s.counters, [&](int64_t n) { pk.pack(n); });
  PackString(pk, "urls");
  PackMap(pk, s.urls, [&](const UrlStats& url) {
    pk.pack_array(3);
    pk.pack(url.hits);
    pk.pack(url.errors);
    PackHistogram(pk, url.latency);
  });
  return std::string(buffer.data(), buffer.size());
}

Status DecodeSnapshot(std::string_view bytes, Snapshot* out) {
  *out = Snapshot{};  // also when unpacking fails
  msgpack::object_handle handle;
  std::string error;
  const bool ok =
      UnpackBounded(bytes, &handle, &error) && DecodeSnapshotObject(handle.get(), out, &error);
  return ok ? OkStatus() : InvalidArgumentError(error);
}

bool DecodeSnapshotObject(const msgpack::object& root, Snapshot* out, std::string* error) {
  Reader r(error);
  *out = Snapshot{};
  bool seen_type = false, seen_run = false, seen_worker = false, seen_seq = false;
  uint64_t version = 0;
  // Every field of the table is required (a snapshot without `latency` would leave the merged
  // latency count below the responses); `users` and `methods` came with version 2.
  std::vector<std::string> seen;
  const bool read = ReadMessage(
      root, kSnapshotVersion, error,
      [&](const std::string& key, const msgpack::object& v) {
        if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
          return r.Fail(key, "given twice");
        }
        seen.push_back(key);
        if (key == "type") {
          std::string type;
          if (!r.String(v, key, &type)) return false;
          if (type != "snapshot") return r.Fail(key, "expected \"snapshot\"");
          seen_type = true;
          return true;
        }
        if (key == "run") {
          seen_run = true;
          return r.String(v, key, &out->run_id);
        }
        if (key == "worker") {
          seen_worker = true;
          return r.String(v, key, &out->worker_id);
        }
        if (key == "seq") {
          seen_seq = true;
          if (!r.Uint(v, key, &out->sequence)) return false;
          return out->sequence != 0 || r.Fail(key, "sequence numbers start at 1");
        }
        if (key == "t0") return r.Uint(v, key, &out->interval_start);
        if (key == "t1") return r.Uint(v, key, &out->interval_end);
        if (key == "final") {
          if (v.type != msgpack::type::BOOLEAN) return r.Fail(key, "expected a boolean");
          out->final = v.via.boolean;
          return true;
        }
        if (key == "users") return r.Uint(v, key, &out->active_users);
        if (key == "rate") {
          if (v.type == msgpack::type::FLOAT64 || v.type == msgpack::type::FLOAT32) {
            out->target_rate = v.via.f64;
          } else if (v.type == msgpack::type::POSITIVE_INTEGER) {
            out->target_rate = static_cast<double>(v.via.u64);
          } else {
            return r.Fail(key, "expected a number");
          }
          if (!std::isfinite(out->target_rate) || out->target_rate < 0 || out->target_rate > 1e9) {
            return r.Fail(key, "expected a rate of 0 to 1e9 per second");
          }
          return true;
        }
        return DecodeStats(r, key, v, &out->stats);
      },
      kOldestSnapshotVersion, &version);
  if (!read) return false;
  if (!seen_type) return r.Fail("type", "missing");
  if (!seen_run || out->run_id.empty()) return r.Fail("run", "missing or empty");
  if (!seen_worker || out->worker_id.empty()) return r.Fail("worker", "missing or empty");
  if (!seen_seq) return r.Fail("seq", "missing");
  for (const char* key : {"t0", "t1", "final", "hits", "latency", "status", "hit_errors",
                          "outcomes", "ws", "errors", "counters", "urls"}) {
    if (std::find(seen.begin(), seen.end(), key) == seen.end()) return r.Fail(key, "missing");
  }
  if (version >= 2) {
    for (const char* key : {"users", "methods"}) {
      if (std::find(seen.begin(), seen.end(), key) == seen.end()) return r.Fail(key, "missing");
    }
  }
  if (version >= 3) {
    for (const char* key : {"rate", "started", "dropped", "missed_pace", "corrected", "lag"}) {
      if (std::find(seen.begin(), seen.end(), key) == seen.end()) return r.Fail(key, "missing");
    }
  }
  if (version >= 5) {
    for (const char* key : {"ws_connect", "ws_round_trip"}) {
      if (std::find(seen.begin(), seen.end(), key) == seen.end()) return r.Fail(key, "missing");
    }
  }
  if (out->interval_end < out->interval_start) return r.Fail("t1", "before t0");
  RunStats& stats = out->stats;
  // Saturating sums: a hostile message cannot wrap a total around to look consistent.
  const auto add = [](uint64_t& total, uint64_t n) {
    if (__builtin_add_overflow(total, n, &total)) total = UINT64_MAX;
  };
  uint64_t answered = 0;
  for (uint64_t n : stats.status_codes) add(answered, n);
  if (answered > stats.hits) return r.Fail("status", "more responses than hits");
  if (stats.corrected_latency.Count() > stats.latency.Count()) {
    return r.Fail("corrected", "more latencies from the intended start than responses");
  }
  if (stats.schedule_lag.Count() > stats.started) {
    return r.Fail("lag", "more schedule lags than started executions");
  }
  if (stats.ws_connect.Count() > stats.ws_opened) {
    return r.Fail("ws_connect", "more connect times than WebSockets opened");
  }
  if (stats.ws_round_trip.Count() > stats.ws_messages_received) {
    return r.Fail("ws_round_trip", "more round trips than messages received");
  }
  uint64_t failed = 0;
  for (uint64_t n : stats.hit_errors) add(failed, n);
  if (SaturatingAdd(answered, failed) > stats.hits) {
    return r.Fail("hit_errors", "more responses and hit errors than hits");
  }
  if (version < 2 && stats.methods.empty() && stats.hits) {
    // "methods" is optional (version 1): such a worker's hits count under "unknown", by the
    // status codes it reports, so that the by-method counts always add up.
    RunStats::StatusClasses by{};
    for (size_t code = 0; code < stats.status_codes.size(); ++code) {
      by[StatusClassIndex(static_cast<int>(code), HitError::kNone)] += stats.status_codes[code];
    }
    by[0] += stats.hits - answered;
    stats.methods.emplace("unknown", by);
  } else {
    uint64_t by_method = 0, answered_by_method = 0;
    for (const auto& [method, classes] : stats.methods) {
      for (size_t c = 0; c < classes.size(); ++c) {
        add(by_method, classes[c]);
        if (c > 0) add(answered_by_method, classes[c]);
      }
    }
    if (by_method != stats.hits) return r.Fail("methods", "counts do not add up to hits");
    // Statuses outside 100-599 count as "no response" by method, so at most as many.
    if (answered_by_method > answered) {
      return r.Fail("methods", "more responses than the status codes count");
    }
  }
  return true;
}

}  // namespace loads::common
