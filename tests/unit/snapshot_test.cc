#include "loads/common/snapshot.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>

namespace loads::common {
namespace {

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
  ASSERT_TRUE(DecodeSnapshot(EncodeSnapshot(in), &out, &error)) << error;
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
    ASSERT_TRUE(DecodeSnapshot(EncodeSnapshot(snap), &decoded, &error)) << error;
    merged.Merge(decoded.stats);
  }
  ExpectSameStats(single, merged);
}

// A small snapshot's exact bytes (tests/testdata/snapshot_v2.hex, also read by the Python test
// of the wire format and shown in docs/wire-protocol.md). A change here is a change of the wire
// format: bump kSnapshotVersion and update the document.
std::string GoldenHex() {
  std::ifstream file(LOADS_TESTDATA_DIR "/snapshot_v2.hex");
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
  return snap;
}

TEST(Snapshot, GoldenBytes) {
  const std::string golden = GoldenHex();
  ASSERT_FALSE(golden.empty());
  EXPECT_EQ(Hex(EncodeSnapshot(Golden())), golden);
  Snapshot decoded;
  std::string error;
  ASSERT_TRUE(DecodeSnapshot(Unhex(golden), &decoded, &error)) << error;
  EXPECT_FALSE(decoded.final);
  EXPECT_EQ(decoded.active_users, 3u);
  ExpectSameStats(Golden().stats, decoded.stats);
}

TEST(Snapshot, RejectsMalformedInputWithTheFieldAtFault) {
  const std::string good = EncodeSnapshot(Rich());
  // Every truncation is refused, none crashes.
  for (size_t n = 0; n < good.size(); ++n) {
    Snapshot out;
    std::string error;
    EXPECT_FALSE(DecodeSnapshot(std::string_view(good).substr(0, n), &out, &error)) << n;
    EXPECT_FALSE(error.empty());
  }
  struct Case {
    std::string hex;
    std::string expected_error;
  };
  const std::vector<Case> cases = {
      {"c1", "not a msgpack document"},       // reserved byte
      {"93010203", "expected a map"},         // [1, 2, 3]
      {"81a17603", "unsupported version 3"},  // {"v": 3}
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
      // A snapshot of 1 hit whose methods count 2.
      {"87a17601a474797065a8736e617073686f74a372756ea172a6776f726b6572a177a373657101a468"
       "69747301a76d6574686f647381a347455496000002000000",
       "counts do not add up to hits"},
      // A snapshot of 1 hit with 2 responses.
      {"87a17601a474797065a8736e617073686f74a372756ea172a6776f726b6572a177a373657101a468"
       "69747301a673746174757381ccc802",
       "more responses than hits"},
      // An array declaring 2^32-1 elements: refused before anything is allocated.
      {"81a468697473ddffffffff", "not a msgpack document"},
  };
  for (const auto& c : cases) {
    Snapshot out;
    std::string error;
    EXPECT_FALSE(DecodeSnapshot(Unhex(c.hex), &out, &error)) << c.hex;
    EXPECT_NE(error.find(c.expected_error), std::string::npos) << c.hex << " -> " << error;
  }
}

TEST(Snapshot, CountsHitsOfAWorkerWithoutMethodsAsUnknown) {
  // 3 hits: a 200, a 503 and (by difference) one without a response; no "methods" field.
  Snapshot out;
  std::string error;
  ASSERT_TRUE(DecodeSnapshot(Unhex("87a17601a474797065a8736e617073686f74a372756ea172a6776f726b6572a"
                                   "177a373657101a46869747303a673746174757382ccc801cd01f701"),
                             &out, &error))
      << error;
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
    if (!DecodeSnapshot(bytes, &out, &error)) {
      EXPECT_FALSE(error.empty());
    }
  }
}

}  // namespace
}  // namespace loads::common
