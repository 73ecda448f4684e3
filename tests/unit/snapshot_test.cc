#include "loads/common/snapshot.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <msgpack.hpp>
#include <random>

namespace loads::common {
namespace {

// A decoder's verdict, with its reason in *error, as the assertions print it.
bool Ok(const Status& status, std::string* error) {
  *error = status.message();
  return status.ok();
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string Unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  }
  return out;
}

Snapshot Rich() {
  Snapshot snap;
  snap.run_id = "run-1";
  snap.worker_id = "worker-a";
  snap.sequence = 7;
  snap.interval_start = 1'700'000'000'000'000'000;
  snap.interval_end = 1'700'000'001'000'000'000;
  RunStats& s = snap.stats;
  for (uint64_t i = 1; i <= 1000; ++i)
    s.RecordHit("GET http://h/a", "GET", 200, HitError::kNone, i * 997);
  s.RecordHit("GET http://h/b", "GET", 503, HitError::kNone, 5'000'000'000);
  s.RecordHit("GET http://h/b", "GET", 0, HitError::kTimeout, 0);
  s.RecordExecution(Outcome::kSuccess, "");
  s.RecordExecution(Outcome::kFailure, "AssertionError: x");
  s.RecordExecution(Outcome::kError, "NetworkError(timeout): slow");
  s.IncrCounter("visits", 3);
  s.IncrCounter("debt", -2);
  s.ws_opened = 2;
  s.ws_closed = 1;
  s.ws_messages_received = 10;
  s.ws_bytes_received = 1000;
  s.ws_messages_sent = 4;
  s.ws_bytes_sent = 40;
  s.ws_connect.Record(250'000);
  s.ws_connect.Record(310'000);
  for (uint64_t i = 1; i <= 4; ++i) s.ws_round_trip.Record(i * 41'000);
  return snap;
}

void ExpectSameStats(const RunStats& a, const RunStats& b) {
  EXPECT_EQ(a.hits, b.hits);
  EXPECT_EQ(a.status_codes, b.status_codes);
  EXPECT_EQ(a.hit_errors, b.hit_errors);
  EXPECT_EQ(a.successes, b.successes);
  EXPECT_EQ(a.failures, b.failures);
  EXPECT_EQ(a.errors, b.errors);
  EXPECT_EQ(a.error_messages, b.error_messages);
  EXPECT_EQ(a.counters, b.counters);
  EXPECT_EQ(a.methods, b.methods);
  EXPECT_EQ(a.ws_opened, b.ws_opened);
  EXPECT_EQ(a.ws_bytes_received, b.ws_bytes_received);
  EXPECT_EQ(a.ws_bytes_sent, b.ws_bytes_sent);
  for (auto h : {&Histogram::Count, &Histogram::Min, &Histogram::Max, &Histogram::Sum}) {
    EXPECT_EQ((a.ws_connect.*h)(), (b.ws_connect.*h)());
    EXPECT_EQ((a.ws_round_trip.*h)(), (b.ws_round_trip.*h)());
  }
  EXPECT_EQ(a.latency.Count(), b.latency.Count());
  EXPECT_EQ(a.latency.Min(), b.latency.Min());
  EXPECT_EQ(a.latency.Max(), b.latency.Max());
  EXPECT_EQ(a.latency.Sum(), b.latency.Sum());
  for (double p = 0; p <= 100; p += 0.1) {
    ASSERT_EQ(a.latency.Percentile(p), b.latency.Percentile(p)) << p;
  }
  ASSERT_EQ(a.urls.size(), b.urls.size());
  for (const auto& [name, url] : a.urls) {
    const UrlStats& other = b.urls.at(name);
    EXPECT_EQ(url.hits, other.hits);
    EXPECT_EQ(url.errors, other.errors);
    EXPECT_EQ(url.latency.Percentile(99), other.latency.Percentile(99));
  }
}

TEST(Snapshot, RoundTripsEveryField) {
  const Snapshot in = Rich();
  Snapshot out;
  std::string error;
  ASSERT_TRUE(Ok(DecodeSnapshot(EncodeSnapshot(in), &out), &error)) << error;
  EXPECT_EQ(out.run_id, in.run_id);
  EXPECT_EQ(out.worker_id, in.worker_id);
  EXPECT_EQ(out.sequence, in.sequence);
  EXPECT_EQ(out.interval_start, in.interval_start);
  EXPECT_EQ(out.interval_end, in.interval_end);
  EXPECT_FALSE(out.final);
  ExpectSameStats(in.stats, out.stats);
}

TEST(Snapshot, MergedAcrossWorkersEqualsOneProcess) {
  // The same samples recorded by one process, and split over three workers whose snapshots
  // cross the wire and are merged: every percentile must be identical.
  std::mt19937_64 rng(11);
  std::lognormal_distribution<double> latency(13.0, 1.2);
  RunStats single;
  std::vector<RunStats> workers(3);
  for (int i = 0; i < 30'000; ++i) {
    const auto v = static_cast<uint64_t>(latency(rng));
    const std::string url = i % 3 == 0 ? "GET /x" : "GET /y";
    single.RecordHit(url, "GET", 200, HitError::kNone, v);
    workers[i % 3].RecordHit(url, "GET", 200, HitError::kNone, v);
  }
  RunStats merged;
  for (size_t w = 0; w < workers.size(); ++w) {
    Snapshot snap;
    snap.run_id = "r";
    snap.worker_id = "w" + std::to_string(w);
    snap.sequence = 1;
    snap.stats = workers[w];
    Snapshot decoded;
    std::string error;
    ASSERT_TRUE(Ok(DecodeSnapshot(EncodeSnapshot(snap), &decoded), &error)) << error;
    merged.Merge(decoded.stats);
  }
  ExpectSameStats(single, merged);
}

// A small snapshot's exact bytes (tests/testdata/snapshot_v6.hex, also read by the Python test
// of the wire format and shown in docs/wire-protocol.md). A change here is a change of the wire
// format: bump kSnapshotVersion and update the document.
std::string GoldenHex(const char* file_name = "snapshot_v6.hex") {
  std::ifstream file(std::string(LOADS_TESTDATA_DIR) + "/" + file_name);
  std::string hex;
  file >> hex;
  return hex;
}

Snapshot Golden() {
  Snapshot snap;
  snap.run_id = "r";
  snap.worker_id = "w";
  snap.sequence = 1;
  snap.interval_start = 1'700'000'000'000'000'000;
  snap.interval_end = 1'700'000'001'000'000'000;
  snap.active_users = 3;
  snap.stats.RecordHit("U", "GET", 200, HitError::kNone, 1000);
  snap.stats.RecordHit("U", "GET", 200, HitError::kNone, 2000);
  snap.stats.RecordExecution(Outcome::kSuccess, "");
  snap.stats.RecordExecution(Outcome::kFailure, "F");
  snap.stats.IncrCounter("c", 11);
  // The load model's measures (version 3).
  snap.target_rate = 2.5;
  snap.stats.started = 2;
  snap.stats.dropped = 1;
  snap.stats.corrected_latency.Record(1500);
  snap.stats.corrected_latency.Record(2500);
  snap.stats.schedule_lag.Record(500);
  return snap;
}

TEST(Snapshot, GoldenBytes) {
  const std::string golden = GoldenHex();
  ASSERT_FALSE(golden.empty());
  EXPECT_EQ(Hex(EncodeSnapshot(Golden())), golden);
  Snapshot decoded;
  std::string error;
  ASSERT_TRUE(Ok(DecodeSnapshot(Unhex(golden), &decoded), &error)) << error;
  EXPECT_FALSE(decoded.final);
  EXPECT_EQ(decoded.active_users, 3u);
  EXPECT_EQ(decoded.target_rate, 2.5);
  EXPECT_EQ(decoded.stats.started, 2u);
  EXPECT_EQ(decoded.stats.dropped, 1u);
  EXPECT_EQ(decoded.stats.corrected_latency.Max(), 2500u);
  EXPECT_EQ(decoded.stats.schedule_lag.Count(), 1u);
  ExpectSameStats(Golden().stats, decoded.stats);
}

TEST(Snapshot, VersionFiveIsStillRead) {
  // Version 6 added the hit error kind forbidden_target: version 5's bytes read the same.
  Snapshot decoded;
  std::string error;
  ASSERT_TRUE(Ok(DecodeSnapshot(Unhex(GoldenHex("snapshot_v5.hex")), &decoded), &error)) << error;
  ExpectSameStats(Golden().stats, decoded.stats);
}

TEST(Snapshot, VersionFourIsStillRead) {
  // Version 5 added the WebSocket timings: version 4's golden bytes read with none.
  Snapshot decoded;
  std::string error;
  ASSERT_TRUE(Ok(DecodeSnapshot(Unhex(GoldenHex("snapshot_v4.hex")), &decoded), &error)) << error;
  ExpectSameStats(Golden().stats, decoded.stats);
  EXPECT_EQ(decoded.stats.ws_round_trip.Count(), 0u);
}

TEST(Snapshot, WebSocketTimingsCannotOutnumberTheirEvents) {
  std::string error;
  Snapshot out;
  Snapshot snap = Golden();
  snap.stats.ws_connect.Record(1000);  // no WebSocket opened
  EXPECT_FALSE(Ok(DecodeSnapshot(EncodeSnapshot(snap), &out), &error));
  EXPECT_NE(error.find("ws_connect"), std::string::npos) << error;
  snap = Golden();
  snap.stats.ws_round_trip.Record(1000);  // no message received
  EXPECT_FALSE(Ok(DecodeSnapshot(EncodeSnapshot(snap), &out), &error));
  EXPECT_NE(error.find("ws_round_trip"), std::string::npos) << error;
}

TEST(Snapshot, VersionThreeIsStillRead) {
  // Version 4 only added error kinds: version 3's golden bytes read the same.
  Snapshot decoded;
  std::string error;
  ASSERT_TRUE(Ok(DecodeSnapshot(Unhex(GoldenHex("snapshot_v3.hex")), &decoded), &error)) << error;
  ExpectSameStats(Golden().stats, decoded.stats);
  EXPECT_EQ(decoded.target_rate, 2.5);
}

TEST(Snapshot, NewErrorKindsRoundTrip) {
  Snapshot snap = Golden();
  snap.stats.RecordHit("U", "GET", 0, HitError::kBodyTooLarge, 0);
  snap.stats.RecordHit("U", "GET", 0, HitError::kHeaderTooLarge, 0);
  Snapshot decoded;
  std::string error;
  ASSERT_TRUE(Ok(DecodeSnapshot(EncodeSnapshot(snap), &decoded), &error)) << error;
  EXPECT_EQ(decoded.stats.hit_errors[static_cast<int>(HitError::kBodyTooLarge)], 1u);
  EXPECT_EQ(decoded.stats.hit_errors[static_cast<int>(HitError::kHeaderTooLarge)], 1u);
}

TEST(Snapshot, VersionTwoIsStillRead) {
  // The golden bytes of version 2, without the load model's fields: they read as zeros.
  Snapshot decoded;
  std::string error;
  ASSERT_TRUE(Ok(DecodeSnapshot(Unhex(GoldenHex("snapshot_v2.hex")), &decoded), &error)) << error;
  EXPECT_EQ(decoded.stats.hits, 2u);
  EXPECT_EQ(decoded.stats.started, 0u);
  EXPECT_EQ(decoded.target_rate, 0);
  EXPECT_EQ(decoded.stats.corrected_latency.Count(), 0u);
}

TEST(Snapshot, RejectsMalformedInputWithTheFieldAtFault) {
  const std::string good = EncodeSnapshot(Rich());
  // Every truncation is refused, none crashes.
  for (size_t n = 0; n < good.size(); ++n) {
    Snapshot out;
    std::string error;
    EXPECT_FALSE(Ok(DecodeSnapshot(std::string_view(good).substr(0, n), &out), &error)) << n;
    EXPECT_FALSE(error.empty());
  }
  struct Case {
    std::string hex;
    std::string expected_error;
  };
  const std::vector<Case> cases = {
      {"c1", "not a msgpack document"},       // reserved byte
      {"93010203", "expected a map"},         // [1, 2, 3]
      {"81a17607", "unsupported version 7"},  // {"v": 7}
      {"81a17601", "field 'type': missing"},  // {"v": 1}
      {"82a17601a474797065a3666f6f", "expected \"snapshot\""},
      {"81a17601c0", "trailing bytes"},
      {"81a47a7a7a7a01", "field 'zzzz': unknown field"},
      {"81a468697473a178", "field 'hits': expected a non-negative integer"},
      {"81a468697473ff", "field 'hits': expected a non-negative integer"},  // -1
      // A histogram whose bucket counts (1) do not add up to its count (2).
      {"81a76c6174656e6379950201010092cd03e801", "inconsistent histogram"},
      // A bucket index beyond the last bucket.
      {"81a76c6174656e6379950101010192ce00ffffff01", "bucket index out of range"},
      // {"methods": {"G T": [0, 0, 0, 0, 0, 0]}}: not a method a label may carry.
      {"81a76d6574686f647381a347205496000000000000", "'G T' is not an HTTP method"},
      // An array declaring 2^32-1 elements: refused before anything is allocated.
      {"81a468697473ddffffffff", "not a msgpack document"},
  };
  for (const auto& c : cases) {
    Snapshot out;
    std::string error;
    EXPECT_FALSE(Ok(DecodeSnapshot(Unhex(c.hex), &out), &error)) << c.hex;
    EXPECT_NE(error.find(c.expected_error), std::string::npos) << c.hex << " -> " << error;
  }
}

// A snapshot as a map of msgpack objects, to take fields out of or change one at a time.
using Fields = std::map<std::string, msgpack::object>;

Fields Unpack(const std::string& bytes, msgpack::object_handle* handle) {
  *handle = msgpack::unpack(bytes.data(), bytes.size());
  Fields fields;
  const auto& map = handle->get().via.map;
  for (uint32_t i = 0; i < map.size; ++i) {
    fields[map.ptr[i].key.as<std::string>()] = map.ptr[i].val;
  }
  return fields;
}

std::string Pack(const Fields& fields) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> pk(&buffer);
  pk.pack_map(static_cast<uint32_t>(fields.size()));
  for (const auto& [key, value] : fields) {
    pk.pack(key);
    pk.pack(value);
  }
  return std::string(buffer.data(), buffer.size());
}

TEST(Snapshot, EveryFieldIsRequired) {
  msgpack::object_handle handle;
  const Fields whole = Unpack(EncodeSnapshot(Rich()), &handle);
  ASSERT_EQ(whole.size(), 27u);
  for (const auto& [key, value] : whole) {
    Fields without = whole;
    without.erase(key);
    Snapshot out;
    std::string error;
    EXPECT_FALSE(Ok(DecodeSnapshot(Pack(without), &out), &error)) << key;
    EXPECT_NE(error.find("field '" + key + "'"), std::string::npos) << key << " -> " << error;
  }
  // A key given twice is refused too (its counts would be added twice).
  std::string twice = EncodeSnapshot(Rich());
  twice[2] = static_cast<char>(twice[2] + 1);  // map of 28 entries (de 001b -> de 001c)
  twice += Pack({{"hits", whole.at("hits")}}).substr(1);
  Snapshot out;
  std::string error;
  EXPECT_FALSE(Ok(DecodeSnapshot(twice, &out), &error));
  EXPECT_NE(error.find("given twice"), std::string::npos) << error;
}

TEST(Snapshot, CountsMustAgree) {
  Snapshot snap = Rich();
  snap.stats.methods["GET"][2] += 1;  // one more 2xx by method than hits
  std::string error;
  Snapshot out;
  EXPECT_FALSE(Ok(DecodeSnapshot(EncodeSnapshot(snap), &out), &error));
  EXPECT_NE(error.find("counts do not add up to hits"), std::string::npos) << error;
  snap = Rich();
  snap.stats.status_codes[200] += 5;
  EXPECT_FALSE(Ok(DecodeSnapshot(EncodeSnapshot(snap), &out), &error));
  EXPECT_NE(error.find("more responses"), std::string::npos) << error;
  snap = Rich();
  snap.stats.hit_errors[static_cast<size_t>(HitError::kDns)] += 1;
  EXPECT_FALSE(Ok(DecodeSnapshot(EncodeSnapshot(snap), &out), &error));
  EXPECT_NE(error.find("more responses and hit errors than hits"), std::string::npos) << error;
}

TEST(Snapshot, MergingRefusesToWrap) {
  // Three snapshots of 2^63 + 5 hits each: the second cannot be added to the first.
  RunStats huge;
  huge.hits = (uint64_t{1} << 63) + 5;
  RunStats total;
  EXPECT_FALSE(total.MergeWouldOverflow(huge));
  total.Merge(huge);
  EXPECT_TRUE(total.MergeWouldOverflow(huge));
  // Merge itself saturates rather than wraps.
  total.Merge(huge);
  EXPECT_EQ(total.hits, UINT64_MAX);
  RunStats counter;
  counter.IncrCounter("c", INT64_MAX);
  RunStats more;
  more.IncrCounter("c", 1);
  counter.Merge(more);
  EXPECT_EQ(counter.counters.at("c"), INT64_MAX);
}

TEST(Snapshot, CountsHitsOfAWorkerWithoutMethodsAsUnknown) {
  // Version 1: no "users" nor "methods". 3 hits: a 200, a 503 and (by difference) one without a
  // response.
  msgpack::object_handle handle;
  Snapshot v1 = Rich();
  v1.stats = RunStats();
  v1.stats.hits = 3;
  v1.stats.status_codes[200] = 1;
  v1.stats.status_codes[503] = 1;
  const std::string v2 = EncodeSnapshot(v1);
  Fields fields = Unpack(v2, &handle);
  for (const char* key :
       {"users", "methods", "rate", "started", "dropped", "missed_pace", "corrected", "lag"}) {
    fields.erase(key);
  }
  msgpack::zone zone;
  fields["v"] = msgpack::object(1, zone);
  Snapshot out;
  std::string error;
  ASSERT_TRUE(Ok(DecodeSnapshot(Pack(fields), &out), &error)) << error;
  ASSERT_EQ(out.stats.methods.size(), 1u);
  const RunStats::StatusClasses expected = {1, 0, 1, 0, 0, 1};
  EXPECT_EQ(out.stats.methods.at("unknown"), expected);
}

TEST(Snapshot, SurvivesRandomBytes) {
  std::mt19937 rng(5);
  const std::string good = EncodeSnapshot(Rich());
  for (int i = 0; i < 20'000; ++i) {
    std::string bytes = good;
    // Flip a few bytes of a valid message, or make a short random one.
    if (i % 2 == 0) {
      for (int k = 0; k < 3; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    } else {
      bytes.resize(rng() % 64);
      for (char& c : bytes) c = static_cast<char>(rng());
    }
    Snapshot out;
    std::string error;
    if (!Ok(DecodeSnapshot(bytes, &out), &error)) {
      EXPECT_FALSE(error.empty());
    }
  }
}

}  // namespace
}  // namespace loads::common
